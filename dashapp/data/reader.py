"""Reading what a view shows: one 2-D region of one slice, aggregated to the plot's resolution.

:func:`read_slice` reads only the cells of the visible region (h5py hyperslab selection, so only
the chunks that intersect it are touched), converts them to real numbers, flips decreasing axes
and downsamples with datashader to at most the plot's pixels. A region too large to read at full
resolution is read with a stride (and says so) rather than filling memory.

:func:`estimate_range` samples whole chunks spread over a dataset to estimate its value range
without reading it all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .dataset import Axis, DatasetInfo, check_viewable, is_uniform
from .errors import Unsupported
from .files import h5_errors, open_file
from .slicing import AGGREGATIONS, COMPLEX_PARTS, build_selection, decimation, index_range
from .tree import require_dataset

__all__ = [
    "SliceImage",
    "SliceRequest",
    "SliceStats",
    "ValueRange",
    "estimate_range",
    "read_slice",
    "to_real",
    "warm_up",
]

#: Cells read at full resolution at most per request (64 MB of float32). Larger regions are
#: read with a stride; overview pyramids (a later layer) avoid that.
READ_BUDGET = 16_000_000


@dataclass(frozen=True)
class SliceRequest:
    """What a view wants to see: which slice, which region of it, at what resolution."""

    dataset: str
    #: ``(row_dim, col_dim)``: rows go up the screen, columns to the right.
    display: tuple[int, int]
    #: An index for every dim of the dataset (the displayed dims' entries are ignored).
    indices: tuple[int, ...]
    #: Visible physical range along the columns (x) and rows (y); None shows everything.
    x_range: tuple[float, float] | None = None
    y_range: tuple[float, float] | None = None
    #: Plot size in screen pixels, ``(height, width)``.
    plot_size: tuple[int, int] = (600, 800)
    agg: str = "mean"
    part: str = "magnitude"


@dataclass
class SliceStats:
    """Value statistics of the image sent to the browser (finite values only)."""

    min: float = float("nan")
    max: float = float("nan")
    p2: float = float("nan")
    p98: float = float("nan")
    #: Smallest positive value, for log colour scales.
    pos_min: float = float("nan")
    n_nan: int = 0
    n_inf: int = 0
    size: int = 0

    @property
    def all_nan(self) -> bool:
        """True when no finite value is shown."""
        return self.size > 0 and self.n_nan + self.n_inf == self.size

    @property
    def constant(self) -> bool:
        """True when every finite value is the same."""
        return bool(np.isfinite(self.min) and self.min == self.max)


@dataclass
class SliceImage:
    """A 2-D image ready to draw: row 0 is the bottom (smallest y), column 0 the left."""

    values: np.ndarray
    #: Physical extent of the image: left/right and bottom/top edges.
    x: tuple[float, float]
    y: tuple[float, float]
    #: Index ranges read along the row and column dims, and the stride used.
    rows: tuple[int, int]
    cols: tuple[int, int]
    step: int
    downsampled: bool
    stats: SliceStats
    notes: list[str] = field(default_factory=list)


def to_real(values: np.ndarray, part: str = "magnitude") -> np.ndarray:
    """Convert bool/int/float/complex values to a float array (complex by ``part``)."""
    if part not in COMPLEX_PARTS:
        raise ValueError(f"part must be one of {COMPLEX_PARTS}, not {part!r}")
    kind = values.dtype.kind
    if kind == "c":
        out = {
            "magnitude": np.abs,
            "phase": np.angle,
            "real": np.real,
            "imag": np.imag,
        }[part](values)
        return out.astype(np.float32 if values.dtype.itemsize <= 8 else np.float64, copy=False)
    if kind == "b":
        return values.astype(np.float32)
    if kind == "f":
        return values.astype(np.float32 if values.dtype.itemsize <= 4 else np.float64, copy=False)
    if kind in "iu":
        # float32 holds integers exactly up to 2**24; wider integers keep float64.
        return values.astype(np.float32 if values.dtype.itemsize <= 2 else np.float64)
    raise Unsupported(f"values of type {values.dtype} cannot be shown as an image")


def _stats(values: np.ndarray) -> SliceStats:
    st = SliceStats(size=int(values.size))
    if values.size == 0:
        return st
    nan = np.isnan(values)
    st.n_nan = int(nan.sum())
    if st.n_nan == values.size:
        return st
    with np.errstate(invalid="ignore"):
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    finite_vals = values
    if not (np.isfinite(lo) and np.isfinite(hi)):
        inf = np.isinf(values)
        st.n_inf = int(inf.sum())
        finite_vals = values[~(nan | inf)]
        if finite_vals.size == 0:
            return st
        lo, hi = float(finite_vals.min()), float(finite_vals.max())
    st.min, st.max = lo, hi
    flat = finite_vals.ravel()
    sample = flat[:: max(1, flat.size // 65536)]
    sample = sample[np.isfinite(sample)]
    if sample.size:
        st.p2, st.p98 = (float(v) for v in np.percentile(sample, [2, 98]))
        positive = sample[sample > 0]
        if hi > 0:
            st.pos_min = float(positive.min()) if positive.size else hi
            if lo > 0:
                st.pos_min = lo
    return st


def _axis_frame(axis: Axis) -> tuple[np.ndarray, bool]:
    """Increasing cell edges of an axis, and whether the file's order is decreasing."""
    centers = axis.centers()
    flipped = centers.size > 1 and centers[-1] < centers[0]
    if flipped:
        axis = Axis(dim=axis.dim, size=axis.size, name=axis.name, coords=centers[::-1])
    return axis.edges(), flipped


