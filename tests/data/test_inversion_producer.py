"""The live-following producer: a real SimPEG inversion writing HDF5 with SWMR while we read it.

The writer runs as ``python -m dashapp.demo.inversion`` in a subprocess (as a simulation would),
and this process follows the file with ``h5py.File(path, "r", swmr=True)`` and ``refresh()``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def start_writer(path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dashapp.demo.inversion", str(path), "--size", "tiny", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def open_when_ready(path: Path, proc: subprocess.Popen[str], timeout: float = 30.0) -> h5py.File:
    """Open for SWMR reading once the writer has switched SWMR on (before that it holds a lock)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"writer exited early: {proc.communicate()}")
        try:
            return h5py.File(path, "r", swmr=True)
        except (FileNotFoundError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def finish(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def test_a_swmr_reader_sees_iterations_land_while_the_inversion_runs(tmp_path):
    path = tmp_path / "run.h5"
    proc = start_writer(path, "--delay", "0.25")
    try:
        f = open_when_ready(path, proc)
        counts_while_running, statuses = [], set()
        with f:
            model, misfit, status = f["model"], f["misfit"], f["status"]
            while True:
                # misfit before model: the writer appends the model first, so a finished
                # iteration (one with a misfit) always has its model row on disk.
                for d in (status, misfit, model):
                    d.refresh()
                state = status[()].decode()
                n = misfit.shape[0]
                assert model.shape[0] >= n
                if n:
                    row = model[n - 1]
                    assert np.isfinite(row).any()  # data, not the NaN fill value
                if proc.poll() is None:
                    counts_while_running.append(n)
                    statuses.add(state)
                if state != "running":
                    break
                if proc.poll() is not None:
                    raise AssertionError(f"writer died: {proc.communicate()}")
                time.sleep(0.05)
        out = finish(proc)
    finally:
        proc.kill()
    assert state == "finished"
    assert "running" in statuses
    grew = np.count_nonzero(np.diff(counts_while_running) > 0)
    assert grew >= 2, counts_while_running
    lines = [line for line in out.splitlines() if line.startswith("iteration")]
    assert len(lines) == n

    with h5py.File(path, "r") as f:  # closed cleanly: an ordinary open works
        assert f.attrs["status"] == "finished"
        assert f.attrs["producer"] == "dashapp.demo.inversion"
        assert f["status"][()] == b"finished"
        model = f["model"]
        assert model.dtype == np.float32
        assert model.maxshape == (None, *model.shape[1:])
        assert model.attrs["units"] == "g/cc"
        for dim, name, long_name in (
            (3, "x", "easting"),
            (2, "y", "northing"),
            (1, "z", "elevation"),
        ):
            scale = model.dims[dim][0]
            assert scale.name == f"/{name}"
            assert model.dims[dim].label == name
            assert scale.attrs["units"] == "m"
            assert scale.attrs["long_name"] == long_name
            assert scale.shape == (model.shape[dim],)
        assert model.dims[0][0].name == "/iteration"
        iterations = f["iteration"][()]
        assert iterations.tolist() == list(range(1, model.shape[0] + 1))
        for name in ("misfit", "regularization", "beta"):
            assert f[name].shape == iterations.shape
            assert f[name].dims[0][0].name == "/iteration"

        phi_d = f["misfit"][()]
        assert phi_d[-1] < phi_d[0]
        assert np.all(np.diff(phi_d) <= 0.05 * phi_d[:-1])  # falls, small bumps allowed
        assert phi_d[-1] <= f.attrs["target_misfit"]
        assert np.all(np.diff(f["beta"][()]) < 0)  # cooled every iteration

        true = f["true_model"][()]
        first, last = model[0], model[-1]
        air = np.isnan(true)
        assert air.any()  # topography: cells above the ground
        assert np.array_equal(np.isnan(last), air)
        assert np.nanmax(np.abs(last - first)) > 0.01
        # the inversion recovers the bodies: closer to the true model as it goes
        assert correlation(last, true) > correlation(first, true) + 0.05
        assert np.isfinite(f["observed"][()]).all()
        assert f["observed"].dims[1][0].name == "/station_x"
        assert f["mesh/hz"].shape == (model.shape[1],)
        x0 = f["mesh"].attrs["origin"][0]
        assert np.isclose(x0 + f["mesh/hx"][0] / 2, f["x"][0])


def test_groups_layout_writes_one_group_per_iteration(tmp_path):
    path = tmp_path / "groups.h5"
    finish(start_writer(path, "--layout", "groups", "--iterations", "4"))
    with h5py.File(path, "r") as f:
        assert "model" not in f
        assert f.attrs["status"] == "finished"
        assert f["status"][()] == b"finished"
        names = sorted(k for k in f if k.startswith("iter_"))
        assert names == ["iter_0001", "iter_0002", "iter_0003", "iter_0004"]
        phi_d = f["misfit"][()]
        models = []
        for k, name in enumerate(names):
            d = f[name]["model"]
            assert d.ndim == 3
            assert d.shape == f["true_model"].shape
            assert [d.dims[i][0].name for i in range(3)] == ["/z", "/y", "/x"]
            assert f[name].attrs["iteration"] == k + 1
            assert f[name].attrs["misfit"] == phi_d[k]
            models.append(d[()])
        assert not np.allclose(models[0], models[-1], equal_nan=True)


def test_a_killed_writer_leaves_the_iterations_written_so_far(tmp_path):
    path = tmp_path / "killed.h5"
    proc = start_writer(path, "--delay", "0.5")
    try:
        with open_when_ready(path, proc) as f:
            misfit = f["misfit"]
            while misfit.shape[0] < 2:
                assert proc.poll() is None, "the writer finished before it could be killed"
                time.sleep(0.05)
                misfit.refresh()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # HDF5 still marks the file as open for writing, so it opens for SWMR reading only.
    with h5py.File(path, "r", swmr=True) as f:
        assert f["status"][()] == b"running"
        n = f["misfit"].shape[0]
        assert n >= 2
        assert f["model"].shape[0] >= n
        for k in range(n):
            assert np.isfinite(f["model"][k]).any()
        assert np.isfinite(f["misfit"][()]).all()


def test_stop_event_callback_and_failure_in_process(tmp_path):
    from dashapp.demo.inversion import run_inversion

    stop = threading.Event()
    seen = []

    def on_iteration(i, phi_d, phi_m):
        seen.append((i, phi_d, phi_m))
        if i == 2:
            stop.set()

    summary = run_inversion(
        tmp_path / "stopped.h5", size="tiny", stop_event=stop, on_iteration=on_iteration
    )
    assert summary.status == "stopped"
    assert summary.iterations == 2
    assert [s[0] for s in seen] == [1, 2]
    assert summary.misfit == [s[1] for s in seen]
    with h5py.File(tmp_path / "stopped.h5", "r") as f:
        assert f["status"][()] == b"stopped"
        assert f.attrs["status"] == "stopped"
        assert f["model"].shape[0] == 2

    def boom(i, phi_d, phi_m):
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        run_inversion(tmp_path / "failed.h5", size="tiny", on_iteration=boom)
    with h5py.File(tmp_path / "failed.h5", "r") as f:
        assert f["status"][()] == b"failed: RuntimeError: disk on fire"
        assert f["model"].shape[0] == 1  # written before the callback ran

    with pytest.raises(ValueError, match="size"):
        run_inversion(tmp_path / "x.h5", size="huge")
