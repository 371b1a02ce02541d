"""What every trainer shares: the run folder (checkpoint, resume, log, provenance) and the
deterministic train/validation split."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

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

    def tick(self, step: int, total: int, val_every: int, ckpt_every_s: float,
             evaluate: Callable[[], dict] | None, save: Callable[[], None]) -> None:
        """After an outer step: validate every `val_every` steps and at the last one (evaluate() returns the
        record to log; None on a rank that does not validate), and checkpoint every `ckpt_every_s` seconds."""
        if evaluate is not None and (step % val_every == 0 or step == total):
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


def run_origin(command: str, device: str = "cpu") -> dict:
    """Where a run trains: its command, torch build and machine (with the GPU's name on a GPU)."""
    machine = f"{platform.machine()} {os.cpu_count()} cores"
    if device.startswith("cuda") and torch.cuda.is_available():
        machine += f", {torch.cuda.get_device_name()} ({device})"
    return {"command": command, "torch": str(torch.__version__), "machine": machine}


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
