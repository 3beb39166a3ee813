"""The slicer: controls, a visualization and a feed on a :class:`~dashapp.state.SliceState`.

The view composes small control Viewers (:mod:`.controls`), the dataset's visualization (the
first entry of :mod:`.registry` that supports it) and a :class:`~dashapp.state.feed.SliceFeed`
that reads, follows the live file, tracks overview builds and resolves colour limits. The
view only draws: it tells the feed how results reach its document (``add_next_tick_callback``
in a server session, at once in a notebook) and shows what the feed publishes. A failed read
keeps the last good picture and shows why in an alert; the session goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import panel as pn
import param

from ..data import DashappError, SliceImage, read_tree, relative_to_root
from ..state import VIEW_PARAMS, SliceState
from ..state.feed import SliceFeed
from .controls import ColourControls, LiveControls, PlaneControls
from .notebook import ensure_notebook_extension
from .plot import SlicePlot
from .registry import supported
from .session import on_session, release_links
from .text import TextAlert, as_markdown
from .text import escape as _esc
from .widgets import StatusText

__all__ = ["NOTEBOOK_ATTRS", "Slicer"]

log = logging.getLogger(__name__)

#: Settings a notebook reads and writes as ``slicer.<name>`` (passed through to the state).
NOTEBOOK_ATTRS = ("file", "dataset", *VIEW_PARAMS)


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
    feed = param.ClassSelector(class_=SliceFeed, doc="Reads and live updates of the view.")

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
        self._doc = _session_doc()
        self._loop = None
        if self._doc is None:  # a notebook kernel's loop runs the file watcher's callbacks
            import asyncio

            with contextlib.suppress(RuntimeError):
                self._loop = asyncio.get_event_loop()
        self._vis = supported(state.info)[0].build(state)
        feed = SliceFeed(
            state,
            schedule=self._schedule,
            threaded=self._doc is not None,
            prepare=self._vis.prepare,
            pixels=self._vis.pixels,
        )
        super().__init__(state=state, feed=feed)
        self._vis.connect(feed)
        self.plane_controls = PlaneControls(state)
        self.colour_controls = ColourControls(state)
        self.live_controls = LiveControls(feed)
        self._build_panes()
        self._layout = self._build_layout()
        state.param.watch(self._on_dataset, ["info", "error"])
        feed.param.watch(self._on_feed, ["image", "status", "error"])
        feed.param.watch(self._push, ["image", "limits", "status"])
        state.param.watch(self._push, ["cmap", "reverse", "scale"])
        self._on_dataset()
        self._on_feed()

    # ------------------------------------------------------------------ notebook conveniences
    def __getattr__(self, name: str) -> Any:
        # slicer.index, slicer.axis, slicer.follow, ... read through to the state
        if name in NOTEBOOK_ATTRS:
            return getattr(self.state, name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in NOTEBOOK_ATTRS:
            setattr(self.state, name, value)
            return
        super().__setattr__(name, value)

    @property
    def image(self) -> SliceImage | None:
        """The image currently shown (values, extent, statistics)."""
        return self.feed.image

    @property
    def plot(self) -> SlicePlot:
        """The Bokeh models of the plot."""
        return self._vis.plot

    def wait(self, timeout: float = 30) -> bool:
        """Block until pending reads have been drawn (scripts and tests)."""
        return self.feed.wait(timeout)

    def refresh(self) -> None:
        """Read and draw the current view again."""
        self.feed.refresh()

    def reload(self) -> None:
        """The file changed: read its metadata again and redraw, keeping the view."""
        self.feed.reload()

    def poll_build(self) -> None:
        """Check the overview-level build; redraw from it once it is ready."""
        self.feed.poll_build()

    def _limits(self, image: SliceImage | None = None) -> tuple[float, float]:
        """The colour limits of ``image`` (default: the one shown) under the settings of now."""
        return self.feed.current_limits(image)

    # ------------------------------------------------------------------ where results land
    def _schedule(self, fn, delay: float = 0.0) -> None:
        """Run ``fn`` on this view's document (the feed's results, retries and polls)."""
        if self._doc is not None:
            on_session(self._doc, partial(self._held, fn), delay)
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

    def _held(self, fn) -> None:
        # A new slice of the same plane reaches the browser as one message: data, colour limits
        # and status, applied and painted together. (A new plane goes unheld: the browser fits
        # its ranges to the new extent as the changes arrive.)
        st = self.state
        plane = (st.file, st.dataset, id(st.info), tuple(st.display))
        doc = self._doc if plane == self._vis.plane else None
        with pn.io.hold(doc) if doc is not None else contextlib.nullcontext():
            fn()

    def _push(self, *events: param.parameterized.Event) -> None:
        if self._doc is None:
            with contextlib.suppress(Exception):  # no notebook comm attached: nothing to push
                pn.io.push_notebook(self._plot_pane)

    # ------------------------------------------------------------------ panes and layout
    def _build_panes(self) -> None:
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
        self._plot_pane = pn.pane.Bokeh(
            self._vis.plot.figure, sizing_mode="stretch_both", min_height=360
        )

    def _build_layout(self) -> pn.viewable.Viewable:
        self._extras = pn.Column(sizing_mode="stretch_width", margin=0)
        controls = pn.Column(
            self.plane_controls,
            pn.layout.Divider(),
            self.colour_controls,
            self._extras,
            width=330,
            margin=(0, 10),
            css_classes=["dashapp-controls"],
        )
        main = pn.Column(
            self._title,
            self._alert,
            self._notes,
            self._plot_pane,
            self._status,
            self.live_controls,
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

    def close(self) -> None:
        """Let go of everything process-wide (the session ended, or the cell is discarded):
        the file watcher's subscription and the build poll would otherwise keep this slicer,
        its plot and its last picture alive for as long as the server runs."""
        self.feed.close()
        self._doc = self._loop = None
        self.plane_controls.close()
        release_links(self._layout)

    # ------------------------------------------------------------------ drawing
    def _on_dataset(self, *events: param.parameterized.Event) -> None:
        st, info = self.state, self.state.info
        self._show_alert()
        if info is None:
            self._title.object = ""
            return
        shape = " × ".join(str(n) for n in info.shape)
        name = info.title or info.path
        self._title.object = (
            f"<b>{_esc(st.file)}</b> : <b>{_esc(info.path)}</b> &nbsp; <span>{_esc(name)} · "
            f"{shape} · {_esc(info.dtype)}</span>"
        )
        self._notes.object = "<br>".join(as_markdown(n) for n in info.notes)
        self._notes.visible = bool(info.notes)

    def _show_alert(self) -> None:
        """The dataset's problem, else the last read's (the last good picture stays)."""
        st, feed = self.state, self.feed
        # a dataset whose writer has not written its first slice is a wait, not a fault
        self._alert.alert_type = "info" if st.error and st.waiting else "danger"
        if st.error:
            self._alert.object = as_markdown(st.error)
        elif feed.error:
            self._alert.object = as_markdown(feed.error) + (
                "<br><i>The last good picture is still shown.</i>" if feed.image else ""
            )
        self._alert.visible = bool(st.error or feed.error)

    def _on_feed(self, *events: param.parameterized.Event) -> None:
        names = {e.name for e in events} or {"image"}
        if "error" in names or "image" in names:
            self._show_alert()
        if "status" in names or "image" in names:
            text = self.feed.status
            if not text:
                self._status.object = ""
                return
            line, _, notes = text.partition("\nNote: ")
            html = _esc(line) + (f"<br><b>Note:</b> {_esc(notes)}" if notes else "")
            self._status.object = f'<div class="dashapp-status-text">{html}</div>'
