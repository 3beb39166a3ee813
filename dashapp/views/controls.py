"""The slicer's controls: small Viewers made from a :class:`~dashapp.state.SliceState`'s params.

Each control Viewer shows one group of settings and writes the user's changes to the state; the
slicer composes them (the shape of hvPlot's explorer: one small Viewer per group, one parent).

- :class:`PlaneControls`: the normal axis, the slice, a slider per other dim, the displayed
  dims, and "Follow latest".
- :class:`ColourControls`: colour map, reverse, scale, limits (with min/max boxes in manual
  mode), complex part and downsampling.
- :class:`LiveControls`: under the plot, what a live file and an overview-level build are
  doing (from a :class:`~dashapp.state.feed.SliceFeed`).

One numbering: a position along a dim is the slider's index (0-based), which is also what the
link's ``index=``/``d<k>=`` hold, the status line says and the "newer data" badge counts.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import panel as pn
import param

from ..state import CMAPS, SliceState
from ..state.feed import SliceFeed
from .palettes import palette
from .plot import AspectToggle
from .session import release_links
from .text import escape as _esc
from .widgets import ScrubSlider

__all__ = ["ColourControls", "LiveControls", "PlaneControls"]


class PlaneControls(pn.viewable.Viewer):
    """Which plane and slice are shown: normal axis, slice slider, other dims, follow."""

    state = param.ClassSelector(class_=SliceState, doc="The view these controls change.")

    def __init__(self, state: SliceState, **params: Any) -> None:
        super().__init__(state=state, **params)
        self._syncing = False
        self.axis = pn.widgets.RadioButtonGroup(
            label="Normal axis",
            options={"-": 0},
            color="primary",
            variant="outline",
            sizing_mode="stretch_width",
        )
        self.index = self._new_index_slider("Slice", 1, 0)
        self.others = pn.Column(sizing_mode="stretch_width", margin=0)
        self.sliders: dict[int, ScrubSlider] = {}
        self.dims = pn.widgets.Select(
            label="Displayed dims (rows, columns)", options={}, sizing_mode="stretch_width"
        )
        self.follow = pn.widgets.Toggle.from_param(
            state.param.follow,
            sizing_mode="stretch_width",
            css_classes=["dashapp-follow"],
        )
        self._show_follow()
        self.axis.param.watch(self._on_axis, "value")
        self.dims.param.watch(self._on_dims, "value")
        state.param.watch(self._on_state_index, ["index", "indices"])
        state.param.watch(self.sync, ["info", "error", "axis", "display"])
        state.param.watch(self._show_follow, ["follow"])
        self._layout = pn.Column(
            self.axis,
            self.index,
            self.others,
            self.dims,
            self.follow,
            sizing_mode="stretch_width",
            margin=0,
        )
        self.sync()

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def close(self) -> None:
        """Drop the sliders' JS callbacks (Panel's registry would keep them forever)."""
        release_links(self._layout, *self.sliders.values())

    def _new_index_slider(self, label: str, last: int, value: int) -> ScrubSlider:
        slider = ScrubSlider(
            label=label,
            start=0,
            end=last,
            value=value,
            fixed_start=0,
            fixed_end=last,
            sizing_mode="stretch_width",
            css_classes=["dashapp-index"],
        )
        slider.param.watch(self._on_index, "value")
        return slider

    def _replace_index_slider(self, label: str, last: int, value: int) -> None:
        """A new slider for a new range: the browser's slider (noUiSlider, as bundled with
        Bokeh) keeps the range it was made with for its Home and End keys when the range
        changes later (End on the 112 slices of x jumped to 47, the end of z's 48)."""
        old, self.index = self.index, self._new_index_slider(label, last, value)
        layout = getattr(self, "_layout", None)
        if layout is not None:
            layout[list(layout.objects).index(old)] = self.index
            old.visible = False
            release_links(old)

    def _show_follow(self, *events: param.parameterized.Event) -> None:
        # On and off must look different: filled and saying so when on.
        on = bool(self.state.follow)
        self.follow.param.update(
            name="Follow latest: on" if on else "Follow latest: off",
            color="success" if on else "default",
            variant="solid" if on else "outline",
        )

    # ------------------------------------------------------------------ state -> widgets
    def sync(self, *events: param.parameterized.Event) -> None:
        """Set the widgets from the state (their own events are ignored meanwhile)."""
        st, info = self.state, self.state.info
        if info is None:
            for w in (self.axis, self.index, self.dims, self.others):
                w.visible = False
            return
        options: dict[str, int] = {}
        for axis in info.axes:
            label = axis.name if axis.name not in options else f"{axis.name} (dim {axis.dim})"
            options[label] = axis.dim
        self._syncing = True
        try:
            has_axis = st.has_axis
            self.axis.param.update(options=options if has_axis else {"-": 0}, value=st.axis)
            self.axis.visible = has_axis
            if has_axis:
                last = max(st.axis_size - 1, 1)
                label = f"Slice along {info.axes[st.axis].name}"
                if self.index.end != last:
                    self._replace_index_slider(label, last, st.index)
                else:
                    self.index.param.update(label=label, value=st.index)
            self.index.visible = has_axis and st.axis_size > 1
            self._sync_others()
            if st.ndim >= 4:
                free = [d for d in range(st.ndim) if d != st.axis]
                pairs = {
                    f"{info.axes[r].name} ↑, {info.axes[c].name} →": (r, c)
                    for r in free
                    for c in free
                    if r != c
                }
                self.dims.param.update(options=pairs, value=tuple(st.display))
                self.dims.visible = True
            else:
                self.dims.visible = False
        finally:
            self._syncing = False

    def _sync_others(self) -> None:
        """A slider per other dim; existing ones are updated in place (a growing iteration dim
        must not rebuild its widget on every write)."""
        st = self.state
        wanted = [d for d in st.other_dims if st.info.shape[d] > 1]
        for dim in wanted:
            size = st.info.shape[dim]
            value = min(int(st.indices.get(dim, 0)), size - 1)
            slider = self.sliders.get(dim)
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
                slider.param.watch(partial(self._on_other, dim), "value")
                self.sliders[dim] = slider
            else:
                slider.param.update(label=st.info.axes[dim].name, end=size - 1, fixed_end=size - 1)
                slider.value = value
        for dim in list(self.sliders):
            if dim not in wanted:
                release_links(self.sliders.pop(dim))
        objects = [self.sliders[d] for d in wanted]
        if list(self.others.objects) != objects:
            self.others.objects = objects
        self.others.visible = bool(objects)

    def _on_state_index(self, *events: param.parameterized.Event) -> None:
        if self.index.value != self.state.index:
            self.index.value = self.state.index
        for dim, slider in self.sliders.items():
            value = int(self.state.indices.get(dim, 0))
            if slider.value != value:
                slider.value = value

    # ------------------------------------------------------------------ widgets -> state
    def _on_axis(self, event: param.parameterized.Event) -> None:
        if self._syncing:
            return
        if self.state.has_axis and event.new is not None and event.new != self.state.axis:
            self.state.axis = int(event.new)

    def _on_index(self, event: param.parameterized.Event) -> None:
        if self._syncing:
            return
        if event.new is not None and event.new != self.state.index:
            self.state.index = int(event.new)

    def _on_other(self, dim: int, event: param.parameterized.Event) -> None:
        if event.new is not None and self.state.indices.get(dim) != event.new:
            self.state.indices = {**self.state.indices, dim: int(event.new)}

    def _on_dims(self, event: param.parameterized.Event) -> None:
        if self._syncing:
            return
        if event.new and tuple(event.new) != tuple(self.state.display):
            self.state.display = tuple(event.new)


class ColourControls(pn.viewable.Viewer):
    """How values become colours: map, reverse, scale, limits, complex part, downsampling."""

    state = param.ClassSelector(class_=SliceState, doc="The view these controls change.")

    def __init__(self, state: SliceState, **params: Any) -> None:
        super().__init__(state=state, **params)
        self.cmap = pn.widgets.ColorMap(
            label="Colour map",
            options={name: list(palette(name)) for name in CMAPS},
            value_name=state.cmap,
            value=list(palette(state.cmap)),
            ncols=1,
            swatch_width=120,
            sizing_mode="stretch_width",
        )
        # A switch, not a checkbox: its label is part of what a click toggles.
        self.reverse = pn.widgets.Toggle.from_param(
            state.param.reverse, sizing_mode="stretch_width", css_classes=["dashapp-reverse"]
        )
        self._show_reverse()
        self.clim = pn.widgets.RadioButtonGroup.from_param(
            state.param.clim, label="Colour limits", variant="outline", sizing_mode="stretch_width"
        )
        self.vmin = pn.widgets.FloatInput.from_param(state.param.vmin, label="min", width=110)
        self.vmax = pn.widgets.FloatInput.from_param(state.param.vmax, label="max", width=110)
        self.scale = pn.widgets.RadioButtonGroup.from_param(
            state.param.scale, label="Scale", variant="outline", sizing_mode="stretch_width"
        )
        self.agg = pn.widgets.Select.from_param(
            state.param.agg,
            label="Downsampling (pixel = mean/max/min/first of its cells)",
            sizing_mode="stretch_width",
        )
        self.part = pn.widgets.RadioButtonGroup.from_param(
            state.param.part, label="Complex values", variant="outline", sizing_mode="stretch_width"
        )
        self.aspect = AspectToggle(state=state)
        self.cmap.param.watch(self._on_cmap, "value_name")
        state.param.watch(self._on_state_cmap, ["cmap"])
        state.param.watch(self._show_reverse, ["reverse"])
        state.param.watch(self._show_kind, ["clim", "info"])
        self._show_kind()
        self._layout = pn.Column(
            self.cmap,
            self.reverse,
            self.scale,
            self.clim,
            pn.Row(self.vmin, self.vmax),
            self.part,
            self.agg,
            self.aspect,
            sizing_mode="stretch_width",
            margin=0,
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def _show_reverse(self, *events: param.parameterized.Event) -> None:
        on = bool(self.state.reverse)
        self.reverse.param.update(
            name="Reverse colours: on" if on else "Reverse colours: off",
            variant="solid" if on else "outline",
        )

    def _show_kind(self, *events: param.parameterized.Event) -> None:
        # manual limits only: a deep link with clim=robust must not show empty min/max boxes
        self.vmin.visible = self.vmax.visible = self.state.clim == "manual"
        info = self.state.info
        self.part.visible = info is not None and info.kind == "complex"

    def _on_cmap(self, event: param.parameterized.Event) -> None:
        if event.new in CMAPS and event.new != self.state.cmap:
            self.state.cmap = event.new

    def _on_state_cmap(self, *events: param.parameterized.Event) -> None:
        if self.cmap.value_name != self.state.cmap:
            self.cmap.param.update(value_name=self.state.cmap, value=list(palette(self.state.cmap)))


class LiveControls(pn.viewable.Viewer):
    """Under the plot: the live file (watched, failing, newer data) and the overview build."""

    feed = param.ClassSelector(class_=SliceFeed, doc="Whose live file and build are shown.")

    def __init__(self, feed: SliceFeed, **params: Any) -> None:
        super().__init__(feed=feed, **params)
        self.line = pn.pane.HTML(
            "", margin=(0, 10), sizing_mode="stretch_width", css_classes=["dashapp-live"]
        )
        self.build_bar = pn.indicators.Progress(
            value=0,
            max=100,
            width=160,
            visible=False,
            margin=(4, 10),
            css_classes=["dashapp-build"],
        )
        self.build_text = pn.pane.HTML(
            "", margin=(0, 5), visible=False, css_classes=["dashapp-build-text"]
        )
        feed.param.watch(self._show_live, ["watching", "problem", "retry_in"])
        feed.state.param.watch(self._show_live, ["newer", "follow"])
        feed.param.watch(self._show_build, ["build_state", "build_progress", "build_message"])
        self._show_live()
        self._show_build()
        self._layout = pn.Column(
            self.line,
            pn.Row(self.build_bar, self.build_text, margin=0),
            margin=0,
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def _show_live(self, *events: param.parameterized.Event) -> None:
        feed, st = self.feed, self.feed.state
        parts = []
        if feed.watching:
            parts.append(f"watching the file ({_esc(feed.watching)})")
        if feed.problem:
            parts.append(
                f'<span class="dashapp-file-problem">⚠ {_esc(feed.problem)} Showing the '
                f"last good picture; trying again in {feed.retry_in:g} s.</span>"
            )
        if st.newer and not st.follow:
            parts.append(f'<span class="dashapp-newer">{_esc(st.newer)}</span>')
        self.line.object = " · ".join(parts)
        self.line.visible = bool(parts)

    def _show_build(self, *events: param.parameterized.Event) -> None:
        # (declined: no levels on purpose, mostly fill or no disk room; the sentence says why)
        state = self.feed.build_state
        self.build_bar.visible = state in ("queued", "building")
        self.build_text.visible = state in ("queued", "building", "failed", "declined")
        if not state:
            return
        self.build_bar.value = int(100 * self.feed.build_progress)
        self.build_text.object = (
            f'<span class="dashapp-build-text">{_esc(self.feed.build_message)}</span>'
        )
