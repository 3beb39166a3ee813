"""Pure helpers for slicing n-D arrays: display dims, selections, index ranges, output sizes.

No I/O here: every function maps small inputs to small outputs, so each has a table test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "AGGREGATIONS",
    "COMPLEX_PARTS",
    "build_selection",
    "clamp",
    "decimation",
    "default_axis",
    "default_display_dims",
    "index_range",
    "output_size",
    "slider_dims",
]

#: How screen pixels summarise the data cells they cover when a slice is downsampled.
AGGREGATIONS = ("mean", "max", "min", "first")
#: Which real number a complex value is shown as.
COMPLEX_PARTS = ("magnitude", "phase", "real", "imag")


def clamp(value: int, size: int) -> int:
    """Clamp an index into ``[0, size - 1]``."""
    return max(0, min(int(value), max(size - 1, 0)))


def default_axis(ndim: int) -> int:
    """The normal axis shown first: the first of the last three dims (z of ``z, y, x``)."""
    return max(ndim - 3, 0)


def default_display_dims(ndim: int, axis: int) -> tuple[int, int]:
    """The ``(row_dim, col_dim)`` shown for normal axis ``axis``: the last two other dims.

    For a 2-D dataset the axis is irrelevant and both dims are shown.
    """
    if ndim < 2:
        raise ValueError("need at least two dimensions")
    if ndim == 2:
        return (0, 1)
    others = [d for d in range(ndim) if d != axis]
    return (others[-2], others[-1])


def slider_dims(ndim: int, display: tuple[int, int]) -> list[int]:
    """The dims that get a slider (every dim not displayed), in order."""
    return [d for d in range(ndim) if d not in display]


def build_selection(
    shape: Sequence[int],
    display: tuple[int, int],
    indices: Sequence[int],
    rows: tuple[int, int],
    cols: tuple[int, int],
    step: tuple[int, int] = (1, 1),
) -> tuple[int | slice, ...]:
    """The h5py selection of a 2-D region of the slice.

    Parameters
    ----------
    shape
        Dataset shape.
    display
        ``(row_dim, col_dim)``; either order (a transposed view) is allowed.
    indices
        An index for every dim; the entries of the displayed dims are ignored.
    rows, cols
        Half-open index ranges along the row and column dims.
    step
        Stride along the row and column dims (decimation).
    """
    row_dim, col_dim = display
    sel: list[int | slice] = []
    for dim, size in enumerate(shape):
        if dim == row_dim:
            sel.append(slice(rows[0], rows[1], step[0]))
        elif dim == col_dim:
            sel.append(slice(cols[0], cols[1], step[1]))
        else:
            sel.append(clamp(indices[dim], size))
    return tuple(sel)


def index_range(edges: np.ndarray, lo: float | None, hi: float | None) -> tuple[int, int]:
    """Cells ``[start, stop)`` whose extent overlaps ``[lo, hi]`` given increasing cell edges.

    ``None`` bounds mean "from the first" / "to the last" cell. Always returns at least one cell.
    """
    n = len(edges) - 1
    if lo is None and hi is None:
        return (0, n)
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    start = 0 if lo is None else int(np.searchsorted(edges, lo, side="right")) - 1
    stop = n if hi is None else int(np.searchsorted(edges, hi, side="left"))
    start = max(0, min(start, n - 1))
    stop = max(start + 1, min(stop, n))
    return (start, stop)


def decimation(n_rows: int, n_cols: int, budget: int) -> int:
    """Smallest stride ``s`` keeping every ``s``-th row and column within ``budget`` cells."""
    cells = n_rows * n_cols
    if cells <= budget:
        return 1

    def kept(s: int) -> int:
        return -(-n_rows // s) * -(-n_cols // s)

    # sqrt(cells / budget) is enough for a squarish region; a thin one (1 x 10^9) keeps its
    # one row whatever the stride, so search upwards for the smallest stride that fits
    lo = max(1, math.ceil(math.sqrt(cells / budget)))
    if kept(lo) <= budget:
        return lo
    hi = max(n_rows, n_cols)  # keeps one cell
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if kept(mid) <= budget:
            hi = mid
        else:
            lo = mid
    return hi


def output_size(n_rows: int, n_cols: int, plot_height: int, plot_width: int) -> tuple[int, int]:
    """Pixels of the image sent to the browser: the data's size, capped at the plot's."""
    return (max(1, min(n_rows, plot_height)), max(1, min(n_cols, plot_width)))
