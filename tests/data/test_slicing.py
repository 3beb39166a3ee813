"""Pure slicing helpers: one-line table tests."""

from __future__ import annotations

import numpy as np
import pytest

from dashapp.data.slicing import (
    build_selection,
    clamp,
    decimation,
    default_axis,
    default_display_dims,
    index_range,
    output_size,
    slider_dims,
)


@pytest.mark.parametrize(
    ("value", "size", "out"), [(-3, 10, 0), (4, 10, 4), (12, 10, 9), (0, 0, 0)]
)
def test_clamp(value, size, out):
    assert clamp(value, size) == out


@pytest.mark.parametrize(("ndim", "axis"), [(2, 0), (3, 0), (4, 1), (5, 2)])
def test_default_axis(ndim, axis):
    assert default_axis(ndim) == axis


@pytest.mark.parametrize(
    ("ndim", "axis", "display"),
    [(2, 0, (0, 1)), (3, 0, (1, 2)), (3, 1, (0, 2)), (3, 2, (0, 1)), (4, 1, (2, 3)),
     (4, 3, (1, 2))],
)  # fmt: skip
def test_default_display_dims(ndim, axis, display):
    assert default_display_dims(ndim, axis) == display


@pytest.mark.parametrize(
    ("ndim", "display", "sliders"), [(3, (1, 2), [0]), (4, (2, 3), [0, 1]), (2, (0, 1), [])]
)
def test_slider_dims(ndim, display, sliders):
    assert slider_dims(ndim, display) == sliders


@pytest.mark.parametrize(
    ("shape", "display", "indices", "rows", "cols", "step", "sel"),
    [
        ((4, 5, 6), (1, 2), (2, 0, 0), (0, 5), (0, 6), (1, 1),
         (2, slice(0, 5, 1), slice(0, 6, 1))),
        ((4, 5, 6), (0, 2), (0, 9, 0), (1, 3), (2, 4), (1, 2),
         (slice(1, 3, 1), 4, slice(2, 4, 2))),
        ((2, 3, 4, 5), (3, 1), (1, 0, 2, 0), (0, 5), (0, 3), (1, 1),
         (1, slice(0, 3, 1), 2, slice(0, 5, 1))),
    ],
)  # fmt: skip
def test_build_selection(shape, display, indices, rows, cols, step, sel):
    assert build_selection(shape, display, indices, rows, cols, step) == sel


EDGES = np.arange(11, dtype=float)  # ten cells of width 1 from 0 to 10


@pytest.mark.parametrize(
    ("lo", "hi", "out"),
    [(None, None, (0, 10)), (2.5, 4.5, (2, 5)), (2.0, 4.0, (2, 4)), (-5, 50, (0, 10)),
     (4.5, 2.5, (2, 5)), (20, 30, (9, 10)), (-9, -8, (0, 1)), (3.2, 3.3, (3, 4))],
)  # fmt: skip
def test_index_range(lo, hi, out):
    assert index_range(EDGES, lo, hi) == out


@pytest.mark.parametrize(
    ("rows", "cols", "budget", "step"), [(100, 100, 10_000, 1), (200, 200, 10_000, 2),
                                         (1000, 1000, 10_000, 10), (1001, 1000, 10_000, 11),
                                         # a thin region keeps its one row: the stride alone
                                         # must bring the columns within budget
                                         (1, 10**9, 16_000_000, 63), (10**9, 1, 10, 10**8),
                                         (3, 10**12, 10**6, 10**6)]
)  # fmt: skip
def test_decimation(rows, cols, budget, step):
    assert decimation(rows, cols, budget) == step
    kept = -(-rows // step) * -(-cols // step)
    assert kept <= budget
    assert step == 1 or -(-rows // (step - 1)) * -(-cols // (step - 1)) > budget


@pytest.mark.parametrize(
    ("n", "plot", "out"), [((10, 20), (600, 800), (10, 20)), ((4000, 300), (600, 800), (600, 300))]
)
def test_output_size(n, plot, out):
    assert output_size(*n, *plot) == out


@pytest.mark.parametrize("n", [1, 2, 7])
@pytest.mark.parametrize(
    "lo_hi",
    [None, (-3, 40), (-0.5, 0.5), (0.49, 0.51), (1.2, 3.5), (3.5, 1.2), (4.5, 4.5), (30, 40),
     (None, 2.2), (1.7, None), (float("nan"), 2.0), (-float("inf"), float("inf"))],
)  # fmt: skip
def test_an_index_axis_finds_its_cells_without_building_its_edges(n, lo_hi):
    """Axis.cell_range of an index axis is arithmetic, and agrees with index_range over the
    edges it would have built (10^9 of them for a file declaring so); non-finite bounds are
    no bound."""
    from dashapp.data.dataset import Axis

    axis = Axis(0, n, "dim 0")
    lo, hi = lo_hi or (None, None)
    lo = lo if lo is not None and np.isfinite(lo) else None
    hi = hi if hi is not None and np.isfinite(hi) else None
    assert axis.cell_range(lo_hi) == index_range(axis.edges(), lo, hi)
    np.testing.assert_array_equal(axis.edge_at(np.arange(n + 1)), axis.edges())
    assert axis.extent() == (axis.edges()[0], axis.edges()[-1])
    huge = Axis(0, 10**12, "dim 0")
    assert huge.extent() == (-0.5, 10**12 - 0.5)
    assert huge.cell_range((10.2, 19.7)) == (10, 21)  # cells 10..20 reach into it
