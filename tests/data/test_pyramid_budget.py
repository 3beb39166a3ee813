"""Overview levels and the disk: a budget for all of them with the least recently used evicted,
none for data that is mostly fill value, crashed builds cleaned up, and a build's memory bounded
whatever the declared shape. Real files written with h5py, a real cache folder, real second
processes holding the build lock."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from dashapp.data import DashappError, describe
from dashapp.data import pyramid as pyr
from dashapp.data.pyramid import (
    PyramidDeclined,
    PyramidManager,
    build_pyramid,
    open_pyramid,
    pyramid_dir,
    pyramid_nbytes,
)

from ..fixtures import write_dataset
from .test_pyramid import reference_level

HOUR = 3600.0


@pytest.fixture(autouse=True)
def _small_levels(monkeypatch, tmp_path):
    """Small blocks and levels, a cache of this test's own, the budget decided afresh."""
    monkeypatch.setattr(pyr, "BLOCK", 32)
    monkeypatch.setattr(pyr, "COARSEST", 8)
    monkeypatch.setenv("DASHAPP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DASHAPP_PYRAMID_BUDGET_GB", raising=False)
    monkeypatch.setattr(pyr, "_BUDGET", None)


def _cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "pyramids"


def _budget(monkeypatch, nbytes: float) -> None:
    """A disk budget of ``nbytes`` for overview levels, set as a user would (in GB)."""
    monkeypatch.setenv("DASHAPP_PYRAMID_BUDGET_GB", f"{nbytes / 2**30:.12f}")
    monkeypatch.setattr(pyr, "_BUDGET", None)  # (decided once per process: this is a new one)


def _volume(tmp_path: Path, name: str, shape=(70, 54, 90)):
    rng = np.random.default_rng(len(name))
    return write_dataset(
        tmp_path / f"{name}.h5", rng.random(shape, dtype=np.float32), chunks=(16, 16, 16)
    )


def _used_ago(info, seconds: float) -> None:
    """The pyramid of ``info`` was last opened ``seconds`` ago."""
    meta = pyramid_dir(info.file, info.path) / "meta.json"
    when = time.time() - seconds
    os.utime(meta, (when, when))


def _level_files(tmp_path: Path) -> list[Path]:
    return sorted(_cache(tmp_path).rglob("*.npy")) if _cache(tmp_path).exists() else []


def _build(manager: PyramidManager, info):
    manager.ensure(info)
    return manager.wait(info, timeout=120)


# ------------------------------------------------------------------------------- the budget
def test_the_size_of_a_build_is_known_from_the_declared_shape(tmp_path):
    info = _volume(tmp_path, "a")
    pyramid = build_pyramid(info)
    on_disk = sum(p.stat().st_size for p in pyramid.dir.glob("*.npy"))
    assert pyramid_nbytes(info.shape) == on_disk
    # a declared 10^6 x 10^6 image: about a third of its 4 TB again, computed without a byte
    assert 1.3e12 < pyramid_nbytes((10**6, 10**6)) < 1.4e12


def test_the_default_budget_is_a_quarter_of_the_free_space_capped_and_decided_once(
    tmp_path, monkeypatch
):
    st = os.statvfs(tmp_path)
    quarter = st.f_bavail * st.f_frsize / 4
    budget = pyr.disk_budget()
    assert budget == pytest.approx(min(pyr.BUDGET_CAP, quarter), rel=0.05)
    monkeypatch.setenv("DASHAPP_PYRAMID_BUDGET_GB", "1")
    assert pyr.disk_budget() == budget  # decided once per process
    monkeypatch.setattr(pyr, "_BUDGET", None)  # (a new process)
    assert pyr.disk_budget() == 2**30
    monkeypatch.setattr(pyr, "_BUDGET", None)
    monkeypatch.setenv("DASHAPP_PYRAMID_BUDGET_GB", "lots")  # not a number: the default
    monkeypatch.setattr(pyr, "BUDGET_CAP", 2**20)
    assert pyr.disk_budget() == 2**20  # (the cap, on a disk with more than 4 MB free)