def _file_range(start: int, stop: int, n: int, flipped: bool) -> tuple[int, int]:
    return (n - stop, n - start) if flipped else (start, stop)


def _aggregate(
    values: np.ndarray,
    row_centers: np.ndarray,
    col_centers: np.ndarray,
    x: tuple[float, float],
    y: tuple[float, float],
    out: tuple[int, int],
    agg: str,
) -> np.ndarray:
    import datashader as ds
    import xarray as xr

    da = xr.DataArray(
        values, coords={"y": row_centers, "x": col_centers}, dims=("y", "x"), name="v"
    )
    canvas = ds.Canvas(plot_width=out[1], plot_height=out[0], x_range=x, y_range=y)
    if is_uniform(row_centers) and is_uniform(col_centers):
        result = canvas.raster(da, agg=agg, interpolate="nearest")
    else:
        reduction = {"mean": ds.mean, "max": ds.max, "min": ds.min, "first": ds.first}[agg]("v")
        result = canvas.quadmesh(da, x="x", y="y", agg=reduction)
    return np.asarray(result.values, dtype=values.dtype)


def read_slice(
    info: DatasetInfo, request: SliceRequest, root: str | os.PathLike[str] | None = None
) -> SliceImage:
    """Read and downsample the visible region of one slice.

    Parameters
    ----------
    info
        The dataset, from :func:`dashapp.data.describe` (its axes give the physical coordinates).
    request
        Slice, region and resolution wanted.
    root
        Links are followed only inside this folder.
    """
    check_viewable(info)
    if request.agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {AGGREGATIONS}, not {request.agg!r}")
    row_dim, col_dim = request.display
    if row_dim == col_dim or not (0 <= row_dim < info.ndim and 0 <= col_dim < info.ndim):
        raise ValueError(f"display dims {request.display} do not fit a {info.ndim}-D dataset")
    row_axis, col_axis = info.axes[row_dim], info.axes[col_dim]
    row_edges, row_flip = _axis_frame(row_axis)
    col_edges, col_flip = _axis_frame(col_axis)
    y_lo, y_hi = request.y_range or (None, None)
    x_lo, x_hi = request.x_range or (None, None)
    r0, r1 = index_range(row_edges, y_lo, y_hi)
    c0, c1 = index_range(col_edges, x_lo, x_hi)
    n_rows, n_cols = r1 - r0, c1 - c0
    plot_h, plot_w = (max(1, int(v)) for v in request.plot_size)
    notes: list[str] = []
    if request.agg == "first":  # one sample per pixel: read only those
        step_r, step_c = max(1, n_rows // plot_h), max(1, n_cols // plot_w)
    else:
        step_r = step_c = 1
    s = decimation(-(-n_rows // step_r), -(-n_cols // step_c), READ_BUDGET)
    step_r, step_c = step_r * s, step_c * s
    if s > 1:
        notes.append(
            f"region of {n_rows:,} × {n_cols:,} cells read every {s}th cell (preview resolution)"
        )
    fr = _file_range(r0, r1, row_axis.size, row_flip)
    fc = _file_range(c0, c1, col_axis.size, col_flip)
    # Flipped axes: read forwards from the file, then reverse, so the stride grid lines up with
    # the increasing order's cells r0, r0 + step, ...
    if row_flip:
        fr = (fr[0] + (n_rows - 1) % step_r, fr[1])
    if col_flip:
        fc = (fc[0] + (n_cols - 1) % step_c, fc[1])
    sel = build_selection(info.shape, request.display, request.indices, fr, fc, (step_r, step_c))
    with open_file(info.file) as f, h5_errors(info.file, info.path):
        ds = require_dataset(f, info.path, root)
        raw = ds[sel]
    if row_dim > col_dim:
        raw = raw.T
    values = to_real(np.asarray(raw), request.part)
    if row_flip:
        values = values[::-1]
    if col_flip:
        values = values[:, ::-1]
    row_centers = _centers_inc(row_axis, row_flip)[r0:r1:step_r]
    col_centers = _centers_inc(col_axis, col_flip)[c0:c1:step_c]
    x = (float(col_edges[c0]), float(col_edges[c1]))
    y = (float(row_edges[r0]), float(row_edges[r1]))
    out_h = min(values.shape[0], plot_h)
    out_w = min(values.shape[1], plot_w)
    uniform = is_uniform(row_centers) and is_uniform(col_centers)
    downsampled = False
    if not uniform:
        # Bokeh draws images on a regular grid: resample uneven cells onto screen pixels.
        out_h = plot_h if not is_uniform(row_centers) else out_h
        out_w = plot_w if not is_uniform(col_centers) else out_w
    if not uniform or (out_h, out_w) != values.shape:
        values = _aggregate(values, row_centers, col_centers, x, y, (out_h, out_w), request.agg)
        downsampled = True
    values = np.ascontiguousarray(values)
    stats = _stats(values)
    if stats.all_nan:
        notes.append("this slice has no finite values (all NaN or infinite)")
    elif stats.constant:
        notes.append(f"every value in this slice is {stats.min:g}")
    if stats.n_inf:
        notes.append(f"{stats.n_inf:,} infinite values (drawn at the ends of the colour scale)")
    return SliceImage(
        values=values,
        x=x,
        y=y,
        rows=fr,
        cols=fc,
        step=s,
        downsampled=downsampled,
        stats=stats,
        notes=notes,
    )


def _centers_inc(axis: Axis, flipped: bool) -> np.ndarray:
    c = axis.centers()
    return c[::-1] if flipped else c


@dataclass
class ValueRange:
    """A value range estimated from a sample of the whole dataset."""

    min: float
    max: float
    p2: float
    p98: float
    pos_min: float
    sampled: int
    total: int

    @property
    def exact(self) -> bool:
        """True when every value was read."""
        return self.sampled >= self.total


def estimate_range(
    info: DatasetInfo,
    part: str = "magnitude",
    budget: int = 4_000_000,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> ValueRange:
    """Estimate a dataset's value range from whole chunks spread across it.

    Reads at most about ``budget`` values: for chunked data, a random set of whole chunks (one
    decompression each); for contiguous data, short contiguous runs along the last dim. Small
    datasets are read whole.
    """
    check_viewable(info)
    total = int(np.prod(info.shape, dtype=np.int64))
    rng = np.random.default_rng(seed)
    samples: list[np.ndarray] = []
    with open_file(info.file) as f, h5_errors(info.file, info.path):
        ds = require_dataset(f, info.path, root)
        if total <= budget:
            samples.append(to_real(np.asarray(ds[()]), part).ravel())
        else:
            block = ds.chunks or (1,) * (info.ndim - 1) + (min(info.shape[-1], 4096),)
            per_block = int(np.prod(block))
            grid = [-(-n // b) for n, b in zip(info.shape, block, strict=True)]
            n_blocks = int(np.prod(grid, dtype=np.int64))
            want = max(1, min(n_blocks, budget // max(per_block, 1), 256))
            picks = (
                rng.choice(n_blocks, size=want, replace=False)
                if n_blocks > want
                else range(n_blocks)
            )
            for flat in picks:
                pos = np.unravel_index(int(flat), grid)
                sel = tuple(
                    slice(p * b, min((p + 1) * b, n))
                    for p, b, n in zip(pos, block, info.shape, strict=True)
                )
                samples.append(to_real(np.asarray(ds[sel]), part).ravel())
    values = np.concatenate(samples) if samples else np.array([], dtype=np.float32)
    st = _stats(values)
    return ValueRange(st.min, st.max, st.p2, st.p98, st.pos_min, int(values.size), total)


def warm_up(aggs: tuple[str, ...] = ("mean",)) -> None:
    """Compile datashader's numba kernels ahead of first use.

    Each reduction costs 1-5 s of compilation once per process (~10 s for ``mean``, the
    default; ~28 s for all of :data:`AGGREGATIONS`), so a server warms the default one at start.
    """
    values = np.zeros((8, 8), dtype=np.float32)
    centers = np.arange(8, dtype=float)
    uneven = np.cumsum(np.arange(1, 9, dtype=float))
    for agg in aggs:
        for dtype in (np.float32, np.float64):
            _aggregate(values.astype(dtype), centers, centers, (0, 8), (0, 8), (4, 4), agg)
            _aggregate(values.astype(dtype), centers, uneven, (0, 8), (0, 36), (4, 4), agg)
