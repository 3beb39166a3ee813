"""The state of a slice view: which dataset, which plane, which slice, how it is coloured.

:class:`SliceState` holds everything a deep link carries. Rules between settings (clamp the index
when the axis changes, pick display dims for a new axis, reset the zoom on a new plane) live here
as param watchers, so they hold whether a widget, a URL or a notebook cell changes the setting.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import param

from ..data import (
    AGGREGATIONS,
    COMPLEX_PARTS,
    DashappError,
    DatasetInfo,
    NoDataYet,
    SliceRequest,
    SliceStats,
    ValueRange,
    check_viewable,
    default_axis,
    default_display_dims,
    describe,
    resolve,
    series_members,
)
from ..data.fsguard import bounded

__all__ = ["CLIM_MODES", "CMAPS", "VIEW_PARAMS", "SliceState", "resolve_limits", "suggest_scale"]

#: Colour maps offered: perceptually uniform maps from colorcet (and matplotlib's viridis family),
#: sequential first, then diverging and isoluminant ones.
CMAPS = (
    "fire", "bgy", "bmy", "kbc", "bgyw", "gouldian", "rainbow4", "gray", "blues", "kgy", "kr",
    "viridis", "cividis", "inferno", "magma", "plasma",
    "coolwarm", "cwr", "bkr", "bwy", "gwv", "isolum",
)  # fmt: skip
#: How colour limits are chosen.
CLIM_MODES = ("auto", "robust", "global", "manual")
#: The view settings (as opposed to which dataset is open), each with the key of a deep link
#: that carries it (``d<k>``: one key per other dim). The one list: a notebook's
#: ``slicer.<name>``, :meth:`SliceState.apply_view` and the link keys
#: (``state.query.QUERY_KEYS``) come from it. A new setting is a new entry here, plus its
#: reading and writing in ``state/query.py`` (tests/state/test_query.py checks every entry).
VIEW_PARAMS: dict[str, str] = {
    "axis": "axis", "index": "index", "display": "dims", "indices": "d<k>", "cmap": "cmap",
    "reverse": "cmap", "clim": "clim", "vmin": "vmin", "vmax": "vmax", "scale": "scale",
    "agg": "agg", "part": "part", "x_range": "zoom", "y_range": "zoom", "follow": "follow",
    "aspect": "aspect",
}  # fmt: skip


def suggest_scale(stats: SliceStats) -> str:
    """``log`` for positive values spanning two decades or more, else ``linear``."""
    if np.isfinite(stats.min) and stats.min > 0 and stats.max / stats.min >= 100:
        return "log"
    return "linear"


def resolve_limits(
    clim: str,
    scale: str,
    stats: SliceStats,
    global_range: ValueRange | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> tuple[float, float]:
    """Colour limits for a slice.

    ``auto`` spans the slice's finite values, ``robust`` its 2nd to 98th percentiles, ``global``
    the whole dataset's (estimated) range, ``manual`` the user's ``vmin``/``vmax``. A log scale
    keeps the lower limit positive. Degenerate limits (a constant or empty slice) are widened so
    a colour mapper can use them.
    """
    if clim == "manual" and vmin is not None and vmax is not None:
        lo, hi = float(vmin), float(vmax)
    elif clim == "global" and global_range is not None and np.isfinite(global_range.min):
        lo, hi = global_range.min, global_range.max
        if scale == "log":
            lo = global_range.pos_min
    elif clim == "robust" and np.isfinite(stats.p2):
        lo, hi = stats.p2, stats.p98
        if scale == "log":
            lo = max(lo, stats.pos_min) if np.isfinite(stats.pos_min) else lo
    else:
        lo, hi = stats.min, stats.max
        if scale == "log" and np.isfinite(stats.pos_min):
            lo = stats.pos_min
    if not (np.isfinite(lo) and np.isfinite(hi)):
        lo, hi = (1.0, 10.0) if scale == "log" else (0.0, 1.0)
    if lo > hi:
        lo, hi = hi, lo
    if scale == "log":
        if hi <= 0:
            lo, hi = 1.0, 10.0
        elif lo <= 0:
            lo = hi * 1e-3
    if lo == hi:
        pad = abs(lo) * 0.01 or 0.5
        lo, hi = (lo / 1.1, hi * 1.1) if scale == "log" else (lo - pad, hi + pad)
    return float(lo), float(hi)


def _counts(coords: Any) -> bool:
    """True when coordinates are whole numbers going up by one (1, 2, 3, ...): a count."""
    c = np.asarray(coords)
    if c.size < 2 or c.dtype.kind not in "iuf":
        return False
    c = c.astype(float)
    return bool(np.all(c == np.round(c)) and np.all(np.diff(c) == 1))


class SliceState(param.Parameterized):
    """What one slice view shows. Changing ``file`` or ``dataset`` loads the dataset's metadata
    and resets the view to sensible defaults; the other parameters are the view itself."""

    root = param.String(default=".", doc="Folder the viewer may read; files are relative to it.")
    file = param.String(default="", doc="The open file, relative to the root ('/'-separated).")
    dataset = param.String(default="", doc="HDF5 path of the dataset shown, e.g. '/model'.")
    info = param.ClassSelector(
        class_=DatasetInfo, allow_None=True, doc="Metadata of the dataset shown (set on loading)."
    )
    error = param.String(default="", doc="Why the dataset cannot be shown; empty when it can.")
    waiting = param.Boolean(
        default=False,
        doc="True when :attr:`error` is a wait, not a fault: the dataset's writer has not "
        "written its first slice yet (shown as information, not as an error).",
    )

    axis = param.Integer(
        default=0, bounds=(0, None), doc="Normal axis: the dim perpendicular to the screen."
    )
    index = param.Integer(default=0, bounds=(0, None), doc="Slice index along the normal axis.")
    display = param.NumericTuple(
        default=(0, 1), length=2, doc="(row dim, column dim) drawn up and across the screen."
    )
    indices = param.Dict(
        default={},
        doc="Index along every other dim that is neither shown nor normal: {dim: index}.",
    )
    cmap = param.Selector(default="fire", objects=list(CMAPS), doc="Colour map name.")
    reverse = param.Boolean(default=False, doc="Reverse the colour map.")
    clim = param.Selector(
        default="robust",
        objects=list(CLIM_MODES),
        doc="Colour limits: per-slice min/max (auto), 2-98th percentiles (robust), the whole "
        "dataset's range (global) or vmin/vmax (manual).",
    )
    vmin = param.Number(default=None, allow_None=True, doc="Lower colour limit in manual mode.")
    vmax = param.Number(default=None, allow_None=True, doc="Upper colour limit in manual mode.")
    scale = param.Selector(default="linear", objects=["linear", "log"], doc="Colour scale.")
    auto_scale = param.Boolean(
        default=True,
        doc="On opening a dataset, switch to a log scale if its first slice is positive and "
        "spans two decades or more (conductivities, resistivities, intensities).",
    )
    agg = param.Selector(
        default="mean",
        objects=list(AGGREGATIONS),
        doc="How a screen pixel summarises the cells it covers when the slice is downsampled.",
    )
    part = param.Selector(
        default="magnitude", objects=list(COMPLEX_PARTS), doc="What complex values are shown as."
    )
    follow = param.Boolean(
        default=False,
        doc="Follow the newest data: move to the last iteration (or series member) as a "
        "running simulation writes it, keeping the plane, slice, zoom and colours.",
    )
    newer = param.String(
        default="", doc="Newer data the view does not show (with follow off), in words."
    )
    aspect = param.Selector(
        default=None,
        objects=[None, "equal", "auto"],
        allow_None=True,
        doc="Aspect of the plot: 'equal' (one unit across spans as many pixels as one unit up), "
        "'auto' (the plane fills the frame), or None: equal when both displayed axes are array "
        "indices or share a unit of length, else auto (chosen again for each dataset).",
    )
    x_range = param.NumericTuple(
        default=None, allow_None=True, length=2, doc="Zoom: visible x (column) range, or None."
    )
    y_range = param.NumericTuple(
        default=None, allow_None=True, length=2, doc="Zoom: visible y (row) range, or None."
    )

    def __init__(self, **params: Any) -> None:
        view = {k: params.pop(k) for k in VIEW_PARAMS if k in params}
        super().__init__(**params)
        self._load()
        if view:
            self.apply_view(**view)

    # ------------------------------------------------------------------ derived values
    @property
    def path(self) -> Path | None:
        """Real path of the open file, or None."""
        if not self.file:
            return None
        return bounded(resolve, self.root, self.file, key=self._key(), what="looking it up")

    def _key(self) -> str:
        return os.path.join(self.root, self.file)

    def _describe(self) -> tuple[Path, DatasetInfo]:
        """The open file's path and dataset's metadata, read off the event loop (bounded)."""

        def read() -> tuple[Path, DatasetInfo]:
            path = resolve(self.root, self.file)
            return path, describe(path, self.dataset, root=self.root)

        return bounded(read, key=self._key(), what="reading the dataset's description")

    @property
    def ndim(self) -> int:
        """Number of dims of the dataset shown (0 when none)."""
        return self.info.ndim if self.info is not None else 0

    @property
    def has_axis(self) -> bool:
        """True when there is a normal axis to slide along (3 or more dims)."""
        return self.ndim >= 3

    @property
    def axis_size(self) -> int:
        """Number of slices along the normal axis."""
        return self.info.shape[self.axis] if self.has_axis else 1

    @property
    def other_dims(self) -> list[int]:
        """Dims with their own slider besides the normal axis (e.g. iteration of a 4-D model)."""
        if self.ndim < 3:
            return []
        return [d for d in range(self.ndim) if d != self.axis and d not in self.display]

    def full_indices(self) -> tuple[int, ...]:
        """An index for every dim (0 for the displayed ones)."""
        idx = [0] * self.ndim
        if self.has_axis:
            idx[self.axis] = self.index
        for dim, value in self.indices.items():
            if 0 <= int(dim) < self.ndim:
                idx[int(dim)] = int(value)
        return tuple(idx)

    def request(self, plot_size: tuple[int, int] = (600, 800)) -> SliceRequest:
        """The data request for the current view at ``plot_size`` (height, width) pixels."""
        if self.info is None:
            raise DashappError(self.error or "No dataset is open.")
        return SliceRequest(
            dataset=self.info.path,
            display=(int(self.display[0]), int(self.display[1])),
            indices=self.full_indices(),
            x_range=tuple(self.x_range) if self.x_range else None,
            y_range=tuple(self.y_range) if self.y_range else None,
            plot_size=(int(plot_size[0]), int(plot_size[1])),
            agg=self.agg,
            part=self.part,
        )

    def position_label(self) -> str:
        """Where the slice is, in words: ``"z = -412.5 m (index 20 of 48)"``."""
        if not self.has_axis or self.info is None:
            return ""
        return self.position_of(self.axis, self.index)

    def position_of(self, dim: int, index: int) -> str:
        """Index ``index`` along ``dim`` in words, in the one numbering the view uses.

        Positions are counted as the sliders and links count them: the index, from 0. A
        coordinate from the file is added when it is a position (``z = -412.5 m``), not when
        it is a second count (an ``iteration`` scale holding 1, 2, 3, ...: the slider's 7
        would read as "iteration 8").
        """
        axis = self.info.axes[dim]
        where = f"index {index} of {axis.size}"
        if axis.coords is not None and not _counts(axis.coords):
            value = axis.coords[index]
            unit = f" {axis.units}" if axis.units else ""
            return f"{axis.name} = {value:g}{unit} ({where})"
        return f"{axis.name}: {where}"

    # ------------------------------------------------------------------ loading
    @param.depends("root", "file", "dataset", watch=True)
    def _load(self) -> None:
        """Load the dataset's metadata and reset the view to its defaults."""
        info, error, waiting = None, "", False
        if self.file and self.dataset:
            try:
                info = self._describe()[1]
                check_viewable(info)
            except DashappError as exc:
                info, error, waiting = None, str(exc), isinstance(exc, NoDataYet)
            except OSError as exc:  # pragma: no cover - filesystem trouble not mapped above
                info, error = None, f"{self.file}: {exc}"
        elif self.file:
            error = ""
        with param.parameterized.discard_events(self):
            self.info = info
            self.error = error
            self.waiting = waiting
            self._set_defaults()
        self.param.trigger(
            "info", "error", "axis", "index", "display", "indices", "x_range", "y_range"
        )

    def _set_defaults(self) -> None:
        ndim = self.ndim
        if ndim >= 3:
            self.axis = default_axis(ndim)
            self.display = default_display_dims(ndim, self.axis)
            self.index = self.info.shape[self.axis] // 2
        else:
            self.axis = 0
            self.display = (0, 1)
            self.index = 0
        self.indices = {d: 0 for d in self.other_dims}
        self.x_range = None
        self.y_range = None
        self.auto_scale = True
        self.aspect = None
        self.newer = ""
        if self.clim != "manual":
            self.vmin = self.vmax = None

    def apply_view(self, **view: Any) -> list[str]:
        """Apply view settings (from a deep link or a notebook call), clamping what does not fit.

        Returns sentences about settings that had to be changed, e.g. an index past the end.
        """
        notes: list[str] = []
        unknown = set(view) - set(VIEW_PARAMS)
        if unknown:
            raise TypeError(f"unknown view settings: {', '.join(sorted(unknown))}")
        ndim = self.ndim
        plane = {}
        if "axis" in view and view["axis"] is not None and ndim >= 3:
            axis = int(view["axis"])
            if not 0 <= axis < ndim:
                notes.append(
                    f"axis={axis} does not exist in a {ndim}-D dataset; showing axis {self.axis}"
                )
            else:
                plane["axis"] = axis
        elif view.get("axis") not in (None, 0) and ndim < 3:
            notes.append(f"axis={view['axis']}: a {ndim}-D dataset has no normal axis; ignored")
        if "display" in view and view["display"] is not None and ndim >= 2:
            display = tuple(int(d) for d in view["display"])
            axis = plane.get("axis", self.axis)
            if (
                len(display) == 2
                and display[0] != display[1]
                and all(0 <= d < ndim for d in display)
                and (ndim < 3 or axis not in display)
            ):
                plane["display"] = display
            else:
                notes.append(
                    f"dims={','.join(map(str, display))} is not a plane of this {ndim}-D dataset "
                    "(two different dims, neither the normal axis); showing the default plane"
                )
        if plane:
            self.param.update(**plane)
        rest = {k: v for k, v in view.items() if k not in ("axis", "display")}
        if "index" in rest and rest["index"] is not None and self.has_axis:
            index = int(rest["index"])
            rest["index"] = min(max(index, 0), self.axis_size - 1)
            if index != rest["index"]:
                last, shown = self.axis_size - 1, rest["index"]
                notes.append(f"index={index} is outside 0-{last}; showing index {shown}")
        elif "index" in rest:
            index = rest.pop("index")
            if index not in (None, 0):
                notes.append(f"index={index}: a {ndim}-D dataset has no slices to pick; ignored")
        if "indices" in rest:
            clean = dict(self.indices)
            for dim, value in (rest["indices"] or {}).items():
                dim = int(dim)
                if dim in clean:
                    size = self.info.shape[dim]
                    clean[dim] = min(max(int(value), 0), size - 1)
                    if not 0 <= int(value) < size:
                        notes.append(
                            f"d{dim}={value} is outside 0-{size - 1}; showing index {clean[dim]}"
                        )
                else:
                    notes.append(f"d{dim}={value}: dim {dim} has no slider in this view; ignored")
            rest["indices"] = clean
        if "scale" in rest:
            rest["auto_scale"] = False
        for key in ("vmin", "vmax"):
            if key in rest and rest[key] is not None:
                rest[key] = float(rest[key])
        if ("vmin" in rest or "vmax" in rest) and "clim" not in rest:
            rest["clim"] = "manual"
        for key in ("x_range", "y_range"):
            if key in rest and rest[key] is not None:
                lo, hi = (float(v) for v in rest[key])
                rest[key] = (min(lo, hi), max(lo, hi)) if lo != hi else None
        self.param.update(**rest)
        return notes

    # ------------------------------------------------------------------ live data
    def view(self) -> dict[str, Any]:
        """The current view settings (what :meth:`apply_view` takes)."""
        return {k: getattr(self, k) for k in VIEW_PARAMS}

    def reload(self) -> list[str]:
        """The file changed on disk: re-read the dataset's metadata, keeping the view.

        Dimensions that grew (a writer appending iterations) are followed to their newest
        index when :attr:`follow` is on; otherwise :attr:`newer` says what is not shown. For
        a numbered series (``/iter_0007/model``) the newest member is opened (follow) or
        announced. Returns what changed, in words. Raises the data layer's errors (a file
        being written, truncated or deleted) for the caller to report and retry.
        """
        if not (self.file and self.dataset):
            return []
        old = self.info
        path, info = self._describe()
        check_viewable(info)
        changes: list[str] = []
        view = self.view()
        members = bounded(
            partial(series_members, path, self.dataset, root=self.root),
            key=self._key(),
            what="looking for newer data",
        )
        numbers = [m.number for m in members]
        current = next((m for m in members if m.path == self.dataset), None)
        newest = members[-1] if members else None
        if newest is not None and current is not None and newest.number > current.number:
            if self.follow:
                with param.parameterized.discard_events(self):
                    self.dataset = newest.path
                self._load()
                self.apply_view(**view)
                self.newer = ""
                return [f"followed to {newest.label}"]
            ahead = len([n for n in numbers if n > current.number])
            self.newer = f"{ahead} newer: {newest.label} is the latest"
            return [self.newer]
        if old is not None and info.ndim == old.ndim:
            grown = [d for d in range(info.ndim) if info.shape[d] > old.shape[d]]
        else:
            grown = []
        with param.parameterized.discard_events(self):
            self.info = info
            self.error = ""
            self.waiting = False
        self.param.trigger("info")
        if old is None or info.ndim != old.ndim:
            # First data of a run that had none (or a different layout): a fresh plane, but
            # the user's colours and follow setting stay.
            keep = (
                "cmap", "reverse", "clim", "vmin", "vmax", "scale", "agg", "part", "follow",
                "aspect",
            )  # fmt: skip
            self._set_defaults_keep({k: view[k] for k in keep})
            if self.follow:
                self._to_newest(info.growable)
            return ["dataset reloaded"]
        if self.follow and grown:
            self._to_newest(grown)
            changes.append("followed to the newest data")
        elif grown:
            unseen = []
            for d in grown:
                shown = self.index if d == self.axis else self.indices.get(d, 0)
                if shown < info.shape[d] - 1:
                    unseen.append(f"{info.axes[d].name} up to index {info.shape[d] - 1}")
            self.newer = ("newer data: " + ", ".join(unseen)) if unseen else ""
        if grown:
            changes.append("grew: " + ", ".join(info.axes[d].name for d in grown))
        return changes or ["rewritten"]

    def _set_defaults_keep(self, view: dict[str, Any]) -> None:
        """Defaults for a changed dataset, then as much of the old view as still fits."""
        self._set_defaults()
        self.param.trigger("axis", "index", "display", "indices")
        self.apply_view(**{k: v for k, v in view.items() if v is not None})

    @param.depends("follow", watch=True)
    def _follow_now(self) -> None:
        """Turning follow on jumps to the newest data at once."""
        if not self.follow or self.info is None:
            return
        with contextlib.suppress(DashappError):
            self.reload()
        self._to_newest(self.info.growable)

    def _to_newest(self, dims: Iterable[int]) -> None:
        """Move the sliders of ``dims`` to their last index."""
        updates: dict[str, Any] = {}
        for d in dims:
            last = self.info.shape[d] - 1
            if d == self.axis and self.has_axis:
                updates["index"] = last
            elif d in self.other_dims:
                updates["indices"] = {**self.indices, **updates.get("indices", {}), d: last}
        if updates:
            self.param.update(**updates)
        self.newer = ""

    # ------------------------------------------------------------------ rules
    @param.depends("axis", watch=True)
    def _axis_changed(self) -> None:
        if self.ndim < 3:
            return
        updates: dict[str, Any] = {"x_range": None, "y_range": None}
        if self.axis in self.display or self.ndim == 3:
            updates["display"] = default_display_dims(self.ndim, self.axis)
        self.param.update(**updates)
        self._fit_indices()

    @param.depends("display", watch=True)
    def _display_changed(self) -> None:
        if self.info is None:
            return
        self.param.update(x_range=None, y_range=None)
        self._fit_indices()

    @param.depends("index", watch=True)
    def _clamp_index(self) -> None:
        if self.has_axis and self.index > self.axis_size - 1:
            self.index = self.axis_size - 1

    def _fit_indices(self) -> None:
        """Clamp the slice index to the axis and give every other dim an index."""
        if self.info is None:
            return
        old = self.indices
        new = {d: min(int(old.get(d, 0)), self.info.shape[d] - 1) for d in self.other_dims}
        if new != old:
            self.indices = new
        self._clamp_index()

    @param.depends("clim", watch=True)
    def _clim_changed(self) -> None:
        if self.clim != "manual":
            self.param.update(vmin=None, vmax=None)

    # ------------------------------------------------------------------ convenience
    def open(self, file: str | os.PathLike[str], dataset: str, **view: Any) -> list[str]:
        """Open ``dataset`` in ``file`` (relative to the root) and apply ``view`` settings."""
        self.param.update(file=os.fspath(file), dataset=dataset)
        if self.info is None or not view:
            return []
        return self.apply_view(**view)