def test_a_second_pyramid_evicts_the_older_one_when_both_do_not_fit(tmp_path, monkeypatch):
    a, b = _volume(tmp_path, "a"), _volume(tmp_path, "bb")
    size = pyramid_nbytes(a.shape)
    _budget(monkeypatch, 1.5 * size)
    manager = PyramidManager(min_bytes=0)
    assert _build(manager, a).state == "ready"
    _used_ago(a, HOUR)
    assert _build(manager, b).state == "ready"
    assert open_pyramid(a.file, a.path) is None  # evicted
    assert not pyramid_dir(a.file, a.path).exists()
    assert open_pyramid(b.file, b.path) is not None
    assert sum(p.stat().st_size for p in _level_files(tmp_path)) <= 1.5 * size


def test_the_least_recently_used_pyramid_is_the_one_evicted(tmp_path, monkeypatch):
    a, b, c = (_volume(tmp_path, n) for n in ("a", "bb", "ccc"))
    size = pyramid_nbytes(a.shape)
    _budget(monkeypatch, 2.5 * size)
    manager = PyramidManager(min_bytes=0)
    assert _build(manager, a).state == "ready"
    assert _build(manager, b).state == "ready"
    # b, built later, was last looked at three hours ago; a two hours ago
    _used_ago(a, 2 * HOUR)
    _used_ago(b, 3 * HOUR)
    assert _build(manager, c).state == "ready"
    assert open_pyramid(b.file, b.path) is None
    assert open_pyramid(a.file, a.path) is not None
    assert open_pyramid(c.file, c.path) is not None


def test_reading_a_pyramid_evicted_meanwhile_says_so(tmp_path, monkeypatch):
    a, b = _volume(tmp_path, "a"), _volume(tmp_path, "bb")
    _budget(monkeypatch, 1.5 * pyramid_nbytes(a.shape))
    held = build_pyramid(a)  # opened by a view that then sat idle for an hour
    _used_ago(a, HOUR)
    build_pyramid(b)
    with pytest.raises(DashappError, match="removed from the cache"):
        held.read(1, 0, 3, (0, 10), (0, 10))


def test_opening_a_pyramid_records_its_use(tmp_path):
    a = _volume(tmp_path, "a")
    build_pyramid(a)
    _used_ago(a, 2 * HOUR)
    meta = pyramid_dir(a.file, a.path) / "meta.json"
    assert time.time() - meta.stat().st_mtime > HOUR
    PyramidManager(min_bytes=0).get(a)
    assert time.time() - meta.stat().st_mtime < 60


def test_a_pyramid_too_big_for_the_budget_is_not_built_and_the_status_says_why(
    tmp_path, monkeypatch
):
    a = _volume(tmp_path, "a")
    _budget(monkeypatch, pyramid_nbytes(a.shape) / 2)
    manager = PyramidManager(min_bytes=0)
    st = _build(manager, a)
    assert st.state == "declined"
    assert "more than the" in st.message
    assert "budget for overview levels" in st.message
    assert "DASHAPP_PYRAMID_BUDGET_GB" in st.message
    assert _level_files(tmp_path) == []
    assert manager.ensure(a).state == "declined"  # not tried again for the same file
    with pytest.raises(PyramidDeclined):
        build_pyramid(a)


def test_pyramids_in_use_or_being_rebuilt_are_never_evicted(tmp_path, monkeypatch):
    a, b = _volume(tmp_path, "a"), _volume(tmp_path, "bb")
    _budget(monkeypatch, 1.5 * pyramid_nbytes(a.shape))
    manager = PyramidManager(min_bytes=0)
    assert _build(manager, a).state == "ready"  # just built: in use
    st = _build(manager, b)
    assert st.state == "declined"
    assert "for now" in st.message
    assert "in use" in st.message
    assert open_pyramid(a.file, a.path) is not None
    # a was last read an hour ago, but another process holds its build lock (rebuilding it)
    _used_ago(a, HOUR)
    child = _hold_build_lock(a.file)
    try:
        assert _build(manager, b).state == "declined"  # ("for now": tried again)
        assert pyramid_dir(a.file, a.path).exists()
    finally:
        child.kill()
        child.wait(10)
    assert _build(manager, b).state == "ready"
    assert open_pyramid(a.file, a.path) is None


# ------------------------------------------------------------------------ mostly fill value
def _chunked_one_chunk_written(path: Path):
    with h5py.File(path, "w") as f:
        d = f.create_dataset("v", shape=(2048, 2048), dtype="f4", chunks=(64, 64))
        d[:64, :64] = 1.0
    return describe(path, "/v")


def _contiguous_never_written(path: Path):
    with h5py.File(path, "w") as f:
        f.create_dataset("v", shape=(2048, 2048), dtype="f4")
    return describe(path, "/v")


