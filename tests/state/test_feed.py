"""The slice feed's policies, without Panel or a browser: change the state, assert on the params.

Real HDF5 files in tmp_path and a real writer process; the document's thread is played by
:class:`Loop` (callbacks the feed schedules wait there until the test runs them), and the read
pool by :class:`Gate` where a test needs reads to wait.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Executor, Future

import h5py
import numpy as np
import pytest

from dashapp.data import open_file, warm_up
from dashapp.state import SliceState
from dashapp.state.feed import RETRY_MAX, SliceFeed

from ..writers import Writer


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    warm_up()


class Loop:
    """The document's thread, by hand: what the feed schedules waits here until :meth:`run`."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self._lock = threading.Lock()

    def __call__(self, fn, delay: float = 0.0) -> None:
        with self._lock:
            self.calls.append((fn, delay))

    def run(self, timeout: float = 10.0) -> list[float]:
        """Wait for something scheduled, run everything scheduled; returns their delays."""
        deadline = time.monotonic() + timeout
        while not self.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            calls, self.calls = self.calls, []
        for fn, _ in calls:
            fn()
        return [delay for _, delay in calls]


class Gate(Executor):
    """An executor whose jobs wait until :meth:`release` runs them."""

    def __init__(self) -> None:
        self.jobs: list = []

    def submit(self, fn, *args, **kwargs) -> Future:
        self.jobs.append((fn, args, kwargs))
        return Future()

    def release(self) -> None:
        jobs, self.jobs = self.jobs, []
        for fn, args, kwargs in jobs:
            fn(*args, **kwargs)


def _volume(path, shape=(12, 20, 30)):
    values = np.arange(np.prod(shape), dtype="f4").reshape(shape)
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=values, chunks=(4, 10, 10))
    return values


def test_a_fast_drag_reads_only_the_last_slice(tmp_path):
    values = _volume(tmp_path / "v.h5")
    st = SliceState(root=str(tmp_path), file="v.h5", dataset="/v", axis=0, index=0)
    loop, gate = Loop(), Gate()
    feed = SliceFeed(st, schedule=loop, executor=gate)
    for i in range(1, 11):  # ten steps while the first read has not started
        st.index = i
    gate.release()
    assert feed.runner.ran == 1  # only the newest request ran
    assert feed.runner.dropped >= 9
    loop.run()
    np.testing.assert_array_equal(feed.image.values, values[10])
    assert "index 10 of 12" in feed.status
    # a result older than the one shown is dropped
    assert not feed.show(feed.runner.latest - 1, feed.image, None, feed.plane)


def test_a_live_file_that_grows_is_followed(tmp_path):
    writer = Writer(tmp_path / "run.h5", "append")
    try:
        st = SliceState(root=str(tmp_path), file="run.h5", dataset="/model", axis=1, index=2)
        loop = Loop()
        feed = SliceFeed(st, schedule=loop, threaded=False)
        assert feed.watching  # the file is watched
        assert "dim 0: index 0 of 1" in feed.status
        st.follow = True
        writer.step()
        for _ in range(20):  # the watcher thread hands the reload to the document's thread
            loop.run()
            if st.info.shape[0] == 2:
                break
        assert st.indices == {0: 1}  # followed to the newest iteration
        assert st.index == 2  # the user's slice stays
        assert "dim 0: index 1 of 2" in feed.status  # the slider's numbering
        with open_file(tmp_path / "run.h5") as f:
            np.testing.assert_allclose(feed.image.values, f["model"][1, 2], rtol=1e-6)
    finally:
        writer.close()
        feed.close()


def test_a_file_that_does_not_read_is_tried_again_later_and_later(tmp_path):
    _volume(tmp_path / "v.h5")
    good = (tmp_path / "v.h5").read_bytes()
    st = SliceState(root=str(tmp_path), file="v.h5", dataset="/v")
    loop = Loop()
    feed = SliceFeed(st, schedule=loop, threaded=False)
    shown = feed.image
    (tmp_path / "v.h5").unlink()
    feed.reload()
    assert "does not exist" in feed.problem
    delays = []
    for _ in range(7):
        delays += [d for d in loop.run() if d]
    assert delays[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, RETRY_MAX]  # back-off, capped
    assert feed.image is shown  # the last good picture stays
    (tmp_path / "v.h5").write_bytes(b"not HDF5 " * 100)  # there again, but unreadable
    loop.run()
    assert feed.problem
    assert "does not exist" not in feed.problem
    assert feed.retry_in == RETRY_MAX
    (tmp_path / "v.h5").write_bytes(good)
    loop.run()
    assert (feed.problem, feed.retry_in) == ("", 0.0)
    feed.close()


def test_the_dataset_range_is_estimated_once_and_again_for_new_data(tmp_path):
    writer = Writer(tmp_path / "run.h5", "append")
    try:
        st = SliceState(root=str(tmp_path), file="run.h5", dataset="/model", axis=1, index=1)
        loop = Loop()
        feed = SliceFeed(st, schedule=loop)
        loop.run()
        st.clim = "global"
        assert feed.estimating
        assert "estimating the dataset's range" in feed.status
        loop.run()  # the estimate landed
        assert not feed.estimating
        assert "estimating" not in feed.status
        with open_file(tmp_path / "run.h5") as f:
            first = f["model"][:]
        assert feed.limits == (first.min(), first.max())
        st.clim = "auto"
        st.clim = "global"
        assert not feed.estimating  # kept: not estimated again
        assert feed.limits == (first.min(), first.max())
        writer.step()  # new data (each iteration's values are higher): estimated anew
        feed.reload()
        assert feed.estimating
        while feed.estimating:
            loop.run()
        assert feed.limits[1] > first.max()
    finally:
        writer.close()
        feed.close()


def test_robust_limits_stay_those_of_the_whole_slice_when_zooming(tmp_path):
    _volume(tmp_path / "v.h5")
    st = SliceState(root=str(tmp_path), file="v.h5", dataset="/v", axis=0, index=3)
    feed = SliceFeed(st)
    whole = feed.limits
    assert feed.limits_note == ""
    st.param.update(x_range=(2.0, 6.0), y_range=(3.0, 7.0))
    assert feed.image.values.shape != (20, 30)  # the zoomed region was read
    assert feed.limits == whole
    assert "(of the whole slice)" in feed.status
    st.index = 4  # a slice never seen whole: the region's own, and the status says so
    assert feed.limits != whole
    assert "(of the zoomed region)" in feed.status
    st.param.update(x_range=None, y_range=None)
    assert feed.limits_note == ""


def test_status_says_what_is_shown_and_a_failed_read_says_why(tmp_path):
    _volume(tmp_path / "v.h5")
    st = SliceState(root=str(tmp_path), file="v.h5", dataset="/v", axis=0, index=3)
    feed = SliceFeed(st)
    assert feed.status.startswith("dim 0: index 3 of 12 · read 20 × 30 cells in ")
    assert "colour robust: " in feed.status
    st.scale = "log"
    assert feed.limits[0] > 0
    data = (tmp_path / "v.h5").read_bytes()
    (tmp_path / "v.h5").write_bytes(data[: len(data) // 3])
    shown = feed.image
    st.index = 5
    assert "truncated" in feed.error
    assert feed.image is shown
    assert "index 3 of 12" in feed.status  # still what is shown
    (tmp_path / "v.h5").write_bytes(data)
    st.index = 6
    assert feed.error == ""
    assert "index 6 of 12" in feed.status
    st.dataset = "/missing"
    assert feed.image is None
    assert feed.status == ""
