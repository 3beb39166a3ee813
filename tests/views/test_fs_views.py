"""The file browser on big folders and special files (real folders, real FIFOs)."""

from __future__ import annotations

from types import SimpleNamespace

from dashapp.state import BrowserState
from dashapp.views.browser import PAGE, FileBrowser, entry_items

from ..data.test_special_files import unblock
from ..special_files import make_fifo

SIGNATURE = b"\x89HDF\r\n\x1a\n"


def test_a_big_folder_is_shown_a_page_at_a_time(tmp_path):
    for i in range(PAGE * 2 + 30):
        (tmp_path / f"run_{i:05d}.h5").write_bytes(SIGNATURE)
    browser = FileBrowser(BrowserState(root=str(tmp_path)))
    items = browser._entries.items
    assert len(items) == PAGE + 1
    assert items[-1]["id"] == f"more:{2 * PAGE}"
    assert items[-1]["label"] == f"… {PAGE + 30:,} more"
    browser._on_entry(SimpleNamespace(new=[items[-1]]))  # the person clicks "… more"
    items = browser._entries.items
    assert len(items) == 2 * PAGE + 1
    assert items[-1]["label"] == "… 30 more"
    browser._on_entry(SimpleNamespace(new=[items[-1]]))
    assert [i["label"] for i in browser._entries.items][-1] == f"run_{2 * PAGE + 29:05d}.h5"


def test_a_pipe_is_listed_clickable_and_a_click_says_what_it_is(tmp_path):
    fifo = make_fifo(tmp_path / "x.h5")
    try:
        state = BrowserState(root=str(tmp_path))
        (item,) = entry_items(state.entries, None)
        assert item["secondary"] == "⚠ a named pipe, not a file"
        assert item["disabled"] is False
        browser = FileBrowser(state)
        browser._on_entry(SimpleNamespace(new=[item]))
        assert state.error.startswith("x.h5 is a named pipe, not a file")
        assert browser._error.visible
    finally:
        unblock(fifo)


def test_a_slice_read_that_hangs_ends_in_the_alert(tmp_path, monkeypatch):
    from dashapp.data import HANDLES
    from dashapp.state import SliceState
    from dashapp.views.slicer import Slicer
    from dashapp.views.text import as_markdown

    from ..fixtures import write_volume
    from ..special_files import hung_open

    write_volume(tmp_path / "run.h5")
    slicer = Slicer(state=SliceState(root=str(tmp_path), file="run.h5", dataset="/model"))
    assert slicer.image is not None
    monkeypatch.setenv("DASHAPP_FS_TIMEOUT", "0.5")
    HANDLES.clear()  # the next read opens the file again
    with hung_open(tmp_path / "run.h5"):
        slicer.state.index = 3
        assert slicer._alert.visible
        said = as_markdown("The filesystem did not answer in 0.5 s while reading the slice")
        assert said in slicer._alert.object  # (file text is Markdown-escaped: views/text.py)
        assert "The last good picture is still shown" in slicer._alert.object
