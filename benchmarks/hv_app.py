"""The classic HoloViz slicer the benchmark compares dashapp with.

A HoloViews ``DynamicMap`` over the slice index, returning an ``hv.Image`` of the slice read with
h5py, wrapped in datashader's ``rasterize`` and driven by a Panel ``IntSlider``: the pattern in
the HoloViz tutorials for large gridded data. It is written as a scientist would, not tuned:
one ``h5py.File`` per session with HDF5's default chunk cache, the whole slice read per frame.

    panel serve benchmarks/hv_app.py --args FILE AXIS [--index I] [--dataset /volume]

The URL may override the file (a name in the same folder as ``FILE``), the axis and the index,
so one server can serve every volume and axis of a run: ``/hv_app?file=NAME&axis=1&index=40``.
The Bokeh figure gets the CSS class ``bench-hv-plot`` so the browser probe can find its canvas.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import holoviews as hv
import numpy as np
import panel as pn
from holoviews.operation.datashader import rasterize

parser = argparse.ArgumentParser(prog="benchmarks/hv_app.py")
parser.add_argument("file", help="HDF5 file")
parser.add_argument("axis", type=int, help="normal axis of the slices")
parser.add_argument("--index", type=int, default=None, help="first slice shown (default: middle)")
parser.add_argument("--dataset", default="/volume", help="HDF5 path of the 3-D dataset")
args, _ = parser.parse_known_args()


def _query(name: str) -> str | None:
    values = pn.state.session_args.get(name) if pn.state.session_args else None
    return values[0].decode() if values else None


path = Path(args.file).resolve()
if _query("file"):  # only a file next to the one given on the command line
    path = path.parent / Path(_query("file")).name
axis = int(_query("axis") or args.axis)
index = _query("index")
index = int(index) if index is not None else args.index

hv.extension("bokeh")
pn.extension()

h5 = h5py.File(path, "r")  # one read-only file per session, closed with the session
ds = h5[args.dataset]
n = ds.shape[axis]
# The displayed dims are the two others, rows up the screen and columns to the right (as in
# dashapp's default for a 3-D dataset).
rows_dim, cols_dim = (d for d in range(3) if d != axis)
xs = np.arange(ds.shape[cols_dim]) + 0.5
ys = np.arange(ds.shape[rows_dim]) + 0.5
start = n // 2 if index is None else max(0, min(index, n - 1))


def slice_image(index: int) -> hv.Image:
    """The slice ``index`` along ``axis``, read whole with h5py."""
    sel: list[int | slice] = [slice(None)] * 3
    sel[axis] = int(index)
    values = ds[tuple(sel)]
    return hv.Image(
        (xs, ys, values), kdims=[f"dim {cols_dim}", f"dim {rows_dim}"], vdims=["volume"]
    )


def _mark(plot, element) -> None:
    plot.state.css_classes = ["bench-hv-plot"]
    plot.state.name = "bench-hv-plot"


dmap = hv.DynamicMap(slice_image, kdims=["index"]).redim.range(index=(0, n - 1))
dmap = dmap.redim.default(index=start)
image = rasterize(dmap).opts(
    cmap="fire",
    colorbar=True,
    framewise=True,  # colour limits per slice, like dashapp's default
    width=768,
    height=640,
    tools=["hover"],
    hooks=[_mark],
)
# A widget instance: passing the class alone trips a Panel bug (``step`` unbound, Panel 1.9).
slider = pn.widgets.IntSlider(name="index", start=0, end=n - 1, value=start)
pane = pn.pane.HoloViews(image, widgets={"index": slider}, widget_location="right_top")
pn.state.on_session_destroyed(lambda context, f=h5: f.close())
# pane.layout holds the plot and its widgets (the pane alone shows only the plot).
pn.Column(f"## {path.name} : {args.dataset} (axis {axis})", pane.layout).servable(title="hv slicer")