def _master_without_its_data(path: Path):
    """An NXmx-like master file copied without its data files: a virtual dataset of int64
    frames whose five source files are absent (the real one was 488 x 4362 x 4148)."""
    layout = h5py.VirtualLayout(shape=(50, 436, 414), dtype="i8")
    for i in range(5):
        src = h5py.VirtualSource(
            f"{path.stem}_data_{i + 1:06d}.h5", "entry/data/data", shape=(10, 436, 414)
        )
        layout[10 * i : 10 * (i + 1)] = src
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("entry/data/data", layout, fillvalue=0)
    return describe(path, "/entry/data/data")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_chunked_one_chunk_written, "chunks written: 1 of 1,024"),
        (_contiguous_never_written, "nothing of this dataset is written yet"),
        (_master_without_its_data, "none of its 5 source files is here"),
    ],
)
def test_data_that_is_mostly_fill_value_gets_no_pyramid(tmp_path, make, words):
    info = make(tmp_path / "f.h5")
    assert os.path.getsize(info.file) < 300_000  # a small file declaring tens of MB
    manager = PyramidManager(min_bytes=0)
    st = _build(manager, info)
    assert st.state == "declined", st
    assert words in st.message
    assert "fill value" in st.message
    assert _level_files(tmp_path) == []


def test_a_virtual_dataset_whose_sources_are_present_gets_its_pyramid(tmp_path):
    data = np.arange(40 * 36 * 30, dtype="i8").reshape(40, 36, 30)
    layout = h5py.VirtualLayout(shape=data.shape, dtype="i8")
    for i in range(5):
        with h5py.File(tmp_path / f"part{i}.h5", "w") as f:
            f["data"] = data[8 * i : 8 * (i + 1)]
        layout[8 * i : 8 * (i + 1)] = h5py.VirtualSource(f"part{i}.h5", "data", shape=(8, 36, 30))
    with h5py.File(tmp_path / "master.h5", "w") as f:
        f.create_virtual_dataset("data", layout, fillvalue=0)
    info = describe(tmp_path / "master.h5", "/data")
    assert _build(PyramidManager(min_bytes=0), info).state == "ready"
    # a fifth of it missing is still mostly data; four fifths is mostly fill
    (tmp_path / "part4.h5").unlink()
    assert pyr.mostly_fill(describe(tmp_path / "master.h5", "/data")) is None
    for i in range(1, 4):
        (tmp_path / f"part{i}.h5").unlink()
    reason = pyr.mostly_fill(describe(tmp_path / "master.h5", "/data"))
    assert "4 of its 5 source files are missing" in reason


# ----------------------------------------------------------------- crashed builds cleaned up
_HOLDER = """
import sys
from pathlib import Path
from dashapp.data import pyramid as pyr
directory = pyr.pyramid_dir(sys.argv[1], "/v")
with pyr._build_lock(directory, None, None):
    tmp = directory.with_name(directory.name + ".tmp-live")
    tmp.mkdir(exist_ok=True)
    (tmp / "L1_a0.npy").write_bytes(b"levels being written")
    print("locked", flush=True)
    sys.stdin.readline()
"""


def _hold_build_lock(path) -> subprocess.Popen:
    """A second process building the pyramid of ``path`` (it holds the build lock and has its
    temporary folder) until killed."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "locked"
    return child


_CRASHING = """
import os, sys
from dashapp.data import describe
from dashapp.data import pyramid as pyr
pyr.BLOCK, pyr.COARSEST = 32, 8
def progress(fraction):
    if 0 < fraction < 1:
        os.kill(os.getpid(), 9)  # the builder dies mid-build (OOM killer, a node reboot)
