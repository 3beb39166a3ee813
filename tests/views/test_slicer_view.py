"""The Slicer viewer without a browser: assert on the Bokeh models it builds and updates."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import panel as pn
import pytest
from bokeh.models import ColorBar, GlyphRenderer, Image, LogColorMapper

from dashapp import Slicer
from dashapp.data import open_file, warm_up
from dashapp.views.palettes import palette
from dashapp.views.plot import decoded

from ..fixtures import write_history, write_volume


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    warm_up()


@pytest.fixture
def vol(tmp_path):
    path = write_volume(tmp_path / "vol.h5")
    write_history(path)
    with h5py.File(path, "a") as f:
        f["title"] = "a string"
    return path


def _assert_shows(slicer: Slicer, expected: np.ndarray) -> None:
    """The browser's values are ``expected`` to within half a 16-bit code step (on the log
    scale a step is a ratio), or float32 rounding for a float frame."""
    data = slicer.plot.source.data
    dt = data["dt"][0]
    if np.isnan(dt):
        rtol, atol = 1e-5, 1e-6
    elif data["log"][0]:
        rtol, atol = 10 ** (0.5 * dt) - 1 + 1e-5, 1e-6
    else:
        rtol, atol = 1e-5, 0.5 * dt + 1e-6
    np.testing.assert_allclose(_image(slicer), expected, rtol=rtol, atol=atol)


def _image(slicer: Slicer) -> np.ndarray:
    """The slice's values, as the browser gets them (normalised to the colour limits)."""
    data = slicer.plot.source.data
    t, lo, hi = decoded(data), data["lo"][0], data["hi"][0]
    if data["log"][0]:
        return 10 ** (np.log10(lo) + t * (np.log10(hi) - np.log10(lo)))
    return lo + t * (hi - lo)


def test_builds_bokeh_models_with_image_colorbar_and_labels(vol):
    slicer = Slicer(vol, dataset="/model", axis=2)
    root = pn.panel(slicer).get_root()
    images = [r for r in root.select({"type": GlyphRenderer}) if isinstance(r.glyph, Image)]
    assert len(images) == 1
    assert len(list(root.select({"type": ColorBar}))) == 1  # the one of the scale in use
    fig = slicer.plot.figure
    assert fig.xaxis[0].axis_label.text == "y (m)"  # PlainText: never typeset as TeX
    assert fig.yaxis[0].axis_label.text == "z (m)"
    assert slicer.plot.colorbar.title.text == "model (S/m)"
    labels = [label for label, _ in slicer.plot.hover.tooltips]
    assert labels == ["y (m)", "z (m)", "model (S/m)"]
    assert _image(slicer).shape == (20, 30)


def test_the_picture_is_prepared_in_the_reads_thread(vol):
    """In a server session the data sent for a new slice is made in the thread that read it,
    not in the event loop; a colour change afterwards makes it again with the new limits."""
    from concurrent.futures import ThreadPoolExecutor

    slicer = Slicer(vol, dataset="/model", axis=2, index=3)
    feed = slicer.feed
    slicer.state.index = 17
    with ThreadPoolExecutor(1) as pool:  # as a session's read runs
        result = pool.submit(feed._read_job, *feed.read_args()).result()
    image, error, *_, prepared = result
    assert error is None
    assert prepared[0] is image
    assert feed.show(feed.runner.latest + 1, *result)
    assert slicer.plot.source.data["image"][0] is prepared[2]["image"][0]
    slicer.state.apply_view(vmin=0.1, vmax=0.2)
    assert slicer.plot.source.data["lo"] == [0.1]
    with open_file(vol) as f:
        _assert_shows(slicer, f["model"][:, :, 17])


