"""A small plot of an inversion's convergence (misfit and regularisation per iteration).

Shown beside the slicer when the open file has 1-D series such as ``/misfit`` and
``/regularization`` (the demo inversion writes them, as SimPEG users typically do). It is
redrawn whenever the slicer reloads the file, so it grows with a running inversion.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure

from ..data import DashappError, open_file, resolve
from ..data.files import refresh_once
from ..data.fsguard import bounded
from ..data.resolve import resolve_object
from ..state import SliceState

__all__ = ["SERIES_NAMES", "ConvergencePlot", "read_series"]

#: 1-D datasets plotted, by the names inversion codes give them (case-insensitive).
SERIES_NAMES = {
    "misfit": "data misfit φd",
    "phi_d": "data misfit φd",
    "regularization": "model norm φm",
    "regularisation": "model norm φm",
    "phi_m": "model norm φm",
}


def read_series(path, root=None) -> dict[str, np.ndarray]:
    """The convergence series at the root of a file: ``{label: values}`` (may be empty)."""
    out: dict[str, np.ndarray] = {}
    with open_file(path) as f, contextlib.ExitStack() as stack:
        for name in f:
            label = SERIES_NAMES.get(name.lower())
            if label is None or label in out:
                continue
            try:  # hop by hop: a series linked from outside the root is not shown
                obj = resolve_object(f, name, root, stack)
            except DashappError:
                continue
            if label is None or label in out or obj is None or getattr(obj, "ndim", 0) != 1:
                continue
            if obj.dtype.kind not in "iuf" or obj.shape[0] > 100_000:
                continue
            refresh_once(obj)
            out[label] = np.asarray(obj[()], dtype=float)
    return out


class ConvergencePlot(pn.viewable.Viewer):
    """Misfit and regularisation against iteration, for the file a :class:`SliceState` shows."""

    state = param.ClassSelector(class_=SliceState, doc="The slicer's state (its file).")

    def __init__(self, state: SliceState, **params) -> None:
        super().__init__(state=state, **params)
        self._sources = {
            label: ColumnDataSource({"iteration": [], "value": []})
            for label in ("data misfit φd", "model norm φm")
        }
        fig = figure(
            height=230,
            sizing_mode="stretch_width",
            y_axis_type="log",
            x_axis_label="iteration",
            toolbar_location=None,
            title="Convergence",
            name="convergence-plot",
            css_classes=["dashapp-convergence"],
            visible=False,
        )
        for (label, source), colour in zip(
            self._sources.items(), ("#1f5d8c", "#c0392b"), strict=True
        ):
            fig.line(
                "iteration", "value", source=source, color=colour, legend_label=label, line_width=2
            )
            fig.scatter("iteration", "value", source=source, color=colour, size=5)
        fig.add_tools(
            HoverTool(tooltips=[("iteration", "@iteration"), ("value", "@value{0.000e}")])
        )
        fig.legend.location = "top_right"
        fig.legend.label_text_font_size = "11px"
        self.figure = fig
        self._pane = pn.pane.Bokeh(fig, sizing_mode="stretch_width", visible=False)
        state.param.watch(self.update, ["info", "file"])
        self.update()

    def update(self, *events) -> None:
        """Read the series again (cheap: a few hundred numbers)."""
        st = self.state
        series: dict[str, np.ndarray] = {}
        if st.file:
            try:
                series = bounded(
                    lambda: read_series(resolve(st.root, st.file), root=st.root),
                    key=os.path.join(st.root, st.file),
                    what="reading the convergence series",
                )
            except DashappError:
                series = {}
        for label, source in self._sources.items():
            values = series.get(label, np.array([]))
            values = np.where(values > 0, values, np.nan)
            source.data = {"iteration": list(range(1, len(values) + 1)), "value": values.tolist()}
        shown = any(len(v) for v in series.values())
        # Panel places a figure in a layout directly, without the pane's ``visible``: set both.
        self._pane.visible = self.figure.visible = shown

    @property
    def points(self) -> int:
        """Iterations plotted."""
        return len(self._sources["data misfit φd"].data["iteration"])

    def __panel__(self):
        return self._pane
