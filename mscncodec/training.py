"""What every trainer shares: the run folder (checkpoint, resume, log, provenance), the deterministic
train/validation split, and the place of a process in a data-parallel ``torchrun`` job (`World`)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from mscncodec._lazy import torch  # modalities import split() on the decode path, which runs without torch
from mscncodec.errors import MscnError


def run_paths(out: Path) -> tuple[Path, Path]:
    """(checkpoint, log) of a training run in OUT.run/, created only once the data is known to be usable."""
    run_dir = out.parent / f"{out.name}.run"
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir / "checkpoint.pt", run_dir / "train.log"


class Run:
    """One training run's folder OUT.run/ — checkpoint (written atomically), resume, log, provenance —
    shared by the trainers so that every family checkpoints, resumes and documents itself the same way.

    `active` False (a torchrun rank other than 0) reads the checkpoint but never writes."""

    def __init__(self, out: Path, active: bool = True) -> None:
        self.ckpt, self.log_path = run_paths(out)
        self.active = active
        self.step, self.elapsed, self.history = 0, 0.0, []
        self._log = open(self.log_path, "a") if active else None
        self.t0 = time.time()

    def resume(self, model, opt, load: Callable[[dict], object], mismatch: Callable[[object], str | None]) -> bool:
        """Load the checkpoint (if any) into `model` and `opt`; `mismatch(loaded)` names an architecture
        difference that makes resuming wrong (a one-line error), or None."""
        if not self.ckpt.is_file():
            return False
        ck = torch.load(self.ckpt, map_location="cpu", weights_only=False)
        loaded = load(ck["model"])
        problem = mismatch(loaded)
        if problem:
            raise MscnError(f"{self.ckpt} was trained with {problem}: resume with the same architecture options")
        mine = model.tensors()
        for k, v in loaded.tensors().items():
            mine[k].data.copy_(v)
        opt.load_state_dict(ck["opt"])
        self.step, self.elapsed, self.history = ck["step"], ck["elapsed"], ck["history"]
        self.t0 = time.time() - self.elapsed  # wall() counts the training time so far, also without start()
        return True

    def log(self, msg: str) -> None:
        if self._log:
            self._log.write(msg + "\n")
            self._log.flush()

    def start(self, cfg: dict, extra: str = "") -> None:
        """Log the start (or resume) with the full config; the card reads these lines back."""
        self.log(f"# start step={self.step}{extra} cfg={json.dumps(cfg)}")
        self.t0 = time.time() - self.elapsed
        self._last_save = time.time()

    @staticmethod
    def due(step: int, total: int, val_every: int) -> bool:
        """Whether `step` gets a record: every `val_every` steps and the last one (under torchrun every rank asks,
        as every rank takes part in the record's sums)."""
        return step % val_every == 0 or step == total

    def tick(self, step: int, total: int, val_every: int, ckpt_every_s: float,
             evaluate: Callable[[], dict] | None, save: Callable[[], None]) -> None:
        """After an outer step: validate every `val_every` steps and at the last one (evaluate() returns the
        record to log; None on a rank that does not validate), and checkpoint every `ckpt_every_s` seconds."""
        if evaluate is not None and self.due(step, total, val_every):
            ev = evaluate()
            self.history.append(ev)
            self.log(json.dumps(ev))
        if time.time() - self._last_save > ckpt_every_s:
            save()
            self._last_save = time.time()

    def wall(self) -> float:
        return time.time() - self.t0

    def save(self, model, opt, cfg: dict, origin: dict | None = None) -> None:
        """Write the checkpoint; `origin` (see `run_origin()`) travels with it, so a model exported from it on
        another machine still names the machine, torch and command that trained it."""
        if not self.active:
            return
        tmp = self.ckpt.with_suffix(".tmp")
        torch.save({"model": model.state(), "opt": opt.state_dict(), "step": self.step, "elapsed": self.wall(),
                    "history": self.history, "cfg": cfg, **({"origin": origin} if origin else {})}, tmp)
        tmp.replace(self.ckpt)

    def provenance(self, data: Path, train_files: list[Path], val_files: list[Path], command: str, cfg: dict,
                   origin: dict | None = None) -> dict:
        """What a model card records of the run: the training machine, torch and command from `origin`
        where given (the run's, kept in its checkpoint), else this process's."""
        return {"train_config": cfg, "data": str(data), "data_files": len(train_files), "val_files": len(val_files),
                "data_sha256": data_hash(train_files, data), "steps": self.step, "wall_s": round(self.wall(), 1),
                "validation": self.history[-1] if self.history else {}, **run_origin(command), **(origin or {})}


def run_origin(command: str, device: str = "cpu", world_size: int | None = None) -> dict:
    """Where a run trains: its command, torch build and machine (with the GPU's name on a GPU) and, where
    given, the number of data-parallel processes (it travels in the checkpoint to the card of an export)."""
    machine = f"{platform.machine()} {os.cpu_count()} cores"
    if device.startswith("cuda") and torch.cuda.is_available():
        machine += f", {torch.cuda.get_device_name()} ({device})"
    return {"command": command, "torch": str(torch.__version__), "machine": machine,
            **({} if world_size is None else {"world_size": world_size})}


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel torchrun job; without torchrun, rank 0 of a world of one.

    Every rank holds the whole model and optimiser and steps them identically: it computes the gradient of its
    share of the global batch (`share`), the shares are summed across ranks (`reduce_gradients`), and only
    rank 0 (`lead`) writes checkpoints, logs, models and cards."""

    rank: int = 0
    size: int = 1
    device: str = "cpu"  # this rank's torch device (cuda:LOCAL_RANK for a GPU job)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def lead(self) -> bool:
        return self.rank == 0

    def share(self, per_rank: int) -> range:
        """Which samples of the global batch (per_rank x size) are this rank's: a contiguous slice, so that
        one process at batch B and N at B/N see the same samples in the same order."""
        return range(self.rank * per_rank, (self.rank + 1) * per_rank)

    def reduce_gradients(self, params: Sequence, mean: bool = True) -> None:
        """Sum (or average) the gradients of `params` over the ranks, in one flat all_reduce. A parameter
        without a gradient here counts as zero and gets the sum: a rank that did not touch it (a training
        volume's latents held by another rank) then steps it as the rank that did."""
        if not self.distributed or not params:
            return
        dist = torch.distributed
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        if mean:
            flat /= self.size
        at = 0
        for p in params:
            n = p.numel()
            p.grad = flat[at : at + n].view_as(p)
            at += n

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over the ranks (logged statistics of the global batch); a copy on one process."""
        out = values.detach().clone()
        if self.distributed:
            torch.distributed.all_reduce(out)
        return out

    def agree(self, value: float) -> float:
        """Rank 0's `value` on every rank: decisions from a clock (a wall-clock budget's progress) must be the
        same everywhere, or the ranks would step different learning rates or stop at different steps."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.broadcast(t, 0)
        return float(t.item())

    def leave(self) -> None:
        """Wait for every rank (rank 0 writes the model last) and leave the job."""
        if self.distributed:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def join(device: str = "cpu") -> World:
    """Join the torchrun job this process was started in (WORLD_SIZE > 1): gloo on CPU, NCCL where `device`
    is a GPU (each rank on the GPU of its LOCAL_RANK); else a world of one on `device`."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(0, 1, device)
    cuda = device.startswith("cuda")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return World(torch.distributed.get_rank(), torch.distributed.get_world_size(), device)


def rank_threads(requested: int | None = None) -> int:
    """Torch threads for this process: as requested, else under torchrun the cores shared out between the
    ranks on this machine (LOCAL_WORLD_SIZE of them), else all cores."""
    if requested:
        return requested
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return max(1, (os.cpu_count() or 1) // max(local, 1))


def data_hash(files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def split(files: list[Path], root: Path, val_fraction: float) -> tuple[list[Path], list[Path]]:
    """Deterministic split by a hash of the relative path (stable when files are added)."""
    train, val = [], []
    for f in files:
        h = int(hashlib.sha1(str(f.relative_to(root)).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (val if h < val_fraction else train).append(f)
    return train, val


def logged_runs(log_path: Path) -> list[tuple[int, dict]]:
    """(start step, config) of every start or resume recorded in a run's log."""
    runs = []
    if log_path.is_file():
        for ln in log_path.read_text().splitlines():
            if ln.startswith("# start step="):
                head, _, cfg_json = ln.partition(" cfg=")
                try:
                    cfg = json.loads(cfg_json) if cfg_json else {}
                except ValueError:
                    cfg = {}
                runs.append((int(head.split()[2].split("=")[1]), cfg))
    return runs


def write_card(model, path: Path, history: list[dict], log_path: Path, *, architecture: str, data: str, validation: str,
               history_title: str, columns: tuple[str, ...], row: Callable[[dict], tuple]) -> None:
    """The model card every trainer writes: identity, architecture, data and its hash, steps and every
    run (start or resume, with the options that differed from the last run), wall time, the exact
    command, validation, the training config and a sampled validation history (`columns`, `row`)."""
    m = model.meta
    runs = [r for r in logged_runs(log_path) if r[0] < m["steps"]] or [(0, m["train_config"])]
    last = m["train_config"]

    def differences(c: dict) -> str:
        return ", ".join(f"{k}={json.dumps(v)}" for k, v in c.items()
                         if k != "steps" and json.dumps(last.get(k)) != json.dumps(v)) or "none"

    lines = [
        f"# Model card: {model.name}", "",
        f"- **id**: `{model.model_id.hex()}`",
        f"- **what**: {model.description}",
        f"- **architecture**: {architecture}",
        f"- **data**: `{m['data']}` {data}; sha256 of the training files: `{m['data_sha256']}`.",
        f"- **steps**: {m['steps']} outer steps; runs started/resumed at steps {', '.join(str(r[0]) for r in runs)}",
        f"- **wall time**: {m['wall_s']} s on {m['machine']} (torch {m['torch']})",
        f"- **command**: `{m['command']}` (a resume repeats it, adding the resume flag)",
        f"- **validation** ({validation}): {json.dumps(m['validation'])}",
        "", "## Training config (of the last run)", "```json", json.dumps(last, indent=2), "```", "",
        "## Runs (from the log)", "| from step | scheduled to | config differences from the last run |", "|---|---|---|",
        *[f"| {st} | {c.get('steps')} | {differences(c)} |" for st, c in runs],
        "", f"## Validation history ({history_title})",
        "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
    ]
    stride = max(1, len(history) // 20)
    for h in history[::stride] + ([history[-1]] if history and (len(history) - 1) % stride else []):
        lines.append("| " + " | ".join(str(v) for v in row(h)) + " |")
    path.write_text("\n".join(lines) + "\n")
