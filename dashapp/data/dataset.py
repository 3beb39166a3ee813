"""What a dataset is, in the terms the slicer needs: shape, kind, axes with physical coordinates.

:func:`describe` reads a dataset's metadata (never its values, except small 1-D coordinate
arrays) and :func:`check_viewable` says in one sentence why a dataset cannot be shown as an image.

Physical axes come from, in order of preference:

1. HDF5 dimension scales attached to the dataset (also how netCDF-4 stores coordinate variables);
2. NeXus ``NXdata`` groups: the group's ``axes`` attribute and ``AXISNAME_indices``, or the
   older per-dataset ``axes="x:y:z"`` attribute;
3. nothing: the axis is the index, labelled ``dim k``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .errors import DashappError, NoDataYet, OutsideRoot, Unsupported
from .files import refresh_once
from .resolve import (
    check_external_storage,
    check_virtual_sources,
    open_dataset,
    resolve_object,
)
from .slicing import index_range
from .tree import dtype_kind, dtype_label, format_attr

__all__ = ["Axis", "DatasetInfo", "check_viewable", "describe", "is_uniform"]

#: Longest coordinate array read from a file (a 1-D array; even 10^7 values is 80 MB).
MAX_COORD_LENGTH = 10_000_000
_NETCDF_PHONY = "This is a netCDF dimension but not a netCDF variable"


@dataclass
class Axis:
    """One dimension of a dataset, with physical coordinates where the file provides them."""

    dim: int
    size: int
    name: str
    units: str = ""
    #: Cell centres along this dimension, increasing or decreasing; None means "use the index".
    coords: np.ndarray | None = None
    #: Where the coordinates came from: "dimension scale", "NXdata", "netCDF" or "index".
    source: str = "index"

    @property
    def label(self) -> str:
        """Axis title for a plot: ``"x (m)"``."""
        return f"{self.name} ({self.units})" if self.units else self.name

    def centers(self) -> np.ndarray:
        """Coordinates of the cell centres (the index when the file has none)."""
        if self.coords is None:
            return np.arange(self.size, dtype=float)
        return np.asarray(self.coords, dtype=float)

    def edges(self) -> np.ndarray:
        """Cell boundaries (``size + 1`` values) consistent with :meth:`centers`.

        For an index axis that is ``size + 1`` floats: a file may declare 10^9 cells, so code
        that serves a view asks :meth:`edge_at` and :meth:`extent` instead.
        """
        c = self.centers()
        if c.size == 1:
            return np.array([c[0] - 0.5, c[0] + 0.5])
        mid = (c[1:] + c[:-1]) / 2
        return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])

    def edge_at(self, index: np.ndarray | int) -> np.ndarray:
        """The cell boundaries numbered ``index`` (0 to ``size``) of :meth:`edges`, without
        building all of them for an index axis (whatever its declared length)."""
        index = np.asarray(index, dtype=np.int64)
        if self.coords is None:
            return index.astype(float) - 0.5
        return self.edges()[index]

    def extent(self) -> tuple[float, float]:
        """The smallest and largest cell boundary (the axis's whole physical range)."""
        if self.coords is None:
            return (-0.5, self.size - 0.5)
        e = self.edges()
        return (float(np.nanmin(e)), float(np.nanmax(e)))

    def cell_range(self, lo_hi: tuple[float, float] | None) -> tuple[int, int]:
        """Cells ``[start, stop)`` in file order overlapping the physical range ``lo_hi``
        (None, or a bound that is not a finite number: the whole axis); at least one cell."""
        lo, hi = lo_hi or (None, None)
        lo = float(lo) if lo is not None and np.isfinite(lo) else None
        hi = float(hi) if hi is not None and np.isfinite(hi) else None
        n = self.size
        if self.coords is None:  # edges at i - 0.5: the same answer as index_range, computed
            if lo is None and hi is None:
                return (0, n)
            if lo is not None and hi is not None and lo > hi:
                lo, hi = hi, lo
            start = 0 if lo is None else int(min(max(np.floor(lo + 0.5) + 1, 0), n + 1)) - 1
            stop = n if hi is None else int(min(max(np.ceil(hi + 0.5), 0), n + 1))
            start = max(0, min(start, n - 1))
            return (start, max(start + 1, min(stop, n)))
        edges = self.edges()
        if edges[-1] >= edges[0]:
            return index_range(edges, lo, hi)
        start, stop = index_range(edges[::-1], lo, hi)
        return (n - stop, n - start)


@dataclass
class DatasetInfo:
    """Metadata of one dataset, enough to plan reads and label a plot."""

    file: str
    path: str
    shape: tuple[int, ...]
    dtype: str
    kind: str  # bool | int | uint | float | complex | string | compound | ...
    itemsize: int
    chunks: tuple[int, ...] | None
    compression: str
    axes: list[Axis]
    name: str = ""
    units: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    fillvalue: float | None = None
    #: Problems that do not stop viewing (missing virtual sources, ignored coordinates).
    notes: list[str] = field(default_factory=list)
    #: The value itself, as text, for scalars and short 1-D datasets (shown instead of an image).
    preview: str = ""
    #: Dims that can grow (HDF5 maxshape None): where a running writer appends.
    growable: tuple[int, ...] = ()

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Size of the whole dataset in memory, which is never read at once."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.itemsize

    @property
    def title(self) -> str:
        """The value's name and units for the colour bar: ``"conductivity (S/m)"``."""
        return f"{self.name} ({self.units})" if self.units else self.name


def is_uniform(coords: np.ndarray, rtol: float = 1e-4) -> bool:
    """True if the spacing of ``coords`` is constant (to ``rtol`` of the mean step)."""
    if coords.size < 3:
        return True
    step = np.diff(coords.astype(float))
    mean = (coords[-1] - coords[0]) / (coords.size - 1)
    if mean == 0:
        return False
    return bool(np.all(np.abs(step - mean) <= abs(mean) * rtol))


def _text(value: object) -> str:
    if value is None:
        return ""
    return format_attr(value)


def _units(attrs: h5py.AttributeManager) -> str:
    for key in ("units", "unit", "Units"):
        if key in attrs:
            return _text(attrs[key])
    return ""


def _name_of(obj: h5py.HLObject) -> str:
    for key in ("long_name", "standard_name"):
        if key in obj.attrs:
            return _text(obj.attrs[key])
    return obj.name.rsplit("/", 1)[-1] if obj.name else ""


def _coords_from(obj: h5py.Dataset, size: int) -> tuple[np.ndarray | None, str]:
    """Read a 1-D numeric coordinate array of ``size`` values (or ``size + 1`` bin edges)."""
    if obj.ndim != 1 or dtype_kind(obj.dtype) not in ("int", "uint", "float"):
        return None, "not a 1-D numeric array"
    n = obj.shape[0]
    if n > MAX_COORD_LENGTH:
        return None, "too long"
    if n == size:
        values = obj[()].astype(float)
    elif n == size + 1:
        edges = obj[()].astype(float)
        values = (edges[1:] + edges[:-1]) / 2
    else:
        return None, f"length {n} does not match the dimension's {size}"
    if not np.all(np.isfinite(values)):
        return None, "contains NaN or infinite values"
    d = np.diff(values)
    if values.size > 1 and not (np.all(d > 0) or np.all(d < 0)):
        return None, "is not strictly monotonic"
    return values, ""


def _dimension_scale_axes(
    ds: h5py.Dataset, axes: list[Axis], notes: list[str], root: str | os.PathLike[str] | None
) -> None:
    for dim, axis in enumerate(axes):
        try:
            dim_obj = ds.dims[dim]
            label = dim_obj.label
            scales = list(dim_obj.values())
        except Exception:
            continue
        if label:
            axis.name = label
        for scale in scales:
            refresh_once(scale)  # a growing scale (iterations) appended by a SWMR writer
            phony = _NETCDF_PHONY in _text(scale.attrs.get("NAME", ""))
            scale_name = scale.name.rsplit("/", 1)[-1]
            if phony:  # netCDF dimension without a coordinate variable: a name, no values
                axis.name = label or scale_name
                axis.source = "netCDF"
                break
            try:  # a scale is in this file, but its values may be read from others
                check_external_storage(scale, root)
                if scale.is_virtual:
                    check_virtual_sources(scale, root)
            except (OutsideRoot, Unsupported) as exc:
                values, why = None, str(exc).rstrip(".")
            else:
                values, why = _coords_from(scale, axis.size)
            if values is None:
                notes.append(f"dimension scale {scale.name} of dim {dim} ignored: {why}")
                continue
            axis.coords = values
            axis.source = "dimension scale"
            axis.name = label or _name_of(scale) or scale_name
            axis.units = _units(scale.attrs)
            break


def _nexus_axes(
    ds: h5py.Dataset, axes: list[Axis], notes: list[str], root: str | os.PathLike[str] | None
) -> None:
    parent = ds.parent
    pattrs = parent.attrs
    name = ds.name.rsplit("/", 1)[-1]
    names: list[str] = []
    nx_class = _text(pattrs.get("NX_class", ""))
    if nx_class == "NXdata" and "axes" in pattrs:
        raw = pattrs["axes"]
        if isinstance(raw, (bytes, str)):
            raw_list = [_text(raw)]
        else:
            raw_list = [_text(v) for v in np.atleast_1d(raw)]
        if len(raw_list) == 1 and ":" in raw_list[0]:
            raw_list = raw_list[0].split(":")
        signal = _text(pattrs.get("signal", ""))
        if signal and signal != name:
            raw_list = []  # the axes describe another dataset of this group
        names = raw_list
    elif "axes" in ds.attrs:  # NeXus v1: axes="x:y:z" on the signal dataset
        names = _text(ds.attrs["axes"]).replace(",", ":").split(":")
    if not names:
        return
    mapping: dict[int, str] = {}
    for pos, axis_name in enumerate(names):
        axis_name = axis_name.strip()
        if not axis_name or axis_name == ".":
            continue
        key = f"{axis_name}_indices"
        if key in pattrs:
            idx = np.atleast_1d(pattrs[key])
            if idx.size == 1:
                mapping[int(idx[0])] = axis_name
            continue
        if len(names) == ds.ndim:
            mapping[pos] = axis_name
    for dim, axis_name in mapping.items():
        if not 0 <= dim < len(axes) or axes[dim].coords is not None:
            continue
        # an attribute names it: walked hop by hop like any path (it may be a link out)
        with contextlib.ExitStack() as stack:
            try:
                obj = resolve_object(parent.file, f"{parent.name}/{axis_name}", root, stack)
            except (OutsideRoot, Unsupported) as exc:
                notes.append(f"NeXus axis {axis_name!r} of dim {dim} ignored: {exc}")
                continue
            except DashappError:
                obj = None
            if not isinstance(obj, h5py.Dataset):
                notes.append(f"NeXus axis {axis_name!r} of dim {dim} not found")
                continue
            values, why = _coords_from(obj, axes[dim].size)
            if values is None:
                notes.append(f"NeXus axis {axis_name!r} of dim {dim} ignored: {why}")
                axes[dim].name = axis_name
                continue
            axes[dim].coords = values
            axes[dim].source = "NXdata"
            axes[dim].name = _name_of(obj) or axis_name
            axes[dim].units = _units(obj.attrs)


def _describe(ds: h5py.Dataset, file: str, root: str | os.PathLike[str] | None) -> DatasetInfo:
    shape = tuple(int(n) for n in ds.shape) if ds.shape is not None else ()
    kind = dtype_kind(ds.dtype)
    axes = [Axis(dim=d, size=n, name=f"dim {d}") for d, n in enumerate(shape)]
    notes: list[str] = []
    info = DatasetInfo(
        file=file,
        path=ds.name or "",
        shape=shape,
        dtype=dtype_label(ds.dtype),
        kind=kind,
        itemsize=ds.dtype.itemsize,
        chunks=ds.chunks,
        compression=ds.compression or "",
        axes=axes,
        notes=notes,
    )
    info.name = _name_of(ds)
    if ds.maxshape is not None:
        info.growable = tuple(d for d, m in enumerate(ds.maxshape) if m is None)
    info.units = _units(ds.attrs)
    info.attrs = {k: _text(v) for k, v in list(ds.attrs.items())[:50] if k != "DIMENSION_LIST"}
    try:
        fv = ds.fillvalue
        info.fillvalue = float(fv) if np.isscalar(fv) and kind in ("int", "uint", "float") else None
    except Exception:
        info.fillvalue = None
    if len(shape) == 0 or (len(shape) == 1 and shape[0] <= 32):
        try:
            info.preview = format_attr(ds[()])
        except Exception as exc:
            info.preview = f"<unreadable: {type(exc).__name__}>"
    if len(shape) >= 1:
        _dimension_scale_axes(ds, axes, notes, root)
        try:
            _nexus_axes(ds, axes, notes, root)
        except Exception as exc:  # malformed NeXus attributes must not stop viewing
            notes.append(f"NeXus axes unreadable: {exc}")
    if ds.is_virtual:
        # sources outside the root were refused when the dataset was opened (resolve.py)
        found = check_virtual_sources(ds, root)
        n, missing = found.files, found.missing
        if missing:
            notes.append(
                f"{missing} of {n} virtual source files are missing; "
                "their parts show the fill value"
                + (f" ({info.fillvalue:g})" if info.fillvalue is not None else "")
            )
    return info


def describe(
    path: str | os.PathLike[str], dataset: str, root: str | os.PathLike[str] | None = None
) -> DatasetInfo:
    """Describe ``dataset`` in the HDF5 file ``path`` (links followed only inside ``root``)."""
    with open_dataset(path, dataset, root) as ds:
        info = _describe(ds, str(Path(path)), root)
    # the path asked for: through an external link, ``ds.name`` is the path in the other file
    info.path = "/" + "/".join(p for p in dataset.split("/") if p)
    return info


def check_viewable(info: DatasetInfo) -> None:
    """Raise :class:`Unsupported` with the reason if ``info`` cannot be shown as an image."""
    where = info.path
    value = f" Its value: {info.preview}" if info.preview else ""
    if info.kind == "string":
        raise Unsupported(
            f"{where} holds text (strings); only numeric datasets can be shown as images.{value}"
        )
    if info.kind == "compound":
        raise Unsupported(
            f"{where} holds compound records ({info.dtype}); only plain numeric datasets can be "
            "shown as images."
        )
    if info.kind in ("opaque", "vlen", "reference", "object", "array"):
        raise Unsupported(f"{where} holds {info.kind} data, which cannot be shown as an image.")
    if info.kind not in ("bool", "int", "uint", "float", "complex"):
        raise Unsupported(f"{where} has an unsupported type ({info.dtype}).")
    if info.ndim == 0:
        raise Unsupported(f"{where} is a single value (a scalar), not an image.{value}")
    if info.ndim == 1:
        raise Unsupported(
            f"{where} is 1-D (length {info.shape[0]:,}); the slicer shows datasets of 2 or more "
            f"dimensions.{value}"
        )
    if 0 in info.shape:
        shape = " × ".join(str(n) for n in info.shape)
        empty = [d for d, n in enumerate(info.shape) if n == 0]
        if all(d in info.growable for d in empty):
            raise NoDataYet(
                f"{where} has no data yet (shape {shape}): it grows as its writer appends; "
                "the view updates when the first slice lands."
            )
        raise Unsupported(f"{where} is empty (shape {shape}): a dimension has length zero.")
