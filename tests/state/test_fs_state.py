"""Browser and slice states on special files and on a filesystem that does not answer."""

from __future__ import annotations

import time

import pytest

from dashapp.data import fsguard
from dashapp.data.errors import FilesystemTimeout
from dashapp.state import BrowserState, SliceState

from ..data.test_special_files import unblock, within
from ..fixtures import write_volume
from ..special_files import hung_open, make_fifo


@pytest.fixture
def root(tmp_path):
    write_volume(tmp_path / "good.h5")
    write_volume(tmp_path / "hung.h5")
    fifo = make_fifo(tmp_path / "x.h5")
    yield tmp_path
    unblock(fifo)


def test_a_pipe_gives_a_sentence_in_both_states(root):
    st = within(10, BrowserState, root=str(root))
    within(10, st.open, "x.h5")
    assert st.error.startswith("x.h5 is a named pipe, not a file")
    assert st.tree is None
    within(10, st.open, "good.h5")  # the next file opens as usual
    assert st.error == ""
    assert st.tree.find("/model").viewable

    sl = within(10, SliceState, root=str(root), file="x.h5", dataset="/model")
    assert sl.info is None
    assert sl.error.startswith("x.h5 is a named pipe, not a file")
    within(10, sl.param.update, file="good.h5")
    assert sl.info is not None
    assert sl.error == ""


def test_a_file_that_does_not_answer_gives_a_sentence_after_the_timeout(root, monkeypatch):
    monkeypatch.setenv("DASHAPP_FS_TIMEOUT", "0.5")
    with hung_open(root / "hung.h5"):
        t0 = time.monotonic()
        sl = within(10, SliceState, root=str(root), file="hung.h5", dataset="/model")
        assert sl.info is None
        assert "The filesystem did not answer in 0.5 s" in sl.error
        assert time.monotonic() - t0 < 3
        # While that open is stuck, the browser on the same file answers at once ...
        st = within(10, BrowserState, root=str(root))
        t0 = time.monotonic()
        with pytest.raises(FilesystemTimeout, match=r"did not answer in 0\.5 s"):
            within(10, st.open, "hung.h5")  # (the view shows it in the browser's alert)
        assert time.monotonic() - t0 < 0.3
        # ... and other files open as usual.
        within(10, sl.param.update, file="good.h5")
        assert sl.info is not None
        assert sl.error == ""
    deadline = time.monotonic() + 10
    while fsguard.hung_calls() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fsguard.hung_calls() == {}  # the holder let go: the stuck open returned
