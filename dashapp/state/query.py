"""Deep links: the view as a URL query, and back.

``/slicer?file=runs/inv.h5&dataset=/model&axis=2&index=40&cmap=fire`` opens exactly that view.
The query carries:

==========  ==============================================================
``file``    file relative to the server's root
``dataset`` HDF5 path of the dataset
``axis``    normal axis (3-D and more)
``index``   slice index along the normal axis
``dims``    displayed ``row,col`` dims (only when not the default plane)
``d<k>``    index along dim ``k`` for every other dim (``d0=3``: iteration 3)
``cmap``    colour map, ``_r`` suffix for reversed (``fire_r``)
``clim``    ``auto``/``robust``/``global``/``manual``, with ``vmin``/``vmax``
``scale``   ``log`` for a log colour scale
``agg``     downsampling reduction when not ``mean``
``part``    complex part when not ``magnitude``
``zoom``    ``x0,x1,y0,y1`` visible region in the plot's coordinates
``follow``  ``true``: move to the newest iteration as a running simulation writes it
==========  ==============================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..data import default_display_dims
from .slice import CMAPS, SliceState

__all__ = ["apply_query", "parse_query", "to_query"]


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def to_query(state: SliceState) -> dict[str, str]:
    """The query parameters that reproduce ``state``'s view (empty when nothing is open)."""
    q: dict[str, str] = {}
    if not state.file:
        return q
    q["file"] = state.file
    if not state.dataset:
        return q
    q["dataset"] = state.dataset
    if state.info is None:
        return q
    ndim = state.ndim
    if ndim >= 3:
        q["axis"] = str(state.axis)
        q["index"] = str(state.index)
        if tuple(state.display) != default_display_dims(ndim, state.axis):
            q["dims"] = ",".join(str(int(d)) for d in state.display)
        for dim in state.other_dims:
            q[f"d{dim}"] = str(int(state.indices.get(dim, 0)))
    elif tuple(state.display) != (0, 1):
        q["dims"] = ",".join(str(int(d)) for d in state.display)
    q["cmap"] = state.cmap + ("_r" if state.reverse else "")
    if state.clim != "robust":
        q["clim"] = state.clim
    if state.clim == "manual" and state.vmin is not None and state.vmax is not None:
        q["vmin"], q["vmax"] = _fmt(state.vmin), _fmt(state.vmax)
    q["scale"] = state.scale  # always: an opened link must not re-guess the scale
    if state.agg != "mean":
        q["agg"] = state.agg
    if state.info.kind == "complex" and state.part != "magnitude":
        q["part"] = state.part
    if state.follow:
        q["follow"] = "true"
    if state.x_range and state.y_range:
        q["zoom"] = ",".join(_fmt(v) for v in (*state.x_range, *state.y_range))
    return q


def _first(value: Any) -> str:
    """Tornado gives ``{key: [b"value"]}``; location gives ``{key: "value"}``."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value)


def parse_query(args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Split a query into ``(open, view, problems)``.

    ``open`` holds ``file``/``dataset``; ``view`` the settings for :meth:`SliceState.apply_view`;
    ``problems`` sentences about values that could not be understood (they are ignored).
    """
    raw = {k: _first(v) for k, v in args.items()}
    opened = {k: raw[k] for k in ("file", "dataset") if raw.get(k)}
    view: dict[str, Any] = {}
    problems: list[str] = []

    def integer(key: str) -> int | None:
        try:
            return int(raw[key])
        except ValueError:
            problems.append(f"{key}={raw[key]!r} is not a whole number; ignored")
            return None

    def numbers(key: str, count: int) -> list[float] | None:
        try:
            values = [float(v) for v in raw[key].split(",")]
        except ValueError:
            values = []
        if len(values) != count:
            problems.append(f"{key}={raw[key]!r} needs {count} comma-separated numbers; ignored")
            return None
        return values

    for key in ("axis", "index"):
        if key in raw and (v := integer(key)) is not None:
            view[key] = v
    if "dims" in raw and (dims := numbers("dims", 2)) is not None:
        view["display"] = tuple(int(d) for d in dims)
    indices = {}
    for key in raw:
        if key.startswith("d") and key[1:].isdigit() and (v := integer(key)) is not None:
            indices[int(key[1:])] = v
    if indices:
        view["indices"] = indices
    if "cmap" in raw:
        name, reverse = raw["cmap"], False
        if name.endswith("_r"):
            name, reverse = name[:-2], True
        if name in CMAPS:
            view["cmap"], view["reverse"] = name, reverse
        else:
            problems.append(f"colour map {raw['cmap']!r} is unknown; ignored")
    choices = {
        "clim": ("auto", "robust", "global", "manual"),
        "scale": ("linear", "log"),
        "agg": ("mean", "max", "min", "first"),
        "part": ("magnitude", "phase", "real", "imag"),
    }
    for key, allowed in choices.items():
        if key in raw:
            if raw[key] in allowed:
                view[key] = raw[key]
            else:
                problems.append(f"{key}={raw[key]!r} is not one of {', '.join(allowed)}; ignored")
    for key in ("vmin", "vmax"):
        if key in raw and (v := numbers(key, 1)) is not None:
            view[key] = v[0]
    if ("vmin" in view) != ("vmax" in view):
        problems.append("vmin and vmax go together; ignored")
        view.pop("vmin", None)
        view.pop("vmax", None)
    if "follow" in raw:
        if raw["follow"].lower() in ("true", "1", "yes", "on"):
            view["follow"] = True
        elif raw["follow"].lower() in ("false", "0", "no", "off"):
            view["follow"] = False
        else:
            problems.append(f"follow={raw['follow']!r} is not true or false; ignored")
    if "zoom" in raw and (z := numbers("zoom", 4)) is not None:
        view["x_range"], view["y_range"] = (z[0], z[1]), (z[2], z[3])
    return opened, view, problems


def apply_query(state: SliceState, args: Mapping[str, Any]) -> list[str]:
    """Open the file and dataset named in ``args`` and restore the view. Returns problems found."""
    opened, view, problems = parse_query(args)
    if not opened.get("file"):
        return problems
    state.param.update(file=opened["file"], dataset=opened.get("dataset", ""))
    if state.info is not None and view:
        problems += state.apply_view(**view)
    return problems
