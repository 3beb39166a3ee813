"""The heatmap visualization: a slice of a dataset drawn as an image, with pan and zoom.

It draws what a :class:`~dashapp.state.feed.SliceFeed` publishes (the picture and its colour
limits) with the state's colour map, and keeps the plot's visible region and the state's zoom
in step. It is the first entry of :data:`dashapp.views.registry.VISUALIZATIONS`.
"""

from __future__ import annotations

from typing import Any

import param
from bokeh.events import RangesUpdate

from ..data import SliceImage
from ..state import SliceState
from ..state.feed import SliceFeed
from .plot import (
    DEFAULT_FRAME,
    SlicePlot,
    covered_pixels,
    equal_aspect_ranges,
    wants_equal_aspect,
)

__all__ = ["Heatmap"]


class Heatmap:
    """A slice drawn as a colour-mapped image (raw Bokeh: measured faster than HoloViews).

    Parameters
    ----------
    state
        The view shown.
    """

    def __init__(self, state: SliceState) -> None:
        self.state = state
        self.plot = SlicePlot.create()
        self.feed: SliceFeed | None = None
        self.frame = DEFAULT_FRAME
        self.plane: tuple | None = None
        self._syncing_ranges = False
        self._extent: tuple | None = None  # (dataset info, displayed axes, full extent)
        self.plot.figure.on_event(RangesUpdate, self._on_ranges)
        self.plot.figure.on_change("inner_width", self._on_resize)
        self.plot.figure.on_change("inner_height", self._on_resize)
        state.param.watch(self._on_zoom, ["x_range", "y_range"])
        state.param.watch(lambda e: self.apply_ranges(reset=True), ["aspect"])
        state.param.watch(self._on_colour, ["cmap", "reverse", "scale"])

    def prepare(self, image: SliceImage, limits: tuple[float, float], scale: str) -> tuple:
        """What the plot sends for a picture, made ahead in the read's thread."""
        return self.plot.prepare(image, limits, scale)

    def connect(self, feed: SliceFeed) -> None:
        """Draw what ``feed`` publishes."""
        self.feed = feed
        feed.param.watch(self._on_picture, ["image", "limits"])
        if feed.image is not None:  # read already (a notebook reads at once)
            self._draw()
            self._on_colour()

    # ------------------------------------------------------------------ drawing
    def _on_picture(self, *events: param.parameterized.Event) -> None:
        if any(e.name == "image" for e in events):
            self._draw()
        self._on_colour()

    def _draw(self) -> None:
        feed = self.feed
        if feed.image is None:
            self.plot.clear()
            return
        # sent, normalised to the colour limits, by set_colour
        self.plot.draw(feed.image, feed.prepared)
        if feed.plane != self.plane:
            self.plane = feed.plane
            self.plot.set_labels(self.state.info, tuple(int(d) for d in self.state.display))
            self.apply_ranges(reset=True)

    def _on_colour(self, *events: param.parameterized.Event) -> None:
        if self.plot.image is None or self.feed is None:
            return
        st = self.state
        self.plot.set_colour(st.cmap, st.reverse, st.scale, self.feed.current_limits())

    # ------------------------------------------------------------------ ranges and zoom
    def full_extent(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The whole plane's (x, y) extent; kept per dataset and pair of displayed axes (it is
        asked at every slice step)."""
        st = self.state
        display = (int(st.display[0]), int(st.display[1]))
        if self._extent is not None and self._extent[0] is st.info and self._extent[1] == display:
            return self._extent[2]
        row, col = st.info.axes[display[0]], st.info.axes[display[1]]
        extent = col.extent(), row.extent()  # (not edges(): 10^9 cells declared is 8 GB)
        self._extent = (st.info, display, extent)
        return extent

    def pixels(self) -> tuple[int, int]:
        """How many screen pixels the visible part of the plane covers, (height, width)."""
        st = self.state
        x, y = self.full_extent()
        if st.x_range and st.y_range:
            view_x, view_y = tuple(st.x_range), tuple(st.y_range)
        elif wants_equal_aspect(st.info, tuple(int(d) for d in st.display), x, y, st.aspect):
            view_x, view_y = equal_aspect_ranges(x, y, self.frame)
        else:
            view_x, view_y = x, y
        return covered_pixels(x, y, view_x, view_y, self.frame)

    def _on_zoom(self, *events: param.parameterized.Event) -> None:
        # From the plot (pan/zoom): only record whether to keep fitting; else move the plot.
        self.apply_ranges(move=not self._syncing_ranges)

    def apply_ranges(self, reset: bool = False, move: bool = True) -> None:
        """Show the state's zoom, or fit the whole plane (the browser refines the fit)."""
        st = self.state
        if st.info is None or self.plane is None:
            return
        x, y = self.full_extent()
        equal = wants_equal_aspect(st.info, tuple(int(d) for d in st.display), x, y, st.aspect)
        zoomed = bool(st.x_range and st.y_range)
        # A first guess from the last known frame size: what scripts without a browser see.
        fx, fy = equal_aspect_ranges(x, y, self.frame) if equal else (x, y)
        self._syncing_ranges = True
        try:
            if reset:
                self.plot.set_ranges(fx, fy, reset=True)
            if move:
                if zoomed:
                    self.plot.set_ranges(tuple(st.x_range), tuple(st.y_range), reset=False)
                elif not reset:
                    self.plot.set_ranges(fx, fy, reset=False)
            self.plot.set_extent(x, y, equal, fit=not zoomed)
        finally:
            self._syncing_ranges = False

    def _on_ranges(self, event: RangesUpdate) -> None:
        if self._syncing_ranges or self.state.info is None:
            return
        x, y = (event.x0, event.x1), (event.y0, event.y1)
        if None in x or None in y:
            return
        (fx0, fx1), (fy0, fy1) = self.full_extent()
        covers = x[0] <= fx0 and x[1] >= fx1 and y[0] <= fy0 and y[1] >= fy1
        new = (None, None) if covers else (tuple(map(float, x)), tuple(map(float, y)))
        if (self.state.x_range, self.state.y_range) != new:
            self._syncing_ranges = True
            try:
                self.state.param.update(x_range=new[0], y_range=new[1])
            finally:
                self._syncing_ranges = False

    def _on_resize(self, attr: str, old: Any, new: Any) -> None:
        old_h, old_w = self.frame
        h = new if attr == "inner_height" else old_h
        w = new if attr == "inner_width" else old_w
        if not h or not w or h < 20 or w < 20:
            return
        self.frame = (int(h), int(w))
        # Re-read only if the new size changes how many pixels the image should have.
        if self.feed is not None and (abs(h - old_h) > 0.1 * old_h or abs(w - old_w) > 0.1 * old_w):
            self.feed.refresh()