def test_moving_the_index_redraws_that_slice(vol):
    slicer = Slicer(vol, dataset="/model", axis=2, index=3)
    with open_file(vol) as f:  # the viewer holds the file: borrow its handle
        expected = f["model"][:, :, 17]
    slicer.index = 17
    assert slicer.plot.source.data["image"][0].dtype == np.uint16  # sent as 16-bit codes
    _assert_shows(slicer, expected)
    assert "x = 175 m (index 17 of 40)" in slicer._status.object


def test_axis_widget_lists_named_axes_and_changes_the_plane(vol):
    slicer = Slicer(vol, dataset="/model")
    assert slicer.plane_controls.axis.options == {"z": 0, "y": 1, "x": 2}
    slicer.plane_controls.axis.value = 1
    assert slicer.state.axis == 1
    assert _image(slicer).shape == (20, 40)
    assert slicer.plane_controls.index.end == 29


def test_the_plane_extent_follows_the_axis_and_is_computed_once_per_plane(vol):
    slicer = Slicer(vol, dataset="/model", axis=2)

    def expected():
        st = slicer.state
        row, col = (st.info.axes[int(d)].edges() for d in st.display)
        return (col.min(), col.max()), (row.min(), row.max())

    first = slicer._vis.full_extent()
    assert first == expected()
    assert slicer._vis.full_extent() is first  # asked at every slice step: kept for the plane
    slicer.plane_controls.axis.value = 0
    assert slicer._vis.full_extent() == expected() != first


def test_colour_settings_never_move_the_image_mapper(vol):
    slicer = Slicer(vol, dataset="/model")
    image_before, data_before = slicer.image, slicer.plot.source.data["image"][0]
    fixed = slicer.plot.image_mapper
    slicer.cmap = "kbc"
    assert list(fixed.palette) == list(slicer.plot.mapper.palette) == list(palette("kbc"))
    assert slicer.plot.source.data["image"][0] is data_before  # a palette sends no data
    slicer.reverse = True
    assert list(fixed.palette) == list(palette("kbc"))[::-1]
    slicer.scale = "log"
    log = slicer.plot.mapper
    assert isinstance(log, LogColorMapper)
    assert slicer.plot.colorbar.color_mapper is log
    assert slicer.plot.figure.right == [slicer.plot.colorbars["log"]]
    assert slicer.plot.renderer.glyph.color_mapper is fixed
    assert (fixed.low, fixed.high) == (0, 1)
    assert log.low > 0
    slicer.state.apply_view(vmin=0.5, vmax=1.5)
    assert (log.low, log.high) == (0.5, 1.5)
    assert (fixed.low, fixed.high) == (0, 1)
    assert slicer.image is image_before  # no re-read for colour changes: only re-normalised
    t = decoded(slicer.plot.source.data)
    values = image_before.values
    positive = values > 0
    expected = (np.log10(values[positive]) - np.log10(0.5)) / (np.log10(1.5 / 0.5))
    step = slicer.plot.source.data["qb"][0]  # a code step, in colour-range units
    np.testing.assert_allclose(t[positive], expected, rtol=1e-5, atol=step / 2 + 1e-6)
    assert (t[values <= 0] == -np.inf).all()  # the low end of the palette, as before
    # on the log scale a code step is a ratio: 10 ** dt
    ratio = 10 ** slicer.plot.source.data["dt"][0]
    np.testing.assert_allclose(_image(slicer)[positive], values[positive], rtol=ratio - 1)


@pytest.mark.parametrize("clim", ["auto", "robust", "global", "manual"])
def test_min_max_boxes_only_for_manual_limits(vol, clim):
    slicer = Slicer(vol, dataset="/model", clim=clim)  # e.g. opened from a deep link
    assert (
        slicer.colour_controls.vmin.visible
        is slicer.colour_controls.vmax.visible
        is (clim == "manual")
    )
    slicer.clim = "manual" if clim != "manual" else "auto"
    assert slicer.colour_controls.vmin.visible is (clim != "manual")


