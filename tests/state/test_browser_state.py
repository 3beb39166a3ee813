"""BrowserState: listing, opening files, errors kept in the state."""

from __future__ import annotations

import pytest

from dashapp.data import OutsideRoot
from dashapp.state import BrowserState

from ..fixtures import write_volume


@pytest.fixture
def root(tmp_path):
    (tmp_path / "runs").mkdir()
    write_volume(tmp_path / "runs" / "inv.h5")
    (tmp_path / "runs" / "empty.h5").write_bytes(b"")
    return tmp_path


def test_navigation_and_opening(root):
    st = BrowserState(root=str(root))
    assert [e.name for e in st.entries] == ["runs"]
    assert st.parent is None
    st.open("runs")
    assert st.folder == "runs"
    assert st.parent == ""
    assert [e.name for e in st.entries] == ["empty.h5", "inv.h5"]
    st.open("runs/inv.h5")
    assert st.file == "runs/inv.h5"
    assert st.tree.find("/model").viewable


def test_new_files_appear_on_refresh(root):
    st = BrowserState(root=str(root), folder="runs")
    write_volume(root / "runs" / "new.h5")
    st.refresh()
    assert "new.h5" in [e.name for e in st.entries]


def test_a_bad_file_is_an_error_message(root):
    st = BrowserState(root=str(root))
    st.open("runs/empty.h5")
    assert st.tree is None
    assert "empty (0 bytes)" in st.error
    st.open("runs/inv.h5")
    assert st.error == ""


def test_outside_root_is_refused(root):
    st = BrowserState(root=str(root))
    with pytest.raises(OutsideRoot):
        st.open("..")
