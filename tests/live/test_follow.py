"""Following files while real writer processes write them: SWMR appends, new groups, faults."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from dashapp.data import NotFound, NotHDF5, read_slice
from dashapp.data.watch import WatchHub, watch_mode
from dashapp.state import SliceState

from ..writers import Writer


@pytest.fixture
def appender(tmp_path):
    w = Writer(tmp_path / "run.h5", "append")
    yield w
    w.close()


@pytest.fixture
def grouper(tmp_path):
    w = Writer(tmp_path / "groups.h5", "groups")
    yield w
    w.close()


def test_swmr_appends_are_seen_and_followed_without_resetting_the_view(appender, tmp_path):
    st = SliceState(
        root=str(tmp_path),
        file="run.h5",
        dataset="/model",
        axis=2,
        index=3,
        cmap="kbc",
        x_range=(1.0, 5.0),
        y_range=(0.0, 4.0),
    )
    assert st.info.shape == (1, 6, 8, 10)
    view = st.view()
    appender.step()
    st.reload()
    assert st.info.shape == (2, 6, 8, 10)
    assert st.newer == "newer data: dim 0 up to index 1"  # the slider's numbering
    assert st.indices == {0: 0}  # not following: stays where the user is
    st.follow = True  # jumps to the newest at once
    assert st.indices == {0: 1}
    assert st.newer == ""
    appender.step()
    appender.step()
    st.reload()
    assert st.indices == {0: 3}
    for key in ("axis", "index", "cmap", "x_range", "y_range", "display"):
        assert getattr(st, key) == view[key], key


def test_new_groups_are_followed(grouper, tmp_path):
    st = SliceState(
        root=str(tmp_path),
        file="groups.h5",
        dataset="/iter_0000/model",
        axis=1,
        index=5,
        cmap="bgy",
    )
    grouper.step()
    st.reload()
    assert st.dataset == "/iter_0000/model"
    assert st.newer == "1 newer: iter_0001 is the latest"
    st.follow = True
    assert st.dataset == "/iter_0001/model"
    grouper.step()
    st.reload()
    assert st.dataset == "/iter_0002/model"
    assert (st.axis, st.index, st.cmap, st.follow) == (1, 5, "bgy", True)


def test_writer_faults_raise_clear_errors_and_recovery_works(appender, tmp_path):
    st = SliceState(root=str(tmp_path), file="run.h5", dataset="/model")
    appender.step()
    appender.kill()  # a writer killed mid-run: what it flushed stays readable
    st.reload()
    assert st.info.shape[0] == 2
    good = (tmp_path / "run.h5").read_bytes()
    (tmp_path / "run.h5").write_bytes(good[: len(good) // 3])  # cut short

    def reload_and_read():
        st.reload()  # a SWMR file's metadata may still read; its data cannot
        read_slice(st.info, st.request())

    with pytest.raises(NotHDF5, match="truncated"):
        reload_and_read()
    os.remove(tmp_path / "run.h5")  # deleted
    with pytest.raises(NotFound):
        st.reload()
    tmp = tmp_path / "run.h5.tmp"
    tmp.write_bytes(good)
    os.replace(tmp, tmp_path / "run.h5")  # replaced by rename: good again
    st.reload()
    assert st.info.shape[0] == 2
    assert st.error == ""


@pytest.mark.parametrize("mode", ["inotify", "poll"])
def test_watch_modes_see_a_real_writer(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("DASHAPP_WATCH", mode)
    monkeypatch.setenv("DASHAPP_POLL_INTERVAL", "0.3")
    writer = Writer(tmp_path / "run.h5", "append")
    hub = WatchHub()
    seen = []
    try:
        sid = hub.subscribe([tmp_path / "run.h5"], lambda paths: seen.append(time.monotonic()))
        assert hub.mode_of(sid).mode == mode
        time.sleep(1.5)  # the watcher is up and has its first snapshot (polling)
        seen.clear()
        writer.step()
        deadline = time.monotonic() + 15
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen, f"{mode} watcher saw nothing"
        # a new file in the folder is seen too (the browser lists it)
        hub2_seen = []
        sid2 = hub.subscribe([tmp_path], lambda paths: hub2_seen.append(paths))
        time.sleep(0.6)
        shutil.copy(tmp_path / "run.h5", tmp_path / "copy.h5")
        deadline = time.monotonic() + 15
        while not hub2_seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(tmp_path / "copy.h5" in paths for paths in hub2_seen)
        hub.unsubscribe(sid2)
    finally:
        hub.close()
        writer.close()


def test_network_filesystems_are_polled(monkeypatch):
    import dashapp.data.watch as watch

    monkeypatch.delenv("DASHAPP_WATCH", raising=False)
    monkeypatch.setattr(watch, "filesystem_type", lambda path: "lustre")
    mode = watch_mode("/global/cfs/whatever")
    assert mode.mode == "poll"
    assert "lustre" in mode.reason
    monkeypatch.setattr(watch, "filesystem_type", lambda path: "ext4")
    assert watch_mode("/tmp").mode == "inotify"
