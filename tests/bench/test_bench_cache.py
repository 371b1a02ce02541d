"""The bench's one cache-key scheme, its cache archive and migration, and its one-line refusals."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mscncodec.bench.base import BenchError, Keyed, extra, identity_key
from mscncodec.bench.cache import ARCHIVE_NAME, CACHE_NAME, append_cache, load_cache, open_cache, refile
from mscncodec.bench.classic import JpegCodec, WebPCodec
from mscncodec.bench.cli import bench
from mscncodec.bench.runner import find_images, run_bench
from mscncodec.errors import MscnError


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        y, x = np.mgrid[0:64, 0:80]
        img = np.stack([x * 3, y * 4, (x + y) * 2], axis=-1) + rng.normal(0, 4, (64, 80, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"img{i}.png")
    return d


class CountingJpeg(JpegCodec):
    calls = 0

    def encode(self, img, q):  # noqa: ANN001, ANN201
        type(self).calls += 1
        return super().encode(img, q)


# --------------------------------------------------------------------------- the key scheme


class Toy(Keyed):
    key = "toy"

    def __init__(self, version: str = "lib-1", **config) -> None:  # noqa: ANN003
        self._version, self._config = version, config

    def version(self) -> str:
        return self._version

    def config(self) -> dict:
        return self._config


def test_the_key_is_the_codecs_declared_identity():
    same = Toy(level=3, modes=["a", "b"]).cache_version()
    assert same == Toy(modes=["a", "b"], level=3).cache_version()  # the same codec: the same key, any order
    assert same.startswith("lib-1#") and len(same.split("#")[1]) == 16  # readable version, then the digest
    assert Toy("lib-2", level=3, modes=["a", "b"]).cache_version() != same  # a new version
    assert Toy(level=4, modes=["a", "b"]).cache_version() != same  # a new setting
    assert Toy(level=3, modes=["a", "b"], extra=True).cache_version() != same
    assert identity_key("other", "lib-1", {"level": 3, "modes": ["a", "b"]}) != same  # another codec's name
    assert identity_key("toy", "lib-1", {"level": 3, "modes": ["a", "b"]}) == same


def test_classical_codecs_key_on_library_version_and_settings(monkeypatch: pytest.MonkeyPatch):
    jpeg = JpegCodec().cache_version(0.5, (64, 80))
    assert jpeg == JpegCodec().cache_version(1.0, (512, 768))  # one identity for every point
    assert jpeg.startswith(JpegCodec().version() + "#") and jpeg != WebPCodec().cache_version(0.5, (64, 80))
    monkeypatch.setattr(JpegCodec, "settings", {"subsampling": 1})
    assert JpegCodec().cache_version(0.5, (64, 80)) != jpeg
    monkeypatch.undo()
    monkeypatch.setattr(JpegCodec, "version", lambda self: "pillow-99")
    assert JpegCodec().cache_version(0.5, (64, 80)) != jpeg


def test_an_mscn_point_is_keyed_by_its_model_and_its_familys_encoder_revision(monkeypatch: pytest.MonkeyPatch):
    from mscncodec import families
    from mscncodec.bench.codecs import resolve_codecs

    (codec,) = resolve_codecs("mscn:grid2-l7")[0]
    key = codec.cache_version(0.5, (64, 80))
    assert key == resolve_codecs("mscn:grid2-l7")[0][0].cache_version(0.5, (64, 80))
    version, config = codec.identity(0.5, (64, 80))[1:]
    assert version == f"grid2-r{families.by_name('grid2').encoder_revision(codec.model_at(0.5, (64, 80)))}"
    assert config["model"] == "grid2-l7" and config["effort"] == "default"
    assert resolve_codecs("mscn:grid2-l7@fast")[0][0].cache_version(0.5, (64, 80)) != key  # another effort
    monkeypatch.setattr(families.Family, "encoder_revision", lambda self, model: 99)  # a new encoder revision
    assert codec.cache_version(0.5, (64, 80)) == identity_key(codec.key, "grid2-r99", config) != key


# --------------------------------------------------------------------------- archive and migration


def test_a_run_seeds_its_cache_from_the_archive_and_writes_the_plain_file(dataset: Path, tmp_path: Path):
    out = tmp_path / "out"
    images = find_images(dataset)
    run_bench(images, [CountingJpeg()], out, [0.5, 1.0], plot=False, progress=False)
    plain = out / CACHE_NAME
    with gzip.open(out / ARCHIVE_NAME, "wb") as f:  # what a results folder commits
        f.write(plain.read_bytes())
    archived = (out / ARCHIVE_NAME).read_bytes()
    plain.unlink()
    CountingJpeg.calls = 0
    lines: list[str] = []
    r = run_bench(images, [CountingJpeg()], out, [0.25, 0.5, 1.0], plot=False, progress=False, echo=lines.append)
    assert CountingJpeg.calls > 0 and (r.encoded, r.cached) == (2, 4)  # only the new target was measured
    assert any(f"seeded {CACHE_NAME} from {ARCHIVE_NAME} (4 lines)" in m for m in lines)
    assert len(plain.read_text().splitlines()) == 6  # the seed plus the new points
    assert (out / ARCHIVE_NAME).read_bytes() == archived  # the archive is read, never written


def test_an_existing_cache_is_not_overwritten_by_the_archive(tmp_path: Path):
    append_cache(tmp_path / CACHE_NAME, {"key": "mine", "psnr": 1.0})
    with gzip.open(tmp_path / ARCHIVE_NAME, "wt") as f:
        f.write(json.dumps({"key": "archived", "psnr": 2.0}) + "\n")
    _, cache = open_cache(tmp_path)
    assert set(cache) == {"mine"}
    (tmp_path / "fresh").mkdir()
    path, cache = open_cache(tmp_path / "fresh")  # neither file: an empty cache, nothing written yet
    assert cache == {} and not path.exists()


def test_refile_moves_an_old_key_once_and_retires_it(tmp_path: Path):
    path = tmp_path / CACHE_NAME
    append_cache(path, {"key": "img|jpeg|pillow-1|0.5", "psnr": 30.0})
    cache = load_cache(path)
    assert refile(cache, path, [("img|jpeg|pillow-1#aaaa|0.5", ["img|jpeg|pillow-1|0.5"])]) == 1
    again = load_cache(path)  # what the next run reads
    assert again == {"img|jpeg|pillow-1#aaaa|0.5": {"key": "img|jpeg|pillow-1#aaaa|0.5", "psnr": 30.0}}
    # the codec's settings change later: the retired key is not re-filed under the new identity
    assert refile(again, path, [("img|jpeg|pillow-1#bbbb|0.5", ["img|jpeg|pillow-1|0.5"])]) == 0
    # a reader from before the migration skips the tombstone (it carries "error") and keeps the old record
    old_reader = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if "error" not in rec:
            old_reader[rec["key"]] = rec
    assert "img|jpeg|pillow-1|0.5" in old_reader


def test_field_points_cached_without_a_version_are_refiled_under_their_identity():
    from mscncodec.bench import fields

    ref, codec = fields.FieldRef(Path("t2m.nc"), None), fields.Jpeg2000()
    new, old = fields.point_key(codec, ref, 2000), fields.legacy_key(codec, ref, 2000)
    assert old == "jpeg2000-16|t2m|2000" and new.startswith("jpeg2000-16|pillow-") and new != old
    cache = {old: {"key": old, "rmse": 1.0}}
    assert refile(cache, Path("/dev/null"), [(new, [old])]) == 1 and cache[new]["rmse"] == 1.0


# --------------------------------------------------------------------------- one-line refusals


def test_measuring_a_decode_only_family_is_a_one_line_error(dataset: Path, tmp_path: Path):
    from mscncodec import families

    assert "grid" in families.REGISTRY and "grid" not in families.names(encodes="image")
    r = CliRunner().invoke(bench, [str(dataset), "--out", str(tmp_path / "o"), "--codecs", "jpeg,mscn:grid",
                                   "--points", "1.0", "--inr-points", "1.0", "--no-plot"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    err = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1 and "decode-only" in err[0] and "--report-only mscn:grid" in err[0]
    assert not (tmp_path / "o" / "jpeg.json").exists()  # refused before any work
    ok = CliRunner().invoke(bench, [str(dataset), "--out", str(tmp_path / "o"), "--codecs", "jpeg,mscn:grid",
                                    "--report-only", "mscn:grid", "--points", "1.0", "--inr-points", "1.0",
                                    "--no-plot"])
    assert ok.exit_code == 0, ok.output  # its cached points (none here) are reported, nothing is measured
    assert (tmp_path / "o" / "jpeg.json").exists() and not (tmp_path / "o" / "mscn-grid.json").exists()


def test_a_missing_bench_extra_is_a_one_line_error(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(MscnError, match=r"needs the bench extra: pip install 'mscncodec\[bench\]'"):
        extra("no_such_module_for_mscn")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(BenchError, match="matplotlib is missing"):
        run_bench(find_images(dataset), [JpegCodec()], tmp_path / "o", [1.0], progress=False)
    r = CliRunner().invoke(bench, [str(dataset), "--out", str(tmp_path / "o"), "--codecs", "jpeg", "--points", "1.0"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "Error: `mscn bench` needs the bench extra: pip install 'mscncodec[bench]' (matplotlib is missing)" in r.output
    r = CliRunner().invoke(bench, [str(dataset), "--out", str(tmp_path / "o"), "--codecs", "jpeg", "--points", "1.0",
                                   "--no-plot"])
    assert r.exit_code == 0, r.output  # no plot: no matplotlib needed


def test_the_estimate_asks_the_family_registry():
    from mscncodec.bench.codecs import resolve_codecs
    from mscncodec.bench.estimate import EFFORT_FACTOR, MSCN_SECONDS_PER_MP, mscn_family, seconds_per_mp
    from mscncodec.models import default_arch

    assert mscn_family("grid2-l7") == mscn_family("grid2") == "grid2"
    assert mscn_family("random-w32d5") == "siren" and mscn_family("auto") == default_arch()
    assert mscn_family("no-such-model") is None
    (fast,) = resolve_codecs("mscn:grid2-l7@fast")[0]
    assert seconds_per_mp(fast) == pytest.approx(MSCN_SECONDS_PER_MP["grid2"] * EFFORT_FACTOR["fast"])


def test_mesh_and_field_codecs_use_the_same_scheme():
    from mscncodec.bench import fields, mesh
    from mscncodec.modalities.mesh_codec import pick_model as mesh_model
    from mscncodec.modalities.sphere_codec import pick_model as field_model

    draco = mesh.Draco()
    assert draco.cache_version(2000) == mesh.Draco().cache_version(8000) != mesh.Draco(qmin=4).cache_version(2000)
    assert draco.legacy_versions(2000) == (f"{draco.version()}|q3-20|l7,10",)  # the key before the scheme
    m = mesh.Mscn()
    for target in (1000, 8000):  # each point: the model routed for its size, and its family's encoder revision
        routed = mesh_model(None, float(target))
        assert m.identity(target)[2]["model"] == routed.name and m.identity(target)[1].startswith(f"{routed.arch}-r")
    assert m.cache_version(2000) != mesh.Mscn(resolution=256).cache_version(2000)
    assert m.cache_version(2000) != mesh.Mscn(effort="fast").cache_version(2000)
    f = fields.Mscn()
    assert f.identity(3000)[2]["model"] == field_model(None, 3000.0).name
    assert f.cache_version(3000) != fields.Mscn(effort="fast").cache_version(3000)
