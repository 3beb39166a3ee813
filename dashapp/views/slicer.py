"""The slicer: controls and a plot on a :class:`~dashapp.state.SliceState`.

Reads run off the event loop in a shared thread pool, latest-wins (a fast drag never builds a
queue), and land back on the session's document through ``add_next_tick_callback``. A failed
read keeps the last good picture and shows why in an alert; the session goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import panel as pn
import param
from bokeh.events import RangesUpdate

from ..data import (
    PYRAMIDS,
    DashappError,
    SliceImage,
    ValueRange,
    estimate_range,
    read_slice,
    read_tree,
    reading_for,
    relative_to_root,
    release_reads,
)
from ..data.fsguard import bounded
from ..state import CMAPS, SliceState, resolve_limits, suggest_scale
from ..state.latest import EXECUTOR, LatestOnly
from .notebook import ensure_notebook_extension
from .palettes import palette
from .plot import (
    DEFAULT_FRAME,
    AspectToggle,
    SlicePlot,
    covered_pixels,
    equal_aspect_ranges,
    wants_equal_aspect,
)
from .session import on_session, poll, release_links
from .text import TextAlert, as_markdown
from .text import escape as _esc
from .widgets import ScrubSlider, StatusText

__all__ = ["Slicer"]

log = logging.getLogger(__name__)

_FRAME_PARAMS = ["info", "axis", "index", "display", "indices", "agg", "part", "x_range", "y_range"]
_COLOUR_PARAMS = ["cmap", "reverse", "scale", "clim", "vmin", "vmax"]


def _session_doc():
    """The Bokeh document of the current server session, or None (notebook, script)."""
    doc = pn.state.curdoc
    if doc is not None and doc.session_context is not None:
        return doc
    return None


def _state_from_source(
    source: Any, dataset: str | None, root: str | os.PathLike[str] | None, view: dict[str, Any]
) -> SliceState:
    """Build a state from what a notebook user has at hand: a path or an h5py object."""
    if isinstance(source, (h5py.Dataset, h5py.Group)):
        dataset = dataset or (source.name if isinstance(source, h5py.Dataset) else None)
        source = source.file.filename
    path = Path(os.fspath(source)).expanduser().resolve()
    root = Path(root).expanduser().resolve() if root else path.parent
    file = relative_to_root(root, path)
    if not dataset:
        tree = read_tree(path, root=root)
        viewable = [n for n in tree.walk() if n.kind == "dataset" and n.viewable]
        if not viewable:
            raise DashappError(f"{path.name} has no numeric dataset of 2 or more dimensions.")
        dataset = max(viewable, key=lambda n: int(np.prod(n.shape))).path
    return SliceState(root=str(root), file=file, dataset=dataset, **view)


class Slicer(pn.viewable.Viewer):
    """An orthographic slice viewer for an n-D HDF5 dataset.

    Parameters
    ----------
    source
        A file path, or an ``h5py.Dataset``; or leave it out and pass ``state``.
    dataset
        HDF5 path of the dataset (default: the largest image-like dataset of the file).
    root
        Folder the viewer may read (default: the file's folder).
    state
        An existing :class:`~dashapp.state.SliceState` to view (the app shares one with its URL).
    **view
        Initial view settings: ``axis``, ``index``, ``cmap``, ``clim``, ``scale``, ...

    Examples
    --------
    >>> Slicer("run.h5", dataset="/model", axis=2)  # doctest: +SKIP
    """

    state = param.ClassSelector(class_=SliceState, doc="What the slicer shows.")

    def __init__(
        self,
        source: Any = None,
        dataset: str | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
        state: SliceState | None = None,
        **view: Any,
    ) -> None:
        if state is None:
            if source is None:
                raise TypeError("Slicer needs a file (path or h5py object) or a state")
            state = _state_from_source(source, dataset, root, view)
        super().__init__(state=state)
        self._plot = SlicePlot.create()
        self._runner = LatestOnly(self._frame_done)
        self._reads = object()  # whose reads these are, for the chunk cache (reading_for)
        self._frame = DEFAULT_FRAME
        self._shown = 0
        self._plane: tuple | None = None
        self._syncing_ranges = False
        self._global: dict[tuple, ValueRange] = {}
        self._syncing_widgets = False
        self._other_sliders: dict[int, ScrubSlider] = {}
        self._watch_id: int | None = None
        self._live_doc = None
        self._loop = None
        self._retry_delay = 0.0
        self._retry_pending = False
        self._file_problem = ""
        self._watch_label = ""
        self._last_position: tuple[int, int] | None = None
        self._extent: tuple | None = None  # (dataset info, displayed axes, full extent)
        self._build_watch = None
        self._read_ms = 0.0
        self._build_widgets()
        self._layout = self._build_layout()
        self._plot.figure.on_event(RangesUpdate, self._on_ranges)
        self._plot.figure.on_change("inner_width", self._on_resize)
        self._plot.figure.on_change("inner_height", self._on_resize)
        self.state.param.watch(self._on_frame_change, _FRAME_PARAMS)
        self.state.param.watch(self._on_colour_change, _COLOUR_PARAMS)
        self.state.param.watch(self._on_dataset, ["info", "error", "axis", "display"])
        self.state.param.watch(self._on_file, ["root", "file"])
        self.state.param.watch(self._show_live, ["newer", "follow"])
        self.state.param.watch(lambda e: self._apply_state_ranges(reset=True), ["aspect"])
        self._on_file()
        self._on_dataset()
        self.refresh()

    # ------------------------------------------------------------------ notebook conveniences
    def __getattr__(self, name: str) -> Any:
        # slicer.index, slicer.axis, slicer.cmap, ... read through to the state
        if name in (
            "file",
            "dataset",
            "axis",
            "index",
            "display",
            "indices",
            "cmap",
            "reverse",
            "clim",
            "vmin",
            "vmax",
            "scale",
            "agg",
            "part",
            "x_range",
            "y_range",
        ):
            return getattr(self.state, name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in (
            "file",
            "dataset",
            "axis",
            "index",
            "display",
            "indices",
            "cmap",
            "reverse",
            "clim",
            "vmin",
            "vmax",
            "scale",
            "agg",
            "part",
            "x_range",
            "y_range",
        ):
            setattr(self.state, name, value)
            return
        super().__setattr__(name, value)

    @property
    def image(self) -> SliceImage | None:
        """The image currently shown (values, extent, statistics)."""
        return self._plot.image

    @property
    def plot(self) -> SlicePlot:
        """The Bokeh models of the plot."""
        return self._plot

    def wait(self, timeout: float = 30) -> bool:
        """Block until pending reads have been drawn (scripts and tests)."""
        return self._runner.wait(timeout)

    # ------------------------------------------------------------------ widgets and layout
    def _build_widgets(self) -> None:
        st = self.state
        self._axis = pn.widgets.RadioButtonGroup(
            label="Normal axis",
            options={"-": 0},
            color="primary",
            variant="outline",
            sizing_mode="stretch_width",
        )
        self._index = ScrubSlider(
            label="Slice",
            start=0,
            end=1,
            value=0,
            sizing_mode="stretch_width",
            fixed_start=0,
            css_classes=["dashapp-index"],
        )
        self._others = pn.Column(sizing_mode="stretch_width", margin=0)
        self._dims = pn.widgets.Select(
            label="Displayed dims (rows, columns)", options={}, sizing_mode="stretch_width"
        )
        self._cmap = pn.widgets.ColorMap(
            label="Colour map",
            options={name: list(palette(name)) for name in CMAPS},
            value_name=st.cmap,
            value=list(palette(st.cmap)),
            ncols=1,
            swatch_width=120,
            sizing_mode="stretch_width",
        )
        self._reverse = pn.widgets.Checkbox.from_param(st.param.reverse, label="Reverse colours")
        self._clim = pn.widgets.RadioButtonGroup.from_param(
            st.param.clim, label="Colour limits", variant="outline", sizing_mode="stretch_width"
        )
        self._vmin = pn.widgets.FloatInput.from_param(st.param.vmin, label="min", width=110)
        self._vmax = pn.widgets.FloatInput.from_param(st.param.vmax, label="max", width=110)
        # manual limits only: a deep link with clim=robust must not show empty min/max boxes
        self._vmin.visible = self._vmax.visible = st.clim == "manual"
        self._scale = pn.widgets.RadioButtonGroup.from_param(
            st.param.scale, label="Scale", variant="outline", sizing_mode="stretch_width"
        )
        self._agg = pn.widgets.Select.from_param(
            st.param.agg,
            label="Downsampling (pixel = mean/max/min/first of its cells)",
            sizing_mode="stretch_width",
        )
        self._part = pn.widgets.RadioButtonGroup.from_param(
            st.param.part,
            label="Complex values",
            variant="outline",
            sizing_mode="stretch_width",
        )
        self._title = pn.pane.HTML(
            "", sizing_mode="stretch_width", margin=(0, 10), css_classes=["dashapp-title"],
            stylesheets=[":host { overflow-wrap: anywhere; }"],  # long paths wrap, not overflow
        )  # fmt: skip
        self._status = StatusText(
            "", sizing_mode="stretch_width", margin=(0, 10), css_classes=["dashapp-status"]
        )
        self._alert = TextAlert(
            "",
            alert_type="danger",
            visible=False,
            sizing_mode="stretch_width",
            css_classes=["dashapp-error"],
        )
        self._notes = TextAlert(
            "",
            alert_type="warning",
            visible=False,
            sizing_mode="stretch_width",
            css_classes=["dashapp-notes"],
        )
        self._follow = pn.widgets.Toggle.from_param(
            self.state.param.follow,
            label="Follow latest",
            color="success",
            sizing_mode="stretch_width",
            css_classes=["dashapp-follow"],
        )
        self._live = pn.pane.HTML(
            "", margin=(0, 10), sizing_mode="stretch_width", css_classes=["dashapp-live"]
        )
        self._build_bar = pn.indicators.Progress(
            value=0,
            max=100,
            width=160,
            visible=False,
            margin=(4, 10),
            css_classes=["dashapp-build"],
        )
        self._build_text = pn.pane.HTML(
            "", margin=(0, 5), visible=False, css_classes=["dashapp-build-text"]
        )
        self._plot_pane = pn.pane.Bokeh(
            self._plot.figure, sizing_mode="stretch_both", min_height=360
        )
        self._axis.param.watch(self._on_axis_widget, "value")
        self._index.param.watch(self._on_index_widget, "value")
        self._dims.param.watch(self._on_dims_widget, "value")
        self._cmap.param.watch(self._on_cmap_widget, "value_name")
        self.state.param.watch(self._on_index_state, ["index", "indices"])
        self.state.param.watch(self._on_cmap_state, ["cmap"])
        self.state.param.watch(self._on_clim_mode, ["clim", "info"])

    def _build_layout(self) -> pn.viewable.Viewable:
        navigation = pn.Column(
            self._axis,
            self._index,
            self._others,
            self._dims,
            self._follow,
            sizing_mode="stretch_width",
            margin=0,
        )
        colour = pn.Column(
            self._cmap,
            self._reverse,
            self._scale,
            self._clim,
            pn.Row(self._vmin, self._vmax),
            self._part,
            self._agg,
            AspectToggle(state=self.state),
            sizing_mode="stretch_width",
            margin=0,
        )
        self._extras = pn.Column(sizing_mode="stretch_width", margin=0)
        controls = pn.Column(
            navigation,
            pn.layout.Divider(),
            colour,
            self._extras,
            width=330,
            margin=(0, 10),
            css_classes=["dashapp-controls"],
        )
        build = pn.Row(self._build_bar, self._build_text, margin=0)
        build = pn.Column(self._live, build, margin=0, sizing_mode="stretch_width")
        main = pn.Column(
            self._title,
            self._alert,
            self._notes,
            self._plot_pane,
            self._status,
            build,
            sizing_mode="stretch_both",
            min_height=420,
        )
        return pn.Row(main, controls, sizing_mode="stretch_both", min_height=480)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def add_panel(self, obj: Any) -> None:
        """Show ``obj`` under the controls (e.g. the convergence plot)."""
        self._extras.append(obj)

    def _repr_mimebundle_(self, include=None, exclude=None):
        ensure_notebook_extension()  # offline-safe: inline JS unless the user loaded Panel
        return super()._repr_mimebundle_(include, exclude)

    # ------------------------------------------------------------------ dataset and plane
    def _on_dataset(self, *events: param.parameterized.Event) -> None:
        st = self.state
        info = st.info
        self._alert.object = as_markdown(st.error)
        self._alert.visible = bool(st.error)
        if info is None:
            self._title.object = ""
            for w in (self._axis, self._index, self._dims, self._part, self._others):
                w.visible = False
            if st.error:
                self._plot.clear()
            return
        self._watch_pyramid()
        shape = " × ".join(str(n) for n in info.shape)
        name = info.title or info.path
        self._title.object = (
            f"<b>{_esc(st.file)}</b> : <b>{_esc(info.path)}</b> &nbsp; <span>{_esc(name)} · "
            f"{shape} · {_esc(info.dtype)}</span>"
        )
        has_axis = st.has_axis
        options: dict[str, int] = {}
        for axis in info.axes:
            label = axis.name if axis.name not in options else f"{axis.name} (dim {axis.dim})"
            options[label] = axis.dim
        self._syncing_widgets = True
        try:
            self._sync_plane_widgets(options, has_axis)
        finally:
            self._syncing_widgets = False
        self._part.visible = info.kind == "complex"
        self._notes.object = "<br>".join(as_markdown(n) for n in info.notes)
        self._notes.visible = bool(info.notes)

    def _sync_plane_widgets(self, options: dict[str, int], has_axis: bool) -> None:
        """Set the axis, slice and plane widgets from the state (their events are ignored)."""
        st, info = self.state, self.state.info
        self._axis.param.update(options=options if has_axis else {"-": 0}, value=st.axis)
        self._axis.visible = has_axis
        self._index.visible = has_axis and st.axis_size > 1
        if has_axis:
            axis = info.axes[st.axis]
            self._index.param.update(
                label=f"Slice along {axis.name}",
                start=0,
                end=max(st.axis_size - 1, 1),
                value=st.index,
                fixed_start=0,
                fixed_end=max(st.axis_size - 1, 1),
            )
        self._rebuild_others()
        if st.ndim >= 4:
            pairs = {}
            free = [d for d in range(st.ndim) if d != st.axis]
            for r in free:
                for c in free:
                    if r != c:
                        pairs[f"{info.axes[r].name} ↑, {info.axes[c].name} →"] = (r, c)
            self._dims.param.update(options=pairs, value=tuple(st.display))
            self._dims.visible = True
        else:
            self._dims.visible = False

    def _rebuild_others(self) -> None:
        """A slider per other dim; existing ones are updated in place (a growing iteration dim
        must not rebuild its widget on every write)."""
        st = self.state
        wanted = [d for d in st.other_dims if st.info.shape[d] > 1]
        for dim in wanted:
            size = st.info.shape[dim]
            value = min(int(st.indices.get(dim, 0)), size - 1)
            slider = self._other_sliders.get(dim)
            if slider is None:
                slider = ScrubSlider(
                    label=st.info.axes[dim].name,
                    start=0,
                    end=size - 1,
                    value=value,
                    fixed_start=0,
                    fixed_end=size - 1,
                    sizing_mode="stretch_width",
                    css_classes=[f"dashapp-dim-{dim}"],
                )
                slider.param.watch(partial(self._on_other_widget, dim), "value")
                self._other_sliders[dim] = slider
            else:
                slider.param.update(
                    label=st.info.axes[dim].name, end=size - 1, fixed_end=size - 1, value=value
                )
        for dim in list(self._other_sliders):
            if dim not in wanted:
                release_links(self._other_sliders.pop(dim))
        objects = [self._other_sliders[d] for d in wanted]
        if list(self._others.objects) != objects:
            self._others.objects = objects
        self._others.visible = bool(objects)

    # ------------------------------------------------------------------ widget <-> state
    def _on_axis_widget(self, event: param.parameterized.Event) -> None:
        if self._syncing_widgets:
            return
        if self.state.has_axis and event.new is not None and event.new != self.state.axis:
            self.state.axis = int(event.new)

    def _on_index_widget(self, event: param.parameterized.Event) -> None:
        if self._syncing_widgets:
            return
        if event.new is not None and event.new != self.state.index:
            self.state.index = int(event.new)

    def _on_other_widget(self, dim: int, event: param.parameterized.Event) -> None:
        if event.new is not None and self.state.indices.get(dim) != event.new:
            self.state.indices = {**self.state.indices, dim: int(event.new)}

    def _on_dims_widget(self, event: param.parameterized.Event) -> None:
        if self._syncing_widgets:
            return
        if event.new and tuple(event.new) != tuple(self.state.display):
            self.state.display = tuple(event.new)

    def _on_index_state(self, *events: param.parameterized.Event) -> None:
        if self._index.value != self.state.index:
            self._index.value = self.state.index
        for dim, slider in self._other_sliders.items():
            value = int(self.state.indices.get(dim, 0))
            if slider.value != value:
                slider.value = value

    def _on_cmap_widget(self, event: param.parameterized.Event) -> None:
        if event.new in CMAPS and event.new != self.state.cmap:
            self.state.cmap = event.new

    def _on_cmap_state(self, *events: param.parameterized.Event) -> None:
        if self._cmap.value_name != self.state.cmap:
            self._cmap.param.update(
                value_name=self.state.cmap, value=list(palette(self.state.cmap))
            )

    def _on_clim_mode(self, *events: param.parameterized.Event) -> None:
        manual = self.state.clim == "manual"
        self._vmin.visible = self._vmax.visible = manual
        if manual and (self.state.vmin is None or self.state.vmax is None) and self.image:
            lo, hi = self._limits()
            self.state.param.update(vmin=float(f"{lo:.6g}"), vmax=float(f"{hi:.6g}"))
        if self.state.clim == "global":
            self._ensure_global()

    # ------------------------------------------------------------------ frames
    def _on_frame_change(self, *events: param.parameterized.Event) -> None:
        if any(e.name in ("x_range", "y_range") for e in events):
            # From the plot (pan/zoom): only record whether to keep fitting; else move the plot.
            self._apply_state_ranges(move=not self._syncing_ranges)
        self.refresh()

    def refresh(self) -> None:
        """Read and draw the current view again (also after the file changed on disk)."""
        st = self.state
        if st.info is None:
            return
        request = st.request(self._screen_pixels())
        plane = (st.file, st.dataset, id(st.info), tuple(st.display))
        motion = (st.axis, st.index)
        direction = 0
        if self._last_position is not None and self._last_position[0] == motion[0]:
            direction = (motion[1] > self._last_position[1]) - (motion[1] < self._last_position[1])
        self._last_position = motion
        doc = _session_doc()
        if doc is None:  # notebook or script: draw synchronously
            seq = self._runner.latest = self._runner.latest + 1
            try:
                result, error = self._read(st.info, request, st.root, direction), None
            except Exception as exc:
                result, error = None, exc
            self._deliver(seq, result, error, plane)
            self._push()
            return
        self._runner.submit(self._read_job, st.info, request, st.root, plane, doc, direction)

    def _screen_pixels(self) -> tuple[int, int]:
        """How many screen pixels the visible part of the plane covers, (height, width)."""
        st = self.state
        x, y = self._full_extent()
        if st.x_range and st.y_range:
            view_x, view_y = tuple(st.x_range), tuple(st.y_range)
        elif wants_equal_aspect(st.info, tuple(int(d) for d in st.display), x, y, st.aspect):
            view_x, view_y = equal_aspect_ranges(x, y, self._frame)
        else:
            view_x, view_y = x, y
        return covered_pixels(x, y, view_x, view_y, self._frame)

    def _read(self, info, request, root, direction: int = 0) -> SliceImage:
        t0 = time.perf_counter()
        pyramid = PYRAMIDS.get(info) if PYRAMIDS.wanted(info) else None
        with reading_for(self._reads):
            # Bounded: a hung mount shows "the filesystem did not answer" in this session's
            # alert, and this session's reads go on (its read thread is not stuck forever).
            read = partial(read_slice, info, request, root, pyramid=pyramid, prefetch=direction)
            image = bounded(read, key=info.file, what="reading the slice")
        self._read_ms = (time.perf_counter() - t0) * 1000
        return image

    def _read_job(self, info, request, root, plane, doc, direction):
        # Runs in a worker thread; errors travel back with the result to be shown in the alert.
        try:
            image = self._read(info, request, root, direction)
        except Exception as exc:
            return None, exc, plane, doc, None
        return image, None, plane, doc, self._prepare(image)

    def _prepare(self, image: SliceImage) -> tuple | None:
        """The picture's data for the browser under the colour settings of now, made here in
        the read's thread rather than in the event loop (used if they still hold when it is
        shown)."""
        try:
            return self._plot.prepare(image, self._limits(image), self.state.scale)
        except Exception:  # the event loop computes it then
            log.debug("preparing a picture failed", exc_info=True)
            return None

    def _frame_done(self, seq: int, result: Any, error: BaseException | None) -> None:
        if error is not None or result is None:  # only a bug in _read_job itself lands here
            log.error("slice read job failed", exc_info=error)
            return
        image, exc, plane, doc, prepared = result
        on_session(doc, partial(self._deliver, seq, image, exc, plane, prepared))

    def _deliver(self, *args: Any) -> None:
        # A new slice of the same plane reaches the browser as one message: data, colour limits
        # and status, applied and painted together. (A new plane goes unheld: the browser fits
        # its ranges to the new extent as the changes arrive.)
        doc = _session_doc() if args[3] is not None and args[3] == self._plane else None
        try:
            with pn.io.hold(doc) if doc is not None else contextlib.nullcontext():
                self._show(*args)
        except Exception:
            log.exception("drawing a slice failed")
            raise

    def _show(
        self,
        seq: int,
        image: SliceImage | None,
        error: BaseException | None,
        plane: tuple | None,
        prepared: tuple | None = None,
    ) -> None:
        if seq < self._shown:  # an older read finished after a newer one was drawn
            return
        self._shown = seq
        if error is not None:
            message = (
                str(error)
                if isinstance(error, DashappError)
                else (f"Unexpected error while reading: {type(error).__name__}: {error}")
            )
            if not isinstance(error, DashappError):
                log.error("slice read failed", exc_info=error)
            self._alert.object = as_markdown(message) + (
                "<br><i>The last good picture is still shown.</i>" if self.image else ""
            )
            self._alert.visible = True
            return
        if self._alert.visible and not self.state.error:
            self._alert.visible = False
        self._plot.draw(image, prepared)  # sent, normalised to the colour limits, by _apply_colour
        if plane != self._plane:
            new_dataset = self._plane is None or plane[:3] != self._plane[:3]
            self._plane = plane
            self._new_plane()
            if new_dataset and self.state.auto_scale:
                self.state.scale = suggest_scale(image.stats)
        self._apply_colour()
        self._update_status()

    def _push(self) -> None:
        if pn.state.curdoc is None or pn.state.curdoc.session_context is None:
            with contextlib.suppress(Exception):  # no notebook comm attached: nothing to push
                pn.io.push_notebook(self._plot_pane)

    # ------------------------------------------------------------------ ranges and zoom
    def _full_extent(self) -> tuple[tuple[float, float], tuple[float, float]]:
        # Asked at every slice step (how many pixels the view covers); the same for the
        # whole plane, so computed once per dataset and displayed pair of axes.
        st = self.state
        display = (int(st.display[0]), int(st.display[1]))
        if self._extent is not None and self._extent[0] is st.info and self._extent[1] == display:
            return self._extent[2]
        row, col = st.info.axes[display[0]], st.info.axes[display[1]]
        extent = col.extent(), row.extent()  # (not edges(): 10^9 cells declared is 8 GB)
        self._extent = (st.info, display, extent)
        return extent

    def _new_plane(self) -> None:
        st = self.state
        self._plot.set_labels(st.info, tuple(int(d) for d in st.display))
        self._apply_state_ranges(reset=True)

    def _apply_state_ranges(self, reset: bool = False, move: bool = True) -> None:
        """Show the state's zoom, or fit the whole plane (the browser refines the fit)."""
        st = self.state
        if st.info is None or self._plane is None:
            return
        x, y = self._full_extent()
        equal = wants_equal_aspect(st.info, tuple(int(d) for d in st.display), x, y, st.aspect)
        zoomed = bool(st.x_range and st.y_range)
        # A first guess from the last known frame size: what scripts without a browser see.
        fx, fy = equal_aspect_ranges(x, y, self._frame) if equal else (x, y)
        self._syncing_ranges = True
        try:
            if reset:
                self._plot.set_ranges(fx, fy, reset=True)
            if move:
                if zoomed:
                    self._plot.set_ranges(tuple(st.x_range), tuple(st.y_range), reset=False)
                elif not reset:
                    self._plot.set_ranges(fx, fy, reset=False)
            self._plot.set_extent(x, y, equal, fit=not zoomed)
        finally:
            self._syncing_ranges = False

    def _on_ranges(self, event: RangesUpdate) -> None:
        if self._syncing_ranges or self.state.info is None:
            return
        x, y = (event.x0, event.x1), (event.y0, event.y1)
        if None in x or None in y:
            return
        (fx0, fx1), (fy0, fy1) = self._full_extent()
        covers = x[0] <= fx0 and x[1] >= fx1 and y[0] <= fy0 and y[1] >= fy1
        new = (None, None) if covers else (tuple(map(float, x)), tuple(map(float, y)))
        if (self.state.x_range, self.state.y_range) != new:
            self._syncing_ranges = True
            try:
                self.state.param.update(x_range=new[0], y_range=new[1])
            finally:
                self._syncing_ranges = False

    def _on_resize(self, attr: str, old: Any, new: Any) -> None:
        old_h, old_w = self._frame
        h = new if attr == "inner_height" else old_h
        w = new if attr == "inner_width" else old_w
        if not h or not w or h < 20 or w < 20:
            return
        self._frame = (int(h), int(w))
        if self.state.info is None:
            return
        # Re-read only if the new size changes how many pixels the image should have.
        if abs(h - old_h) > 0.1 * old_h or abs(w - old_w) > 0.1 * old_w:
            self.refresh()

    def close(self) -> None:
        """Let go of everything process-wide (the session ended, or the cell is discarded):
        the file watcher's subscription and the build poll would otherwise keep this slicer,
        its plot and its last picture alive for as long as the server runs."""
        from ..data.watch import WATCHES

        WATCHES.unsubscribe(self._watch_id)
        self._watch_id = None
        release_reads(self._reads)
        self._live_doc = self._loop = None
        if self._build_watch is not None:
            self._build_watch.stop()
            self._build_watch = None
        release_links(self._layout, *self._other_sliders.values())

    # ------------------------------------------------------------------ live files
    def _on_file(self, *events: param.parameterized.Event) -> None:
        """Watch the open file (through its folder) for a writer's changes."""
        from ..data.watch import WATCHES

        WATCHES.unsubscribe(self._watch_id)
        self._watch_id = None
        self._file_problem = ""
        self._retry_delay = 0.0
        st = self.state
        if not st.file:
            self._show_live()
            return
        try:
            path = st.path
        except DashappError:
            self._show_live()
            return
        # Where to run the callbacks: the session's document, or the notebook kernel's loop.
        self._live_doc = _session_doc()
        if self._live_doc is None:
            import asyncio

            try:
                self._loop = asyncio.get_event_loop()
            except RuntimeError:
                self._loop = None
        try:
            self._watch_id = WATCHES.subscribe([path], self._file_changed)
        except DashappError:  # the filesystem did not answer: the load's alert says so
            self._show_live()
            return
        mode = WATCHES.mode_of(self._watch_id)
        self._watch_label = mode.label if mode else ""
        self._show_live()

    def _file_changed(self, paths: set) -> None:
        """In the watcher thread: hand over to the session's event loop."""
        self._call_soon(self.reload)

    def _call_soon(self, fn, delay: float = 0.0) -> None:
        doc = self._live_doc
        if doc is not None:
            on_session(doc, fn, delay)
            return
        loop = self._loop
        if loop is not None and loop.is_running():

            def run() -> None:
                fn()
                self._push()

            if delay:
                loop.call_soon_threadsafe(loop.call_later, delay, run)
            else:
                loop.call_soon_threadsafe(run)
            return
        if not delay:
            fn()

    def reload(self) -> None:
        """The file changed: read its metadata again and redraw, keeping the view.

        A file being written, cut short, damaged or deleted keeps the last good picture with
        the reason below the plot, and is tried again (after 0.5 s, 1 s, 2 s, ... up to 10 s,
        and at the next change seen on disk) until it reads well again.
        """
        st = self.state
        if not st.file or not st.dataset:
            return
        try:
            st.reload()
        except DashappError as exc:
            self._file_problem = str(exc)
            self._retry_delay = min(10.0, max(0.5, self._retry_delay * 2))
            self._show_live()
            if not self._retry_pending:
                self._retry_pending = True

                def retry() -> None:
                    self._retry_pending = False
                    self.reload()

                self._call_soon(retry, self._retry_delay)
            return
        self._file_problem = ""
        self._retry_delay = 0.0
        self._show_live()  # the new info (triggered by the state) redraws the picture

    def _show_live(self, *events: param.parameterized.Event) -> None:
        st = self.state
        parts = []
        if self._watch_label:
            parts.append(f"watching the file ({_esc(self._watch_label)})")
        if self._file_problem:
            parts.append(
                f'<span class="dashapp-file-problem">⚠ {_esc(self._file_problem)} Showing the '
                f"last good picture; trying again in {self._retry_delay:g} s.</span>"
            )
        if st.newer and not st.follow:
            parts.append(f'<span class="dashapp-newer">{_esc(st.newer)}</span>')
        self._live.object = " · ".join(parts)
        self._live.visible = bool(parts)

    # ------------------------------------------------------------------ overview levels
    def _watch_pyramid(self) -> None:
        """Start (or look up) the dataset's pyramid build and show its progress."""
        info = self.state.info
        if info is None or not PYRAMIDS.wanted(info):
            self._show_build(None)
            return
        try:  # looks for levels on disk (stats the file): bounded, as it runs on the loop
            status = bounded(PYRAMIDS.ensure, info, key=info.file, what="finding overviews")
        except DashappError:
            self._show_build(None)
            return
        self._show_build(status)
        if status.state in ("queued", "building") and self._build_watch is None:
            try:
                self._build_watch = poll(self._poll_build, 500)
            except Exception:  # no event loop (a plain script): poll_build() can be called
                self._build_watch = None

    def poll_build(self) -> None:
        """Check the pyramid build; redraw from it once it is ready."""
        self._poll_build()

    def _poll_build(self) -> None:
        info = self.state.info
        try:
            status = (
                bounded(PYRAMIDS.status, info, key=info.file, what="finding overviews")
                if info is not None
                else None
            )
        except DashappError:
            return  # asked again at the next poll
        self._show_build(status)
        if status is None or status.state not in ("queued", "building"):
            if self._build_watch is not None:
                self._build_watch.stop()
                self._build_watch = None
            if status is not None and status.state == "ready":
                self.refresh()

    def _show_build(self, status) -> None:
        # (declined: no levels on purpose, mostly fill or no disk room; the sentence says why)
        active = status is not None and status.state in ("queued", "building", "failed", "declined")
        self._build_bar.visible = status is not None and status.state in ("queued", "building")
        self._build_text.visible = active
        if status is None:
            return
        self._build_bar.value = int(100 * status.progress)
        self._build_text.object = f'<span class="dashapp-build-text">{_esc(status.message)}</span>'

    # ------------------------------------------------------------------ colour
    def _on_colour_change(self, *events: param.parameterized.Event) -> None:
        if any(e.name == "clim" for e in events) and self.state.clim == "global":
            self._ensure_global()
        self._apply_colour()
        self._push()

    def _limits(self, image: SliceImage | None = None) -> tuple[float, float]:
        """The colour limits for ``image`` (default: the one shown) under the state's settings."""
        st = self.state
        image = image if image is not None else self.image
        stats = image.stats if image is not None else None
        if stats is None:
            return (0.0, 1.0)
        rng = self._global.get(self._global_key()) if st.clim == "global" else None
        return resolve_limits(st.clim, st.scale, stats, rng, st.vmin, st.vmax)

    def _apply_colour(self) -> None:
        if self.image is None:
            return
        st = self.state
        self._plot.set_colour(st.cmap, st.reverse, st.scale, self._limits())
        self._update_status()

    def _global_key(self) -> tuple:
        st = self.state
        return (st.file, st.dataset, st.part, id(st.info))

    def _ensure_global(self) -> None:
        st = self.state
        key = self._global_key()
        if st.info is None or key in self._global:
            return
        info, root, doc = st.info, st.root, _session_doc()

        def done(rng: ValueRange) -> None:
            self._global[key] = rng
            self._apply_colour()
            self._push()

        if doc is None:
            done(estimate_range(info, st.part, root=root))
            return
        self._status.object += " · estimating the dataset's range…"

        def job() -> None:
            try:
                rng = estimate_range(info, st.part, root=root)
            except Exception as exc:
                log.warning("range estimate failed: %s", exc)
                return
            on_session(doc, partial(done, rng))

        EXECUTOR.submit(job)

    # ------------------------------------------------------------------ status
    def _update_status(self) -> None:
        st, image = self.state, self.image
        if image is None or st.info is None:
            self._status.object = ""
            return
        lo, hi = self._limits()
        rows = (image.rows[1] - image.rows[0] + image.step - 1) // image.step
        cols = (image.cols[1] - image.cols[0] + image.step - 1) // image.step
        parts = []
        if st.position_label():
            parts.append(_esc(st.position_label()))
        for dim in st.other_dims:
            axis = st.info.axes[dim]
            i = int(st.indices.get(dim, 0))
            value = f" = {axis.coords[i]:g}" if axis.coords is not None else ""
            parts.append(f"{_esc(axis.name)}{value} (index {i})")
        read = f"read {rows:,} × {cols:,} cells"
        if image.level:
            h, w = image.read_shape
            read = f"read {h:,} × {w:,} cells of overview level {image.level} (1:{2**image.level})"
            if image.source != "pyramid":
                read += ", averaged from the file's chunks"
        if image.downsampled:
            h, w = image.values.shape
            read += f" → {h} × {w} px ({st.agg})"
        parts.append(f"{read} in {self._read_ms:.0f} ms")
        limits = f"colour {st.clim}: {lo:.4g} … {hi:.4g}"
        if st.clim == "global":
            rng = self._global.get(self._global_key())
            if rng is not None and not rng.exact:
                limits += f" (estimated from {rng.sampled:,} of {rng.total:,} values)"
        parts.append(limits)
        text = " · ".join(parts)
        if image.notes:
            text += "<br><b>Note:</b> " + "; ".join(_esc(n) for n in image.notes)
        self._status.object = f'<div class="dashapp-status-text">{text}</div>'