def test_four_dims_show_a_slider_per_other_dim(vol):
    slicer = Slicer(vol, dataset="/history")
    assert slicer.plane_controls.others.visible
    (iteration,) = slicer.plane_controls.others.objects
    assert iteration.end == 3
    with open_file(vol) as f:
        expected = f["history"][2, slicer.index]
    iteration.value = 2
    assert slicer.state.indices == {0: 2}
    _assert_shows(slicer, expected)
    assert slicer.plane_controls.dims.visible


def test_unviewable_dataset_shows_a_message(vol):
    slicer = Slicer(vol, dataset="/model")
    slicer.dataset = "/title"
    assert slicer._alert.visible
    assert "holds text" in slicer._alert.object


def test_a_read_failure_keeps_the_last_picture(vol, tmp_path):
    slicer = Slicer(vol, dataset="/model")
    shown = slicer.plot.source.data["image"][0]
    data = vol.read_bytes()
    vol.write_bytes(data[: len(data) // 3])  # the file is cut short under the viewer
    slicer.index = 2
    assert slicer._alert.visible
    assert "truncated" in slicer._alert.object
    assert "last good picture" in slicer._alert.object
    assert slicer.plot.source.data["image"][0] is shown
    vol.write_bytes(data)
    slicer.index = 3
    assert not slicer._alert.visible


def test_notebook_sources(vol):
    with h5py.File(vol) as f:  # the user's own handle, opened first with default locking
        from_dataset = Slicer(f["history"], axis=2)
        assert (from_dataset.dataset, from_dataset.axis) == ("/history", 2)
        assert _image(from_dataset).shape == (6, 10)
    largest = Slicer(str(vol))
    assert largest.dataset == "/model"  # the largest image-like dataset


def test_large_datasets_get_overview_levels_with_progress(vol, monkeypatch):
    from dashapp.data import PYRAMIDS
    from dashapp.data import pyramid as pyr

    monkeypatch.setattr(PYRAMIDS, "min_bytes", 0)  # treat the test volume as large
    monkeypatch.setattr(pyr, "COARSEST", 8)
    slicer = Slicer(vol, dataset="/model", axis=0)
    assert (
        slicer.live_controls.build_text.visible
        or PYRAMIDS.status(slicer.state.info).state == "ready"
    )
    assert PYRAMIDS.wait(slicer.state.info).state == "ready"
    slicer.poll_build()  # the app polls every 0.5 s; here by hand
    assert not slicer.live_controls.build_bar.visible
    slicer._vis.frame = (10, 12)  # a tiny plot: the 30 x 40 slice fits overview level 1
    slicer.refresh()
    assert slicer.image.source == "pyramid"
    assert slicer.image.level == 1
    assert "overview level 1 (1:2)" in slicer._status.object


def test_a_dataset_that_is_mostly_fill_says_why_it_gets_no_overview_levels(tmp_path, monkeypatch):
    from dashapp.data import PYRAMIDS

    monkeypatch.setattr(PYRAMIDS, "min_bytes", 0)
    path = tmp_path / "sparse.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("v", shape=(512, 512), dtype="f4", chunks=(64, 64))
        d[:64, :64] = 1.0  # one chunk of 64 written
    slicer = Slicer(path, dataset="/v")
    assert PYRAMIDS.wait(slicer.state.info).state == "declined"
    slicer.poll_build()
    assert slicer.live_controls.build_text.visible
    assert not slicer.live_controls.build_bar.visible
    assert "chunks written: 1 of 64" in slicer.live_controls.build_text.object


@pytest.mark.parametrize(
    ("x", "y", "vx", "vy", "frame", "px"),
    [
        ((0, 100), (0, 50), (0, 100), (0, 50), (500, 800), (500, 800)),  # stretched to fill
        ((0, 100), (0, 50), (0, 100), (-25, 75), (400, 400), (200, 400)),  # equal aspect
        ((0, 100), (0, 100), (40, 60), (40, 60), (500, 500), (500, 500)),  # zoomed in
        ((0, 100), (0, 100), (-100, 200), (0, 100), (300, 600), (300, 200)),  # zoomed out in x
    ],
)
def test_covered_pixels(x, y, vx, vy, frame, px):
    from dashapp.views.plot import covered_pixels

    assert covered_pixels(x, y, vx, vy, frame) == px


def test_a_closed_slicer_lets_go_of_everything_process_wide(tmp_path):
    """close() ends the file watch and the number box's JS callback (Panel keeps those in a
    process-wide registry that would otherwise keep the slicer alive for good)."""
    import gc
    import weakref

    from panel.links import Callback

    from dashapp.data.watch import WATCHES

    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "m4", data=np.arange(4 * 8 * 10 * 6, dtype="f4").reshape(4, 8, 10, 6),
            chunks=(2, 4, 5, 3), compression="gzip",
        )  # fmt: skip
    slicer = Slicer(path, "/m4")
    assert slicer.wait()
    assert slicer.plane_controls.sliders  # the 4th dim has its own slider, with its own callback
    subs, sid = set(WATCHES._subs), slicer.feed._watch_id
    assert sid in subs

    from dashapp.data.chunks import CHUNK_CACHE

    assert slicer.feed.reads in CHUNK_CACHE._claims  # the chunks of its slice stay while it looks
    parts = {id(o) for o in slicer._layout.select()}

    def registered() -> int:
        return sum(id(k) in parts for k in list(Callback.registry.keys()))

    assert registered() >= 2  # the index slider's number box and the 4th dim's
    ref = weakref.ref(slicer)
    slicer.close()
    assert set(WATCHES._subs) == subs - {sid}
    assert registered() == 0
    assert slicer.feed.reads not in CHUNK_CACHE._claims
    del slicer
    gc.collect()
    assert ref() is None


def test_without_close_panels_registry_keeps_an_editable_slider_alive():
    """The Panel behaviour close() works around (a control: if Panel stops holding on, this
    fails and release_links can go)."""
    import gc
    import weakref

    from dashapp.views.session import release_links

    def make():
        slider = pn.widgets.EditableIntSlider(start=0, end=9)
        return weakref.ref(slider), pn.Column(slider)

    kept, column = make()
    del column
    gc.collect()
    assert kept() is not None
    release_links(kept())
    gc.collect()
    assert kept() is None
    freed, column = make()
    release_links(column)  # through a layout too
    del column
    gc.collect()
    assert freed() is None


def test_a_run_without_its_first_iteration_is_a_wait_not_an_error(tmp_path):
    """Issue 21 item 5: a live file whose writer has not written its first iteration says so
    as information (blue), not in a red error box; the first iteration then draws."""
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("model", shape=(0, 6, 8), maxshape=(None, 6, 8), dtype="f4")
    slicer = Slicer(path, dataset="/model")
    assert slicer.state.waiting
    assert "no data yet" in slicer.state.error
    assert slicer._alert.visible
    assert slicer._alert.alert_type == "info"
    # the writer is another process (this one holds the file open for reading, as a server does)
    subprocess.run(
        [sys.executable, "-c", "import h5py, numpy as np, sys\n"
         "with h5py.File(sys.argv[1], 'a', locking=False) as f:\n"
         "    f['model'].resize((1, 6, 8)); f['model'][0] = np.arange(48).reshape(6, 8)",
         str(path)],
        check=True,
    )  # fmt: skip
    slicer.reload()
    slicer.wait()
    assert not slicer.state.waiting
    assert not slicer.state.error
    assert not slicer._alert.visible
    assert slicer.image is not None

    broken = tmp_path / "empty.h5"  # a zero-length dimension that cannot grow: a fault
    with h5py.File(broken, "w") as f:
        f.create_dataset("model", shape=(0, 6, 8), dtype="f4")
    other = Slicer(broken, dataset="/model")
    assert not other.state.waiting
    assert other._alert.visible
    assert other._alert.alert_type == "danger"
