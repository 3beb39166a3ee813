"""Opening files: damaged, truncated, locked by a writer; the handle cache follows changes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from dashapp.data import FileBusy, HandleCache, NotFound, NotHDF5, describe, open_file, read_tree


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=np.random.default_rng(0).random((64, 64, 64)), chunks=(8, 8, 8))
        f.create_group("g").attrs["note"] = "hello"
    return path


def test_truncated_file_says_truncated(tmp_path, good):
    data = good.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(NotHDF5, match="truncated") as err:
        read_tree(cut)
    assert "bytes on disk" in str(err.value)


def test_corrupted_file_gives_a_sentence_not_a_traceback(tmp_path, good):
    data = bytearray(good.read_bytes())
    data[800:2000] = b"\xff" * 1200  # smash the root group's metadata
    bad = tmp_path / "bad.h5"
    bad.write_bytes(bytes(data))

    def browse_and_read():
        read_tree(bad)
        describe(bad, "/a")
        with open_file(bad) as f:  # some corruptions only show when the data is read
            f["a"][()]

    with pytest.raises(NotHDF5) as err:
        browse_and_read()
    assert "bad.h5" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(NotFound):
        read_tree(tmp_path / "gone.h5")


def test_file_locked_by_a_writer_is_reported_as_busy(tmp_path):
    path = tmp_path / "locked.h5"
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import h5py, sys, time
            f = h5py.File({str(path)!r}, "w")
            f.create_dataset("a", shape=(4, 4), dtype="f4")
            f.flush()
            print("ready", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout.readline().strip() == "ready"
        with pytest.raises(FileBusy, match="being written by another program"):
            read_tree(path)
    finally:
        writer.communicate("", timeout=10)
    assert read_tree(path).find("/a") is not None  # readable once the writer closed it


def test_handle_cache_reopens_a_file_changed_by_another_process(tmp_path, good):
    cache = HandleCache(max_files=2, idle_seconds=60)
    with cache.open(good) as f:
        assert "b" not in f
    time.sleep(0.01)
    subprocess.run(
        [sys.executable, "-c",
         f"import h5py; f = h5py.File({str(good)!r}, 'a'); f['b'] = [1, 2]; f.close()"],
        check=True,
    )  # fmt: skip
    with cache.open(good) as f:
        assert "b" in f


def test_idle_handles_close_so_the_same_process_can_write(tmp_path, good):
    cache = HandleCache(max_files=2, idle_seconds=0.2)
    with cache.open(good) as f:
        assert f["a"].shape == (64, 64, 64)
    deadline = time.monotonic() + 5
    while len(cache) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(cache) == 0
    with h5py.File(good, "a") as f:  # would fail with "already open for read-only"
        f["c"] = np.arange(3)


def test_handle_cache_is_bounded_and_keeps_borrowed_handles_open(tmp_path):
    cache = HandleCache(max_files=2)
    paths = []
    for i in range(4):
        p = tmp_path / f"f{i}.h5"
        with h5py.File(p, "w") as f:
            f["x"] = np.full(3, i)
        paths.append(p)
    with cache.open(paths[0]) as first:
        for p in paths[1:]:
            with cache.open(p) as f:
                assert f["x"][0] == int(p.stem[1])
        # evicted while borrowed: still usable until given back
        assert first["x"][0] == 0
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0


def test_a_file_open_in_the_viewer_never_blocks_its_writer(tmp_path, good):
    """The simulation must be able to reopen its output for writing while someone looks at it."""
    cache = HandleCache(idle_seconds=60)
    with cache.open(good) as f:
        assert f["a"][0, 0, 0] >= 0
        subprocess.run(
            [sys.executable, "-c",
             f"import h5py; f = h5py.File({str(good)!r}, 'a'); f['w'] = [1]; f.close()"],
            check=True, timeout=30,
        )  # fmt: skip
    with cache.open(good) as f:
        assert "w" in f
