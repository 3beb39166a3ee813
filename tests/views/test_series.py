"""The convergence plot: shown for a file with an inversion's misfit series, hidden otherwise."""

import h5py
import numpy as np
import panel as pn

from dashapp.state import SliceState
from dashapp.views.series import ConvergencePlot, read_series


def _figure_in_page(plot: ConvergencePlot):
    """The Bokeh figure as it is placed in a layout (Panel puts a figure in directly)."""
    (fig,) = pn.Column(plot).get_root().children
    return fig


def test_hidden_without_series_and_shown_with_them(tmp_path):
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["model"] = np.zeros((4, 5, 6))
    with h5py.File(tmp_path / "inv.h5", "w") as f:
        f["model"] = np.zeros((4, 5, 6))
        f["phi_d"] = [100.0, 10.0, 2.0]
        f["phi_m"] = [0.0, 1.0, 3.0]
    state = SliceState(root=str(tmp_path))
    plot = ConvergencePlot(state)
    assert not _figure_in_page(plot).visible  # nothing open: no empty plot on the page
    state.param.update(file="plain.h5", dataset="/model")
    assert not _figure_in_page(plot).visible
    state.param.update(file="inv.h5", dataset="/model")
    assert _figure_in_page(plot).visible
    assert plot.points == 3
    state.param.update(file="plain.h5", dataset="/model")
    assert not _figure_in_page(plot).visible


def test_a_series_linked_from_outside_the_root_is_not_plotted(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with h5py.File(tmp_path / "outside.h5", "w") as f:
        f["values"] = np.arange(5.0) + 1000
    with h5py.File(root / "run.h5", "w") as f:
        f["ext"] = h5py.ExternalLink(str(tmp_path / "outside.h5"), "/")
        f["misfit"] = h5py.SoftLink("/ext/values")
        f["phi_m"] = np.arange(3.0)
    assert list(read_series(root / "run.h5", root=root)) == ["model norm φm"]
