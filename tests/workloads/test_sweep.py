"""The inversion sweep: real SimPEG inversions on a real LocalCluster, stitched into real HDF5."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import threading
import time

import h5py
import numpy as np
import pytest
from distributed import Client, LocalCluster

from dashapp.data import HANDLES, FileBusy, NotFound
from dashapp.data.files import writer_pid
from dashapp.workloads import (
    StationError,
    invert_station,
    plan_sweep,
    run_sweep,
    synthetic_model,
)

# Another cluster on this machine may hold the default HTTP port; distributed then picks another.
pytestmark = pytest.mark.filterwarnings(r"ignore:Port \d+ is already in use:UserWarning")

ORE = (1, 2)  # on the 3 x 4 default-extent grid: the station above the conductive ore body


def _import_simpeg() -> None:
    import simpeg.electromagnetics.static.resistivity
    import simpeg.inversion  # noqa: F401


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        c.run(_import_simpeg)  # both workers pay SimPEG's import once, in parallel
        yield c


def _deep_log10(model: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Mean log10 conductivity per station between 300 and 650 m depth (the ore body)."""
    return np.log10(model[(z < -300) & (z > -650)]).mean(axis=0)


def test_import_is_ui_free_and_does_not_load_simpeg():
    code = (
        "import sys, dashapp.workloads\n"
        "heavy = ('panel', 'bokeh', 'holoviews', 'simpeg', 'distributed')\n"
        "print(','.join(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_plan_and_station_errors():
    plan = plan_sweep(3, 4, preset="tiny", fail_stations={(0, 1)})
    assert plan.shape == (10, 3, 4)
    assert plan.n_stations == 12
    assert np.all(np.diff(plan.z) < 0)
    assert plan.z[0] < 0
    assert pickle.loads(pickle.dumps(plan)) == plan
    assert synthetic_model(plan).shape == plan.shape
    with pytest.raises(ValueError, match="kind"):
        plan_sweep(2, 2, kind="mt")
    with pytest.raises(IndexError, match=r"\(iy=3, ix=0\) is outside the 3 x 4"):
        invert_station(plan, 3, 0)
    with pytest.raises(StationError, match=r"\(iy=0, ix=1\).*injected failure"):
        invert_station(plan, 0, 1)


def test_sweep_fills_the_stitched_model(client, tmp_path):
    plan = plan_sweep(3, 4, preset="tiny")
    out = tmp_path / "sweep.h5"
    calls = []
    report = run_sweep(client, plan, out, on_progress=lambda *a: calls.append(a))

    assert report.status == "finished"
    assert (report.n_done, report.n_failed, report.n_cancelled) == (12, 0, 0)
    assert report.failures == []
    assert report.out_path == out
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.h5"]  # built aside, moved in place
    assert len(report.station_runtimes) == 12
    assert calls[0] == (0, 12, 0)
    assert calls[-1] == (12, 12, 0)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)

    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "finished"
        assert f.attrs["producer"] == "dashapp.workloads.sweep"
        assert f.attrs["kind"] == "dc"
        assert f.attrs["n_done"] == 12
        model = f["model"][()]
        true = f["true_model"][()]
        z = f["z"][()]
        assert model.dtype == np.float32
        assert model.shape == (10, 3, 4)
        assert not np.isnan(model).any()
        assert f["done"][()].all()
        assert not f["failed"][()].any()
        assert np.isfinite(f["misfit"][()]).all()
        assert (f["iterations"][()] >= 1).all()
        for name in ("model", "true_model"):
            assert [d[0].name for d in f[name].dims] == ["/z", "/y", "/x"]
            assert [d.label for d in f[name].dims] == ["z", "y", "x"]
        for name in ("done", "misfit"):
            assert [d[0].name for d in f[name].dims] == ["/y", "/x"]
        for name in ("x", "y", "z"):
            assert f[name].is_scale
            assert f[name].attrs["units"] == "m"
        assert f["model"].attrs["units"] == "S/m"
        np.testing.assert_allclose(f["x"][()], plan.x)
        np.testing.assert_allclose(z, plan.z)
    assert (z < 0).all()
    np.testing.assert_allclose(true, synthetic_model(plan))

    # The recovered model follows the true one: the station over the ore body is the most
    # conductive at its depth by a wide margin (~1 decade), and log values correlate.
    deep = _deep_log10(model, z)
    others = np.delete(deep.ravel(), np.ravel_multi_index(ORE, deep.shape))
    assert _deep_log10(true, z)[ORE] == _deep_log10(true, z).max()
    assert deep[ORE] > others.max() + 0.5
    assert np.corrcoef(np.log10(model).ravel(), np.log10(true).ravel())[0, 1] > 0.3


def test_failing_station_is_reported_and_the_others_complete(client, tmp_path):
    plan = plan_sweep(2, 3, preset="tiny", fail_stations={(1, 1)})
    out = tmp_path / "failing.h5"
    report = run_sweep(client, plan, out, batch=2)

    assert report.status == "failed-partially"
    assert (report.n_done, report.n_failed) == (5, 1)
    [(iy, ix, message)] = report.failures
    assert (iy, ix) == (1, 1)
    assert "StationError" in message
    assert "(iy=1, ix=1)" in message
    assert "injected failure" in message
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "failed-partially"
        assert f.attrs["n_failed"] == 1
        done, failed, model = f["done"][()], f["failed"][()], f["model"][()]
    assert failed.sum() == 1
    assert failed[1, 1]
    assert done.sum() == 5
    assert not done[1, 1]
    assert np.isnan(model[:, 1, 1]).all()
    model[:, 1, 1] = 1.0
    assert not np.isnan(model).any()


