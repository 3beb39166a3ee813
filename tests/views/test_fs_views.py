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
