"""Reading what a view shows: one 2-D region of one slice, aggregated to the plot's resolution.

:func:`read_slice` reads only the cells of the visible region (h5py hyperslab selection, so only
the chunks that intersect it are touched), converts them to real numbers, flips decreasing axes
and downsamples with datashader to at most the plot's pixels. A region too large to read at full
resolution is read with a stride (and says so) rather than filling memory.

When the screen shows at most half the region's cells both ways, the region is read at an
overview level: from the dataset's pyramid when one is built, else from its chunks, each
reduced as it is decoded and cached reduced (:meth:`.chunks.DirectReader.read`), so scrubbing
a volume whose full-resolution slices outgrow the chunk cache stays fast before its pyramid
exists. Both give the same cells.

:func:`estimate_range` samples whole chunks spread over a dataset to estimate its value range
without reading it all.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field

import numpy as np

from . import chunks as _chunks
from .chunks import (
    direct_reader,
    max_chunks_per_read,
    piece_bytes,
    reducible_levels,
    too_big_chunk,
)
from .dataset import Axis, DatasetInfo, check_viewable, is_uniform
from .errors import Unsupported
from .files import h5_errors
from .pyramid import Pyramid, as_float32, choose_level, halve, plane_dims
from .resolve import open_dataset
from .slicing import AGGREGATIONS, COMPLEX_PARTS, build_selection, decimation

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
#: Cells read at most along either axis of a picture (a screen is at most a few thousand
#: pixels wide: 2^20 cells is 128 per pixel of an 8K screen).
MAX_AXIS_CELLS = 2**20


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
    #: Overview level read (0 = full resolution), cells read, and where from: "pyramid" (its
    #: stored levels) or "file" (the dataset; at a level > 0, its chunks reduced on reading).
    level: int = 0
    read_shape: tuple[int, int] = (0, 0)
    source: str = "file"


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
    # Fast path first: plain min/max are several times cheaper than the NaN-aware ones and
    # are NaN exactly when a NaN is present.
    lo, hi = float(values.min()), float(values.max())
    finite_vals = values
    if not (np.isfinite(lo) and np.isfinite(hi)):
        nan = np.isnan(values)
        inf = np.isinf(values)
        st.n_nan, st.n_inf = int(nan.sum()), int(inf.sum())
        finite_vals = values[~(nan | inf)]
        if finite_vals.size == 0:
            return st
        lo, hi = float(finite_vals.min()), float(finite_vals.max())
    st.min, st.max = lo, hi
    flat = finite_vals.ravel()
    sample = flat[:: max(1, flat.size // 16384)]
    sample = sample[np.isfinite(sample)]
    if sample.size:
        st.p2, st.p98 = (float(v) for v in np.percentile(sample, [2, 98]))
        positive = sample[sample > 0]
        if hi > 0:
            st.pos_min = float(positive.min()) if positive.size else hi
            if lo > 0:
                st.pos_min = lo
    return st


def _aggregate(
    values: np.ndarray,
    row_centers: np.ndarray,
    col_centers: np.ndarray,
    x: tuple[float, float],
    y: tuple[float, float],
    out: tuple[int, int],
    agg: str,
) -> np.ndarray:
    if is_uniform(row_centers) and is_uniform(col_centers):
        # datashader's regular-grid resampler, called directly: the kernel is the same as
        # Canvas.raster's, without building xarray objects (half the cost at 500 x 500).
        from datashader.resampling import resample_2d

        src = np.ascontiguousarray(values)
        return resample_2d(
            src, out[1], out[0], ds_method=agg, us_method="nearest", fill_value=np.nan
        ).astype(values.dtype, copy=False)
    import datashader as ds
    import xarray as xr

    # Uneven cells (padded meshes): each pixel takes the cells its area covers. A single row or
    # column has no spacing to infer cell edges from: give it two identical ones.
    if values.shape[0] == 1:
        values = np.repeat(values, 2, axis=0)
        row_centers = np.array([y[0] + (y[1] - y[0]) / 4, y[1] - (y[1] - y[0]) / 4])
    if values.shape[1] == 1:
        values = np.repeat(values, 2, axis=1)
        col_centers = np.array([x[0] + (x[1] - x[0]) / 4, x[1] - (x[1] - x[0]) / 4])
    da = xr.DataArray(
        values, coords={"y": row_centers, "x": col_centers}, dims=("y", "x"), name="v"
    )
    canvas = ds.Canvas(plot_width=out[1], plot_height=out[0], x_range=x, y_range=y)
    reduction = {"mean": ds.mean, "max": ds.max, "min": ds.min, "first": ds.first}[agg]("v")
    result = canvas.quadmesh(da, x="x", y="y", agg=reduction)
    return np.asarray(result.values, dtype=values.dtype)


def _crossed(n: int, step: int, chunk: int) -> int:
    """About how many chunks of ``chunk`` cells a stride of ``step`` over ``n`` cells visits."""
    return min(-(-n // step), -(-n // chunk) + 1)


def _level_edge(axis: Axis, level: int, index: np.ndarray) -> np.ndarray:
    """The boundaries numbered ``index`` of the cells of ``axis`` at overview ``level`` (every
    ``2**level``-th full-resolution boundary, and the last; as :func:`.pyramid.level_edges`)."""
    return axis.edge_at(np.minimum(np.asarray(index, dtype=np.int64) * 2**level, axis.size))


def _level_centers(axis: Axis, level: int, cells: tuple[int, int], step: int) -> np.ndarray:
    """Centres of the level cells ``cells[0], cells[0] + step, ...`` below ``cells[1]``: only
    the ones read, so an axis declaring 10^9 cells costs what the picture does."""
    j = np.arange(cells[0], cells[1], step, dtype=np.int64)
    return (_level_edge(axis, level, j) + _level_edge(axis, level, j + 1)) / 2


def read_slice(
    info: DatasetInfo,
    request: SliceRequest,
    root: str | os.PathLike[str] | None = None,
    pyramid: Pyramid | None = None,
    prefetch: int = 0,
) -> SliceImage:
    """Read and downsample the visible region of one slice.

    Parameters
    ----------
    info
        The dataset, from :func:`dashapp.data.describe` (its axes give the physical coordinates).
    request
        Slice, region and resolution wanted. ``plot_size`` is the number of screen pixels the
        visible data covers: the image sent has at most that many.
    root
        Links are followed only inside this folder.
    pyramid
        Overview levels of the dataset: the coarsest level with at least one cell per screen
        pixel is read instead of full resolution (``mean`` downsampling only).
    prefetch
        Direction the user is moving along the normal axis (-1, 0, +1): the next layer of
        chunks in that direction is decoded in the background.
    """
    check_viewable(info)
    if request.agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {AGGREGATIONS}, not {request.agg!r}")
    row_dim, col_dim = request.display
    if row_dim == col_dim or not (0 <= row_dim < info.ndim and 0 <= col_dim < info.ndim):
        raise ValueError(f"display dims {request.display} do not fit a {info.ndim}-D dataset")
    row_axis, col_axis = info.axes[row_dim], info.axes[col_dim]
    fr = row_axis.cell_range(request.y_range)
    fc = col_axis.cell_range(request.x_range)
    n_rows, n_cols = fr[1] - fr[0], fc[1] - fc[0]
    plot_h, plot_w = (max(1, int(v)) for v in request.plot_size)
    out = (min(n_rows, plot_h), min(n_cols, plot_w))
    normal = next(d for d in range(info.ndim) if d not in request.display) if info.ndim == 3 else 0
    level, use_pyramid = 0, False
    if (
        pyramid is not None
        and request.agg == "mean"  # the levels hold means: other reductions need the cells
        and info.ndim in (2, 3)
        and tuple(pyramid.shapes[0]) == tuple(info.shape)
    ):
        level = choose_level(n_rows, n_cols, out, pyramid.levels)
        if not pyramid.has(level, normal):
            level = 0
        use_pyramid = pyramid.has(level, normal)
    # No stored level to read: reduce the chunks themselves, as they are decoded.
    dims = plane_dims(info.ndim, normal) if info.ndim in (2, 3) else ()
    if (
        not use_pyramid
        and request.agg == "mean"
        and dims
        and info.kind in ("bool", "int", "uint", "float")
        and info.chunks is not None
        # (chunks too big to decode whole are read in parts, at full resolution)
        and math.prod(info.chunks) * info.itemsize <= piece_bytes()
    ):
        most = reducible_levels(info.chunks, dims, smallest=4)
        level = choose_level(n_rows, n_cols, out, most + 1)
    k = 2**level
    lr = (fr[0] // k, -(-fr[1] // k))
    lc = (fc[0] // k, -(-fc[1] // k))
    nr, nc = lr[1] - lr[0], lc[1] - lc[0]
    notes: list[str] = []
    if request.agg == "first":  # one sample per pixel: read only those
        step_r, step_c = max(1, nr // plot_h), max(1, nc // plot_w)
    else:
        step_r = step_c = 1
    # no more than MAX_AXIS_CELLS along either axis (a 1 x 10^9 region's 16 million cells in
    # one row would be 20,000 cells per pixel, and their coordinates alone 128 MB)
    step_r = max(step_r, -(-nr // MAX_AXIS_CELLS))
    step_c = max(step_c, -(-nc // MAX_AXIS_CELLS))
    # (and within READ_MEMORY: the cells read, their real values and the statistics' masks)
    budget = min(READ_BUDGET, _chunks.READ_MEMORY // (2 * info.itemsize + 16))
    s = 1 if use_pyramid else decimation(-(-nr // step_r), -(-nc // step_c), budget)
    if not use_pyramid and info.chunks is not None:
        # and across at most max_chunks_per_read() chunks (1x1x1 chunks: one per cell)
        cr, cc = (max(1, info.chunks[d] >> level) for d in (row_dim, col_dim))
        limit = max_chunks_per_read()
        while _crossed(nr, step_r * s, cr) * _crossed(nc, step_c * s, cc) > limit:
            s *= 2
    step_r, step_c = step_r * s, step_c * s
    if request.agg != "first":
        s = max(step_r, step_c)
    if s > 1:
        notes.append(f"region of {nr:,} × {nc:,} cells read every {s}th cell (preview resolution)")
    if use_pyramid:
        index = request.indices[normal] if info.ndim == 3 else 0  # levels keep every slice
        if row_dim < col_dim:
            raw = pyramid.read(level, normal, index, lr, lc)
        else:
            raw = pyramid.read(level, normal, index, lc, lr).T
        raw = raw[::step_r, ::step_c]
    else:
        sel = build_selection(
            info.shape, request.display, request.indices, lr, lc, (step_r, step_c)
        )
        at = (level, dims) if level else (0, ())
        raw = _read_source(info, sel, root, normal if info.ndim >= 3 else None, prefetch, *at)
        if row_dim > col_dim:
            raw = raw.T
    values = to_real(np.asarray(raw), request.part)
    row_centers = _level_centers(row_axis, level, lr, step_r)
    col_centers = _level_centers(col_axis, level, lc, step_c)
    if row_centers.size > 1 and row_centers[-1] < row_centers[0]:
        values, row_centers = values[::-1], row_centers[::-1]
    if col_centers.size > 1 and col_centers[-1] < col_centers[0]:
        values, col_centers = values[:, ::-1], col_centers[::-1]
    x = tuple(sorted(float(v) for v in _level_edge(col_axis, level, np.array(lc))))
    y = tuple(sorted(float(v) for v in _level_edge(row_axis, level, np.array(lr))))
    # Within 25% of the screen's pixels (a pyramid level is at most 2x them), let the browser
    # scale the image: resampling 512 -> 466 cells costs more than sending the extra 20%.
    out_h = values.shape[0] if values.shape[0] <= 1.25 * plot_h else plot_h
    out_w = values.shape[1] if values.shape[1] <= 1.25 * plot_w else plot_w
    uniform = is_uniform(row_centers) and is_uniform(col_centers)
    read_shape = values.shape
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
        level=level,
        read_shape=tuple(read_shape),
        source="pyramid" if use_pyramid else "file",
    )


def _read_source(
    info: DatasetInfo,
    sel: tuple,
    root: str | os.PathLike[str] | None,
    normal: int | None,
    prefetch: int,
    level: int = 0,
    dims: tuple[int, ...] = (),
) -> np.ndarray:
    """``dataset[sel]``, outside h5py's lock where the layout allows (see :mod:`.chunks`).

    At ``level`` > 0, ``sel`` indexes the dataset's overview level along ``dims`` (slices
    there, an integer index elsewhere): float32 means of ``2**level`` cells a side.
    """
    with open_dataset(info.file, info.path, root) as ds:
        # the file holding the dataset: another one when the path runs through an external link
        reader = direct_reader(ds.file.filename, ds) if not ds.is_virtual else None
        if reader is None:
            why = too_big_chunk(ds)  # h5py decodes a compressed chunk whole too
            if why:
                raise Unsupported(why)
            if level == 0:
                return ds[sel]
            k = 2**level
            under = math.prod((s.stop - s.start) * k for d, s in enumerate(sel) if d in dims)
            if under > REDUCE_MAX_CELLS:
                # every cell under the region would be read (10^12 of them in a file
                # declaring 10^6 x 10^6): take the first cell of each level cell instead
                full = tuple(
                    slice(s.start * k, min(s.stop * k, ds.shape[d]), (s.step or 1) * k)
                    if d in dims
                    else s
                    for d, s in enumerate(sel)
                )
                return as_float32(np.asarray(ds[full]))
            return _reduce_region(ds, sel, level, dims)
    if reader.too_big:
        raise Unsupported(reader.too_big)
    with h5_errors(info.file, info.path):
        values = reader.read(sel, level=level, dims=dims)
        if prefetch and normal is not None and reader.chunks is not None:
            c = reader.chunks[normal]
            index = int(sel[normal])
            layer = (index // c + (1 if prefetch > 0 else -1)) * c
            # in the half of the layer nearest the next one: a hand turning back and forth
            # inside a layer does not decode both of its neighbours, in turn, for nothing
            ahead = (c - 1 - index % c) if prefetch > 0 else index % c
            if 0 <= layer < reader.shape[normal] and ahead < max(1, c // 2):
                nxt = list(sel)
                nxt[normal] = layer
                reader.prefetch(nxt, level=level, dims=dims)
    return values


#: Full-resolution cells read at once when a level is reduced through h5py (in bands).
REDUCE_BAND_CELLS = READ_BUDGET
#: Full-resolution cells read at most to reduce a region to a level through h5py; beyond,
#: the region is sampled (the first cell of each level cell).
REDUCE_MAX_CELLS = 4 * READ_BUDGET


def _reduce_region(ds: object, sel: tuple, level: int, dims: tuple[int, ...]) -> np.ndarray:
    """A level region through h5py (layouts :mod:`.chunks` cannot read): the full-resolution
    cells under it, a band at a time (at most :data:`REDUCE_BAND_CELLS`), each reduced by 2x2
    means ``level`` times, then the region's stride."""
    k = 2**level
    full: list[int | slice] = []
    steps: list[int] = []
    for d, s in enumerate(sel):
        if d not in dims:
            full.append(s)
        else:
            full.append(slice(s.start * k, min(s.stop * k, ds.shape[d])))
            steps.append(s.step or 1)
    first = dims[0]  # the first in-plane dim: axis 0 of the result (the normal's index drops)
    rest = int(np.prod([full[d].stop - full[d].start for d in dims[1:]]))
    band = max(k, REDUCE_BAND_CELLS // max(1, rest) // k * k)
    parts = []
    for start in range(full[first].start, full[first].stop, band):
        part = list(full)
        part[first] = slice(start, min(start + band, full[first].stop))
        # (the integer index along the normal is gone: all dims left are in-plane)
        parts.append(halve(as_float32(np.asarray(ds[tuple(part)])), times=level))
    arr = np.concatenate(parts, axis=0)
    return arr[tuple(slice(None, None, st) for st in steps)]


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
    with open_dataset(info.file, info.path, root) as ds:
        why = too_big_chunk(ds)
        if why:
            raise Unsupported(why)
        chunks = ds.chunks
        n_chunks = (
            math.prod(-(-n // c) for n, c in zip(info.shape, chunks, strict=True)) if chunks else 1
        )
        if total <= budget and n_chunks <= max_chunks_per_read():
            samples.append(to_real(np.asarray(ds[()]), part).ravel())
        else:
            block = _sample_block(info.shape, chunks, info.itemsize, budget)
            per_block = int(np.prod(block))
            grid = [-(-n // b) for n, b in zip(info.shape, block, strict=True)]
            n_blocks = int(np.prod(grid, dtype=np.int64))
            want = max(1, min(n_blocks, budget // max(per_block, 1), 256))
            if chunks:  # and across at most max_chunks_per_read() chunks in all
                crossed = math.prod(-(-b // c) for b, c in zip(block, chunks, strict=True))
                want = max(1, min(want, max_chunks_per_read() // crossed))
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


def _sample_block(
    shape: tuple[int, ...], chunks: tuple[int, ...] | None, itemsize: int, cells: int
) -> tuple[int, ...]:
    """The box :func:`estimate_range` reads at each place it samples: a whole chunk (one
    decode), cut to at most :func:`.chunks.piece_bytes` (a chunk of 4 GB is read in part),
    grown over neighbouring chunks when tiny (a 1x1x1 chunk is one value), crossing at most
    4,096 of them; a run along the last dim for contiguous data. At most ``cells`` cells."""
    block = list(chunks or (1,) * (len(shape) - 1) + (min(shape[-1], 4096),))
    block = [min(b, n) for b, n in zip(block, shape, strict=True)]
    d = 0
    while math.prod(block) * itemsize > piece_bytes() or math.prod(block) > cells:
        if d < len(block) - 1 and block[d] > 1:
            block[d] = 1  # whole leading dims first: what remains is contiguous in a chunk
        elif d < len(block) - 1:
            d += 1
        else:
            block[-1] = max(1, block[-1] // 2)
    if chunks is not None:
        d = len(block) - 1
        while math.prod(block) < 4096 and d >= 0:
            if block[d] * 2 <= shape[d]:
                block[d] *= 2
            else:
                block[d] = shape[d]
                d -= 1
    return tuple(block)


_WARMING = threading.Event()
_WARMED = threading.Event()


def warm_up(aggs: tuple[str, ...] = ("mean",)) -> None:
    """Compile datashader's numba kernels ahead of first use.

    Each reduction costs 1-5 s of compilation once per process (~10 s for ``mean``, the
    default; ~28 s for all of :data:`AGGREGATIONS`), so a server warms the default one at start.
    """
    _WARMING.set()
    try:
        values = np.zeros((8, 8), dtype=np.float32)
        centers = np.arange(8, dtype=float)
        uneven = np.cumsum(np.arange(1, 9, dtype=float))
        for agg in aggs:
            for dtype in (np.float32, np.float64):
                _aggregate(values.astype(dtype), centers, centers, (0, 8), (0, 8), (4, 4), agg)
                _aggregate(values.astype(dtype), centers, uneven, (0, 8), (0, 36), (4, 4), agg)
    finally:
        _WARMED.set()


def wait_for_warm_up(timeout: float = 300) -> None:
    """If a :func:`warm_up` is compiling, wait for it (up to ``timeout`` s): a read started
    meanwhile would wait for numba's compile lock inside its filesystem deadline."""
    if _WARMING.is_set():
        _WARMED.wait(timeout)