def test_cancel_stops_the_sweep(client, tmp_path):
    plan = plan_sweep(4, 5, preset="tiny")
    out = tmp_path / "cancelled.h5"
    cancel = threading.Event()

    def on_progress(done: int, total: int, failed: int) -> None:
        if done >= 3:
            cancel.set()

    report = run_sweep(client, plan, out, on_progress=on_progress, cancel=cancel)

    assert report.status == "cancelled"
    assert 3 <= report.n_done < 20
    assert report.n_cancelled == 20 - report.n_done
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "cancelled"
        done = f["done"][()]
        assert done.sum() == report.n_done
        assert np.isnan(f["model"][()][:, ~done]).all()
        assert not np.isnan(f["model"][()][:, done]).any()

    # The cancelled tasks are released from the scheduler (a running one ends on its worker).
    def tasks_of_run(dask_scheduler, run_id=report.run_id):
        return [k for k in dask_scheduler.tasks if run_id in str(k)]

    deadline = time.monotonic() + 30
    while client.run_on_scheduler(tasks_of_run) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.run_on_scheduler(tasks_of_run) == []


def test_swmr_reader_sees_the_model_fill_in(client, tmp_path):
    """The driver runs in another process (as a batch job would); this process follows."""
    out = tmp_path / "followed.h5"
    code = textwrap.dedent(
        f"""
        from distributed import Client
        from dashapp.workloads import plan_sweep, run_sweep
        with Client({client.scheduler.address!r}) as c:
            report = run_sweep(c, plan_sweep(4, 5, preset="tiny"), {str(out)!r})
        print(report.status, report.n_done)
        """
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    counts: list[int] = []
    busy: list[int | None] = []
    try:
        f = None
        deadline = time.monotonic() + 60
        while f is None and writer.poll() is None and time.monotonic() < deadline:
            try:
                f = h5py.File(out, "r", swmr=True)
            except (FileNotFoundError, OSError):  # not there yet, or not yet in SWMR mode
                time.sleep(0.02)
        assert f is not None, "the writer never made the file readable in SWMR mode"
        with f:
            busy.append(writer_pid(out))  # the viewer would not report the file busy
            done = f["done"]
            while writer.poll() is None and time.monotonic() < deadline:
                done.refresh()
                counts.append(int(done[()].sum()))
                time.sleep(0.02)
            done.refresh()
            counts.append(int(done[()].sum()))
            model = f["model"]
            model.refresh()
            assert not np.isnan(model[()]).any()
        stdout, stderr = writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0, stderr
    assert stdout.split() == ["finished", "20"]
    assert busy == [None]
    assert counts == sorted(counts)
    assert counts[-1] == 20
    assert len({c for c in counts if 0 < c < 20}) >= 2  # seen part-filled, growing
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "finished"


def test_viewer_in_this_process_follows_a_sweep_in_a_thread(client, tmp_path):
    """The app's case: the sweep runs in a thread, dashapp's own reader follows in this process."""
    out = tmp_path / "in_process.h5"
    box: dict[str, object] = {}
    plan = plan_sweep(3, 4, preset="tiny")
    driver = threading.Thread(target=lambda: box.update(report=run_sweep(client, plan, out)))
    driver.start()
    counts: list[int] = []
    deadline = time.monotonic() + 60
    while driver.is_alive() and time.monotonic() < deadline:
        try:
            with HANDLES.open(out) as f:
                done = f["done"]
                done.refresh()
                counts.append(int(done[()].sum()))
        except (NotFound, FileBusy):  # not created yet, or not yet in SWMR mode
            assert not counts
        time.sleep(0.02)
    driver.join(timeout=60)
    assert box["report"].status == "finished"
    assert counts == sorted(counts)
    assert len({c for c in counts if 0 < c < 12}) >= 2
    with HANDLES.open(out) as f:  # reopened: the file changed on disk
        assert f.attrs["status"] == "finished"
        assert f["done"][()].all()


def test_fdem_stations(client):
    """Frequency-domain EM soundings: the station over the ore body comes out more conductive."""
    plan = plan_sweep(3, 4, "fdem", preset="tiny")
    over, off = client.gather(
        [
            client.submit(invert_station, plan, *ORE, pure=False),
            client.submit(invert_station, plan, 0, 0, pure=False),
        ]
    )
    assert over.n_data == 2 * len(plan.frequencies)  # real and imaginary Hz per frequency
    assert over.misfit < 5
    deep = (plan.z < -250) & (plan.z > -650)
    assert np.log10(over.sigma[deep]).max() > np.log10(off.sigma[deep]).max() + 0.3


def test_threads_cluster(tmp_path):
    """processes=False: the tasks run in threads of this process (nothing is pickled)."""
    plan = plan_sweep(2, 2, "dc", preset="tiny")
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        report = run_sweep(c, plan, tmp_path / "threads.h5")
    assert report.status == "finished"
    assert report.n_done == 4
    with h5py.File(tmp_path / "threads.h5", "r") as f:
        assert not np.isnan(f["model"][()]).any()
        assert f["done"][()].all()
