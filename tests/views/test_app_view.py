"""The app view: browser + slicer sharing a state; deep links; messages."""

from __future__ import annotations

import pytest

from dashapp.views.app import SlicerApp
from dashapp.views.browser import _default_dataset, entry_items, tree_items

from ..fixtures import write_volume


@pytest.fixture
def root(tmp_path):
    (tmp_path / "runs").mkdir()
    write_volume(tmp_path / "runs" / "inv.h5")
    (tmp_path / "runs" / "old.hdf").write_bytes(b"\x0e\x03\x13\x01" + bytes(100))
    import h5py

    with h5py.File(tmp_path / "runs" / "scalars.h5", "w") as f:
        f["energy"] = 1.5
    return tmp_path


def test_deep_link_opens_file_in_browser_and_view_in_slicer(root):
    app = SlicerApp(root, {"file": [b"runs/inv.h5"], "dataset": [b"/model"], "axis": [b"1"]})
    assert app.browser_state.folder == "runs"
    assert app.browser_state.file == "runs/inv.h5"
    assert app.slice_state.axis == 1
    assert app.slicer.image is not None
    assert not app._message.visible


def test_bad_link_values_are_reported(root):
    app = SlicerApp(root, {"file": "runs/inv.h5", "dataset": "/model", "cmap": "jet"})
    assert app._message.visible
    assert "jet" in app._message.object


def test_picking_files_without_images_or_not_hdf5(root):
    app = SlicerApp(root)
    assert "Pick an HDF5 file" in app._message.object
    app.browser_state.open("runs/scalars.h5")
    app.pick("runs/scalars.h5", _default_dataset(app.browser_state.tree) or "")
    assert "no numeric dataset of 2 or more dimensions" in app._message.object
    app.browser_state.open("runs/old.hdf")
    assert "HDF4" in app._message.object
    assert app._message.alert_type == "danger"


def test_browser_items(root):
    app = SlicerApp(root)
    app.browser_state.open("runs")
    items = entry_items(app.browser_state.entries, app.browser_state.parent)
    assert [i["label"] for i in items] == ["..", "inv.h5", "old.hdf", "scalars.h5"]
    app.browser_state.open("runs/inv.h5")
    tree = tree_items(app.browser_state.tree)
    labels = {i["label"]: i for i in tree}
    assert labels["model"]["icon"] == "image"
    assert "20 × 30 × 40, float32" in labels["model"]["secondary"]


def test_the_page_has_no_busy_indicator_shared_with_every_other_session(tmp_path):
    """Panel flips every registered busy indicator (all sessions' pages) on any session's
    callback; the app's template registers none."""
    from panel.io.state import state

    before = list(state._indicators)
    app = SlicerApp(root=tmp_path)
    tmpl = app.template()
    assert tmpl.busy_indicator is None
    assert list(state._indicators) == before


def test_only_the_shown_tab_is_in_the_page_until_another_is_opened(tmp_path):
    """Every message to the browser costs Bokeh a pass over the page's models (the patch's
    serializer indexes them all), so the cluster pane and the timeline, hidden behind their
    tabs, are not in the document until opened (the server then serves ~17 % more pictures
    per second to nine dragging sessions, docs/performance.md)."""
    from bokeh.document import Document
    from bokeh.models import TableColumn

    app = SlicerApp(root=tmp_path)
    doc = Document()
    app.template().server_doc(doc)

    def tables() -> int:
        return sum(isinstance(m, TableColumn) for m in doc.models)

    assert tables() == 0  # the cluster pane's worker and job tables
    app._tabs.active = 1
    assert tables() > 0  # (the slicer tab's models left: a count of all models says little)


def test_a_page_is_freed_when_its_session_ends(root):
    """A real Bokeh server, sessions opened and closed by a real client: nothing of a page may
    stay in the server once its session is discarded. (Each page used to stay forever: the
    folder watcher kept the browser, and Panel's JS-callback registry kept every
    EditableIntSlider and through it the whole page: ~8 MB per visit, 2.4 GB peak in a
    benchmark that opened 68 pages.)"""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    token = "the-access-token-of-this-test-server"  # the page asks for it (dashapp.auth)
    query = {"file": "runs/inv.h5", "dataset": "/model", "axis": "0", "index": "3",
             "token": token}  # fmt: skip
    script = Path(__file__).with_name("sessions_served.py")
    out = subprocess.run(
        [sys.executable, str(script), str(root), json.dumps(query), "4"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "DASHAPP_TOKEN": token},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["created"] == 4
    assert report["alive"] == 0, report
    assert report["watch_subscriptions"] == 0, report
    assert report["js_callbacks_after_all"] <= report["js_callbacks_after_first"], report
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
