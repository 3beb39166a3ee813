"""Provenance in the app: files, views, snapshots, notes and cluster actions are recorded; the
timeline restores views."""

from __future__ import annotations

import io

import panel as pn
import pytest
from PIL import Image

from dashapp.data import SliceRequest, describe, read_slice
from dashapp.provenance import Record
from dashapp.views.app import SlicerApp
from dashapp.views.timeline import render_snapshot

from ..fixtures import write_volume


@pytest.fixture
def app(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    write_volume(root / "vol.h5")
    record = Record(tmp_path / "workspace")
    a = SlicerApp(root, {"file": "vol.h5", "dataset": "/model"}, record=record)
    a.template()
    a._tabs.active = 2  # the timeline redraws only while its tab is shown
    yield a
    a._views.close()
    record.close()


def test_files_views_snapshots_and_notes_are_recorded(app):
    record = app.record
    app.slice_state.param.update(axis=2, index=7, cmap="kbc")
    app._sync_url()  # what the URL watcher does (no browser here)
    app._views.close()  # the view the user stayed on: recorded without waiting 2 s
    event = app.snapshot()
    assert event.attachments
    app.timeline._note.value = "the conductive body ends at 7"
    app.timeline._on_note()
    record.flush(10)
    kinds = {e.kind for e in record.events()}
    assert {"environment", "session", "file", "view", "snapshot", "note"} <= kinds
    view = record.events(kinds=["view"])[-1]
    assert (view.query["axis"], view.query["index"], view.query["cmap"]) == ("2", "7", "kbc")
    png = record.attachment_path(event.attachments[0]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_timeline_restores_a_view(app):
    app.slice_state.param.update(axis=1, index=3, cmap="fire")
    event = app.snapshot()
    app.record.flush(10)
    app.slice_state.param.update(axis=0, index=10, cmap="gray")
    app.timeline.kinds = ["snapshot"]
    (row,) = app.timeline._list.objects
    row.objects[1].clicks += 1  # its "Restore this view" button
    assert (app.slice_state.axis, app.slice_state.index, app.slice_state.cmap) == (1, 3, "fire")
    assert event.query["index"] == "3"


def test_notes_are_searchable(app):
    app.record.note("first light on the ore body")
    app.record.note("regularisation too strong?")
    app.record.flush(10)
    app.timeline.text = "ore body"
    (card,) = app.timeline._list.objects
    assert "first light" in card.object


def test_snapshot_png_shows_the_slice(tmp_path):
    path = write_volume(tmp_path / "v.h5")
    image = read_slice(describe(path, "/model"), SliceRequest("/model", (1, 2), (3, 0, 0)))
    png = render_snapshot(
        image,
        (0.0, 5.0),
        "fire",
        False,
        "linear",
        title="t",
        xlabel="x (m)",
        ylabel="y (m)",
        clabel="S/m",
    )
    picture = Image.open(io.BytesIO(png))
    assert picture.size == (700, 500)
    colours = picture.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 20  # a picture, not a blank


def test_a_capsule_app_is_read_only_and_restores_its_views(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    write_volume(root / "vol.h5")
    record = Record(tmp_path / "ws")
    record.view({"file": "vol.h5", "dataset": "/model", "axis": "2", "index": "5"}, {})
    record.close()
    app = SlicerApp(root, record=Record(tmp_path / "ws", read_only=True), read_only=True)
    app.template()
    assert not app._snapshot.visible
    (row,) = [o for o in app.timeline._list.objects if hasattr(o, "objects")]
    row.objects[1].clicks += 1
    assert (app.slice_state.file, app.slice_state.axis, app.slice_state.index) == ("vol.h5", 2, 5)
    assert app.slicer.image is not None  # the restored view is drawn
    assert app.record.read_only


def test_the_timeline_waits_while_hidden_and_keeps_its_cards(app):
    """Hidden, it does not redraw (the slider keeps its frame rate); shown, it catches up,
    and cards already drawn are reused, not rebuilt."""
    tl = app.timeline
    before = list(tl._list.objects)
    app._tabs.active = 0
    app.record.note("written while the slicer was shown")
    app.record.flush(5)
    tl.refresh()
    assert list(tl._list.objects) == before
    app._tabs.active = 2
    objects = list(tl._list.objects)
    # (more than the note may have come: the environment is recorded in the background)
    assert len(objects) >= len(before) + 1
    assert any(
        "written while the slicer was shown" in str(getattr(o, "object", "")) for o in objects
    )
    assert all(any(o is b for o in objects) for b in before)


def test_turning_follow_on_alone_updates_the_link(app, monkeypatch):
    """The link follows the Follow-latest toggle even when nothing else in the view moves
    (a sweep's model fills in without growing: no new info, no new index)."""
    monkeypatch.setattr(app.slice_state, "reload", lambda: [])  # the file has not changed
    assert not app.slice_state.info.growable
    app.slice_state.follow = True
    app._views.close()  # the pending view (what the URL shows) is recorded now
    app.record.flush(10)
    view = app.record.events(kinds=["view"])[-1]
    assert view.query.get("follow") == "true"


def test_a_restore_puts_back_the_defaults_of_what_its_link_lacks(app):
    """A link without a colour map (recorded by an older dashapp, or typed) restores the
    default colour map and limits, and the dataset's default plane: not today's choices."""
    st = app.slice_state
    st.param.update(axis=2, index=7, cmap="kbc", reverse=True, clim="global", follow=True)
    app.restore({"file": "vol.h5", "dataset": "/model", "index": "3"})
    assert (st.cmap, st.reverse, st.clim, st.follow) == ("fire", False, "robust", False)
    assert (st.axis, st.index) == (0, 3)  # the default normal axis, the link's index
    app.restore({"file": "vol.h5", "dataset": "/model", "axis": "1", "cmap": "bgy_r"})
    assert (st.axis, st.cmap, st.reverse) == (1, "bgy", True)


def test_the_timeline_shows_only_the_served_roots_events(app, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    app.record.view("file=vol.h5&dataset=/model&axis=1", {}, root=app.slice_state.root)
    app.record.view("file=theirs.h5&dataset=/d", {}, root=elsewhere)  # another server's
    app.record.note("a note from a script")
    app.record.flush(10)
    app.timeline.refresh()
    text = " ".join(str(getattr(c, "object", "")) for c in app.timeline._list.select(pn.pane.HTML))
    assert "vol.h5" in text
    assert "a note from a script" in text
    assert "theirs.h5" not in text
    assert "1 of other folders" in app.timeline._count.object