pyr.build_pyramid(describe(sys.argv[1], "/v"), progress=progress, workers=1)
"""


def test_folders_of_dead_builds_are_removed_when_the_manager_starts_live_ones_kept(tmp_path):
    dead, live, fresh = (_volume(tmp_path, n) for n in ("dead", "live", "fresh"))
    crash = subprocess.run([sys.executable, "-c", _CRASHING, dead.file], check=False)
    assert crash.returncode == -9
    cache = _cache(tmp_path)
    left = sorted(p.name for p in cache.iterdir())
    key = pyramid_dir(dead.file, "/v").name
    assert any(n.startswith(f"{key}.tmp-") for n in left), left  # what a crash leaves
    (cache / "0123456789abcdef0123.lock").touch()  # a lock file with neither build nor levels
    child = _hold_build_lock(live.file)
    try:
        manager = PyramidManager(min_bytes=0)
        assert _build(manager, fresh).state == "ready"  # (the manager's first work)
        now = sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))
        live_key = pyramid_dir(live.file, "/v").name
        fresh_key = pyramid_dir(fresh.file, "/v").name
        assert now == sorted(
            [f"{live_key}.lock", f"{live_key}.tmp-live", fresh_key, f"{fresh_key}.lock"]
        )
        assert (cache / f"{live_key}.tmp-live" / "L1_a0.npy").exists()
    finally:
        child.kill()
        child.wait(10)
    assert manager.clean() == [f"{live_key}.tmp-live", f"{live_key}.lock"]  # dead now
    assert _build(manager, dead).state == "ready"


# --------------------------------------------------------------------------- build memory
def test_a_build_of_a_huge_declared_dataset_plans_its_blocks_in_bounded_memory(
    tmp_path, monkeypatch
):
    """2^18 x 2^18 float32 (256 GB declared, stored sparse: allocated but never written):
    a list of its million blocks alone took hundreds of MB before the first block was read."""
    monkeypatch.setattr(pyr, "BLOCK", 256)
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("v", shape=(2**18, 2**18), dtype="f4")
        d[0, 0] = 1.0  # contiguous storage allocated at once (a sparse file)
    info = describe(path, "/v")
    _budget(monkeypatch, 2**40)  # room for it (sparse files in tmp_path)
    cancel = threading.Event()
    tracemalloc.start()
    try:
        with pytest.raises(DashappError, match="cancelled"):
            build_pyramid(info, progress=lambda f: cancel.set(), cancel=cancel, workers=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    path.unlink()  # (a 256 GB sparse file: not left for pytest to keep)
    assert peak < 32 * 2**20, peak
    assert _level_files(tmp_path) == []  # the cancelled build's folder is gone


def test_coarser_levels_are_computed_in_tiles_not_whole(tmp_path, monkeypatch):
    """Levels past the ones reduced per block come from the finer level a tile at a time:
    the whole level (here level 1, 4 MB; 60 GB for a declared 10^6 x 10^6) never in memory."""
    monkeypatch.setattr(pyr, "BLOCK", 256)
    monkeypatch.setattr(pyr, "LEVELS_PER_BLOCK", 1)
    monkeypatch.setattr(pyr, "TILE", 128)
    y, x = np.mgrid[:2048, :2048]
    data = (np.sin(x / 50) * np.cos(y / 70)).astype("f4")
    info = write_dataset(tmp_path / "img.h5", data, chunks=(64, 64), compression="gzip")
    level1 = 1024 * 1024 * 4
    tracemalloc.start()
    try:
        pyramid = build_pyramid(info, workers=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < level1 / 4, peak
    for level in range(1, pyramid.levels):
        ref = reference_level(data, level)
        got = pyramid.read(level, None, 0, (0, ref.shape[0]), (0, ref.shape[1]))
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    # a narrow window of the wide rows of level 1
    np.testing.assert_allclose(
        pyramid.read(1, None, 0, (5, 9), (700, 712)),
        reference_level(data, 1)[5:9, 700:712],
        rtol=1e-5,
    )


def test_tiles_of_a_volume_give_the_levels_of_the_whole_array(tmp_path, monkeypatch):
    """Several passes of tiles (TILE 4: two levels per pass) over odd-sized levels."""
    monkeypatch.setattr(pyr, "COARSEST", 2)
    monkeypatch.setattr(pyr, "TILE", 4)
    rng = np.random.default_rng(1)
    data = rng.random((70, 54, 90), dtype=np.float32)
    data[3, 4, 5] = np.nan
    info = write_dataset(tmp_path / "v.h5", data, chunks=(16, 16, 16), compression="gzip")
    pyramid = build_pyramid(info)
    assert pyramid.levels == 7
    for level in range(4, pyramid.levels):
        for axis in range(3):
            ref = reference_level(data, level, axis)
            others = [d for d in range(3) if d != axis]
            for index in (0, ref.shape[axis] - 1):
                got = pyramid.read(
                    level, axis, index, (0, ref.shape[others[0]]), (0, ref.shape[others[1]])
                )
                np.testing.assert_allclose(got, np.take(ref, index, axis=axis), rtol=1e-5)
