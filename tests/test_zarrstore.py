"""Encoding a netCDF file's fields into a zarr v3 store with Dask (``mscncodec.zarrstore``) and back to netCDF:
a cluster of worker processes writes the same chunk files, byte for byte, as the serial encode in this process;
the store reads back with xr.open_zarr (a sane error, the missing-value mask exact); the CLI's
``--out STORE.zarr`` and ``mscn decode STORE.zarr -o OUT.nc``; no half-written or overwritten store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("zarr")
distributed = pytest.importorskip("distributed")

from click.testing import CliRunner

from mscncodec import zarrstore
from mscncodec.cli import main
from mscncodec.errors import InputError, MscnError, RateError

# the first 5 steps of ../shared/data/spherical/ccsm-ts-monthly/b003_TS_200-299.nc, values unchanged: the tests run
# wherever the repository is cloned
TS = Path(__file__).resolve().parent / "fixtures/b003_TS_first5.nc"
STEPS = 4  # time steps of the test file
CHUNK = 4  # mscn's chunks: one per variable (a worker each); the stock codec's tests split time too
FAST = {"target_bytes": 2000, "effort": "fast", "steps": 20}
FAST_CLI = ["--bytes", "2000", "--effort", "fast", "--steps", "20", "--chunk-steps", str(CHUNK)]


@pytest.fixture(scope="module")
def nc(tmp_path_factory) -> Path:
    """A small multi-field netCDF file from a real one: the first STEPS months of TS (64 Gaussian latitudes x
    128 longitudes) and SST, the same field missing where it is below freezing (a sea-surface field's mask)."""
    with xr.open_dataset(TS, decode_times=False) as ds:
        sub = ds[["TS"]].isel(time=slice(0, STEPS)).load()
    sub["SST"] = sub.TS.where(sub.TS > 271.5)
    sub.SST.attrs = {"long_name": "sea surface temperature", "units": "K"}
    path = tmp_path_factory.mktemp("nc") / "two.nc"
    sub.to_netcdf(path)
    return path


@pytest.fixture(scope="module")
def serial(nc, tmp_path_factory) -> tuple[Path, dict]:
    """The serial encode (dask's synchronous scheduler in this process) of both variables: (store, report)."""
    store = tmp_path_factory.mktemp("serial") / "two.zarr"
    return store, zarrstore.encode_to_zarr(nc, store, chunk_steps=CHUNK, **FAST)


def chunk_files(store: Path, names=("TS", "SST")) -> dict[str, bytes]:
    """Every chunk file of the store's arrays `names` (the fields, not the coordinates), by its path inside it."""
    return {str(p.relative_to(store)): p.read_bytes() for n in names if (store / n / "c").is_dir()
            for p in sorted((store / n / "c").rglob("*")) if p.is_file()}


def test_serial_encode_chunks_every_variable(serial):
    store, report = serial
    assert report["variables"] == ["TS", "SST"] and report["workers"] == 1
    assert report["chunks"] == 2
    files = chunk_files(store)
    assert sorted(files) == sorted(f"{v}/c/{i}/0/0" for v in ("TS", "SST") for i in range(STEPS // CHUNK))
    assert all(0 < len(b) <= FAST["target_bytes"] for b in files.values())
    assert report["bytes"] == sum(map(len, files.values())) and report["ratio"] > 10
    assert not [p for p in store.parent.iterdir() if p.name.endswith(".part")]


def test_cluster_encode_equals_serial_byte_for_byte(nc, serial, tmp_path):
    """A LocalCluster of 2 worker processes, reached by address (the --scheduler path), writes the same chunk
    files as the serial encode; its workers run torch on one thread."""
    store, _ = serial
    out = tmp_path / "cluster.zarr"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        report = zarrstore.encode_to_zarr(nc, out, chunk_steps=CHUNK, scheduler=lc.scheduler_address, **FAST)
        with distributed.Client(lc) as client:
            threads = client.run(lambda: __import__("torch").get_num_threads())
    assert report["workers"] == 2 and set(threads.values()) == {1}
    assert chunk_files(out) == chunk_files(store)


def test_store_reads_back_with_xarray(nc, serial):
    store, _ = serial
    with xr.open_zarr(store, decode_times=False) as z, xr.open_dataset(nc, decode_times=False) as ref:
        assert z.TS.encoding["compressors"][0].codec_id == "mscn"
        assert np.array_equal(z.time.values, ref.time.values) and np.array_equal(z.lat.values, ref.lat.values)
        assert z.TS.attrs["units"] == "K" and z.SST.attrs["long_name"] == "sea surface temperature"
        for n in ("TS", "SST"):
            got, want = z[n].values, ref[n].values
            assert got.shape == want.shape and got.dtype == np.float32
            assert np.array_equal(np.isnan(got), np.isnan(want))  # the mask, exactly
            err = np.sqrt(np.nanmean((got - want) ** 2))
            assert 0 < err < np.nanstd(want)  # better than the field's mean everywhere
        assert np.isnan(ref.SST.values).sum() > 1000


def test_decode_to_netcdf(nc, serial, tmp_path):
    store, _ = serial
    out = tmp_path / "back.nc"
    report = zarrstore.decode_to_netcdf(store, out)
    assert sorted(report["variables"]) == ["SST", "TS"]
    with xr.open_dataset(out, decode_times=False) as back, xr.open_zarr(store, decode_times=False) as z:
        for n in ("TS", "SST"):
            assert back[n].dims == ("time", "lat", "lon")
            np.testing.assert_array_equal(back[n].values, z[n].values)  # NaN where the store has NaN
        assert back.SST.attrs["units"] == "K"
    with pytest.raises(MscnError, match="exists"):
        zarrstore.decode_to_netcdf(store, out)
    with pytest.raises(InputError, match="not a zarr store"):
        zarrstore.decode_to_netcdf(tmp_path, tmp_path / "x.nc")
    with pytest.raises(MscnError, match="decodes to a netCDF file"):
        zarrstore.decode_to_netcdf(store, tmp_path / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.nc"]


def zstd(da):
    """A stock lossless codec: the plumbing without mscn's encode time."""
    from zarr.codecs.numcodecs import Zstd

    return Zstd(level=1)


def test_refuses_to_overwrite_and_replaces_with_force(nc, tmp_path):
    out = tmp_path / "s.zarr"
    zarrstore.encode_to_zarr(nc, out, var="TS", chunk_steps=1, codec=zstd)
    before = chunk_files(out)
    assert len(before) == STEPS
    with pytest.raises(MscnError, match="exists"):
        zarrstore.encode_to_zarr(nc, out, var="TS", codec=zstd)
    assert chunk_files(out) == before
    zarrstore.encode_to_zarr(nc, out, var=["SST"], chunk_steps=STEPS, codec=zstd, force=True)
    assert sorted(chunk_files(out)) == ["SST/c/0/0/0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # nothing left beside it


def test_a_failed_encode_leaves_no_store(nc, tmp_path):
    """An error target no chunk can meet: the encode fails in one line and leaves nothing at the target."""
    from mscncodec.numcodecs import Mscn

    out = tmp_path / "fail.zarr"
    with pytest.raises(RateError):
        zarrstore.encode_to_zarr(nc, out, var="TS", chunk_steps=STEPS,
                                 codec=lambda da: Mscn.for_dataarray(da, rmse=1e-6, effort="fast", steps=1, tries=1))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kw, match", [
    ({"var": "nope"}, "no variable 'nope'"),
    ({"var": "lat"}, "not a latitude-longitude field"),
    ({"chunk_steps": 0}, "chunk_steps"),
    ({"jobs": 2, "scheduler": "tcp://127.0.0.1:1"}, "not both"),
    ({"target_bytes": None}, "one target"),
])
def test_bad_requests_are_one_line_errors(nc, tmp_path, kw, match):
    with pytest.raises(MscnError, match=match):
        zarrstore.encode_to_zarr(nc, tmp_path / "x.zarr", **({"target_bytes": 1000} | kw))
    assert list(tmp_path.iterdir()) == []


def test_cli_encode_and_decode(nc, serial, tmp_path):
    """`mscn encode FILE.nc --out STORE.zarr` (serial) writes the API's chunks; `mscn decode STORE.zarr -o OUT.nc`
    writes the netCDF file; the errors are one line."""
    store, _ = serial
    runner = CliRunner()
    out = tmp_path / "cli.zarr"
    r = runner.invoke(main, ["encode", str(nc), "--out", str(out), *FAST_CLI])
    assert r.exit_code == 0, r.output
    assert "TS, SST, 2 chunks" in r.output and "1 worker(s)" in r.output
    assert chunk_files(out) == chunk_files(store)
    r = runner.invoke(main, ["encode", str(nc), "--out", str(out), *FAST_CLI])
    assert r.exit_code == 1 and r.output.strip().splitlines() == [f"mscn: error: {out} exists (use --force to overwrite)"]
    r = runner.invoke(main, ["encode", str(nc), "--out", str(tmp_path / "q.zarr"), "--quality", "50", *FAST_CLI])
    assert r.exit_code == 1 and "--quality does not apply to a .zarr output" in r.output
    r = runner.invoke(main, ["encode", str(nc), "-o", str(tmp_path / "q.mscn"), "--scheduler", "tcp://x:1"])
    assert r.exit_code == 1 and "apply to a .zarr output only" in r.output
    back = tmp_path / "back.nc"
    r = runner.invoke(main, ["decode", str(out), "-o", str(back), "-v"])
    assert r.exit_code == 0, r.output
    with xr.open_dataset(back, decode_times=False) as b, xr.open_zarr(out, decode_times=False) as z:
        np.testing.assert_array_equal(b.SST.values, z.SST.values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.nc", "cli.zarr"]


@pytest.mark.slow  # a second cluster (worker processes importing torch and loading the models): a minute here
def test_cli_encode_jobs_2_and_decode(nc, serial, tmp_path):
    """`mscn encode FILE.nc --var TS,SST --out STORE.zarr --jobs 2` (a LocalCluster) writes the serial encode's
    chunks, and `mscn decode` reads them back."""
    store, _ = serial
    runner = CliRunner()
    out = tmp_path / "cli.zarr"
    r = runner.invoke(main, ["encode", str(nc), "--var", "TS,SST", "--out", str(out), "--jobs", "2", *FAST_CLI])
    assert r.exit_code == 0, r.output
    assert "2 worker(s)" in r.output and "2 chunks" in r.output
    assert chunk_files(out) == chunk_files(store)
    back = tmp_path / "back.nc"
    r = runner.invoke(main, ["decode", str(out), "-o", str(back)])
    assert r.exit_code == 0, r.output
    with xr.open_dataset(back, decode_times=False) as b, xr.open_zarr(out, decode_times=False) as z:
        np.testing.assert_array_equal(b.SST.values, z.SST.values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.nc", "cli.zarr"]


@pytest.mark.slow  # a search of several encodes per chunk
def test_cli_rmse_per_chunk_is_met_in_the_store(nc, tmp_path):
    """`mscn encode FILE.nc --out STORE.zarr --rmse X`: every chunk of the store, read back with open_zarr, is
    within X (area-weighted RMSE, the Gaussian grid's cos-latitude weights) of the file."""
    out = tmp_path / "rmse.zarr"
    r = CliRunner().invoke(main, ["encode", str(nc), "--var", "TS", "--out", str(out), "--rmse", "4",
                                  "--chunk-steps", "1", "--effort", "fast", "--steps", "20"])
    assert r.exit_code == 0, r.output
    with xr.open_dataset(nc, decode_times=False) as a, xr.open_zarr(out, decode_times=False) as z:
        ref, rec = a.TS.values.astype(np.float64), z.TS.values.astype(np.float64)
        w = np.cos(np.radians(a.lat.values))[:, None] * np.ones(ref.shape[2])
    for k in range(STEPS):  # one field per chunk: 2-step series chunks at this effort top out near 8 K
        err = np.sqrt(np.sum(w * (rec[k] - ref[k]) ** 2) / np.sum(w))
        assert 0 < err <= 4.0 * 1.01, (k, err)  # the codec's weights are the grid's quadrature weights, not cos
