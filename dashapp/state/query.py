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
``aspect``  ``equal`` or ``auto`` when chosen (else from the axes' units)
==========  ==============================================================

A link is typed, pasted, truncated and edited by people, so every value is checked: one that
cannot be used is left out with a sentence naming the key and what was done instead, and the
rest of the view still opens. A link without a dataset (or with ``dataset=`` empty, or naming
one that is not in the file) opens the file's default dataset, as clicking the file does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from ..data import (
    AGGREGATIONS,
    COMPLEX_PARTS,
    DashappError,
    Node,
    NotFound,
    default_display_dims,
    describe,
    read_tree,
    resolve,
)
from ..data.fsguard import bounded
from .slice import CLIM_MODES, CMAPS, VIEW_PARAMS, SliceState

__all__ = ["QUERY_KEYS", "apply_query", "default_dataset", "parse_query", "to_query"]

#: The keys of a deep link (besides ``d<k>``, one per other dim): the file, the dataset and
#: the key of every view setting (:data:`~dashapp.state.slice.VIEW_PARAMS`).
QUERY_KEYS = tuple(
    dict.fromkeys(k for k in ("file", "dataset", *VIEW_PARAMS.values()) if k != "d<k>")
)
#: Keys that belong to what serves the page, not to the view: not reported as unknown.
#: (``bokeh-*``: Bokeh's autoload and app paths; ``token``: an access token in the URL.)
FOREIGN_KEYS = ("token",)
FOREIGN_PREFIXES = ("bokeh-",)
#: Longest path accepted in a link (Linux's PATH_MAX), and longest name in it (NAME_MAX).
MAX_PATH = 4096
MAX_NAME = 255
#: At most this many problems are listed (a link with 10,000 bad keys gets a short message).
MAX_PROBLEMS = 12


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
    if state.aspect is not None:
        q["aspect"] = state.aspect
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


def _quote(key: str, value: str) -> str:
    """``key='value'`` for a message, long values cut short (a 5,000-character path)."""
    if len(value) > 60:
        return f"{key}={value[:40]!r}… ({len(value):,} characters)"
    return f"{key}={value!r}"


def _path_problem(key: str, value: str) -> str | None:
    """Why ``value`` cannot be a path in a link (before any filesystem call), or None."""
    if "\x00" in value:
        return f"{_quote(key, value)} contains a NUL character"
    if len(value) > MAX_PATH:
        return f"{_quote(key, value)} is longer than any path ({MAX_PATH:,} characters)"
    if key == "file" and any(len(part.encode()) > MAX_NAME for part in value.split("/")):
        return f"{_quote(key, value)} has a name longer than {MAX_NAME} bytes"
    return None


def parse_query(args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Split a query into ``(open, view, problems)``.

    ``open`` holds ``file``/``dataset`` (``dataset`` may be ``""``: the link gave it empty);
    ``view`` the settings for :meth:`SliceState.apply_view`; ``problems`` one sentence per value
    that cannot be used, naming the key and what is done instead (the value is left out).
    """
    raw = {k: _first(v) for k, v in args.items()}
    opened: dict[str, Any] = {}
    view: dict[str, Any] = {}
    problems: list[str] = []

    if raw.get("file"):
        why = _path_problem("file", raw["file"])
        if why:
            problems.append(f"{why}; no file was opened")
        else:
            opened["file"] = raw["file"]
    if "dataset" in raw and "file" in opened:
        why = _path_problem("dataset", raw["dataset"])
        if why:
            problems.append(f"{why}; showing the file's default dataset")
        else:
            opened["dataset"] = raw["dataset"]

    def integer(key: str, what: str = "ignored") -> int | None:
        try:
            return int(raw[key])
        except ValueError:
            problems.append(f"{_quote(key, raw[key])} is not a whole number; {what}")
            return None

    def numbers(key: str, count: int, what: str) -> list[float] | None:
        try:
            values = [float(v) for v in raw[key].split(",")]
        except ValueError:
            values = []
        if len(values) != count or not all(math.isfinite(v) for v in values):
            need = "a finite number" if count == 1 else f"{count} finite numbers, comma-separated"
            problems.append(f"{_quote(key, raw[key])} is not {need}; {what}")
            return None
        return values

    for key in ("axis", "index"):
        if key in raw and (v := integer(key)) is not None:
            view[key] = v
    if "dims" in raw:
        try:
            dims = tuple(int(d) for d in raw["dims"].split(","))
        except ValueError:
            dims = ()
        if len(dims) == 2:
            view["display"] = dims
        else:
            problems.append(
                f"{_quote('dims', raw['dims'])} is not two dim numbers (rows,columns); "
                "showing the default plane"
            )
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
            problems.append(
                f"{_quote('cmap', raw['cmap'])} is not a colour map of the slicer "
                f"({', '.join(CMAPS[:5])}, …); keeping {SliceState.param.cmap.default}"
            )
    choices = {
        "clim": CLIM_MODES,
        "scale": ("linear", "log"),
        "agg": tuple(AGGREGATIONS),
        "part": tuple(COMPLEX_PARTS),
        "aspect": ("equal", "auto"),
    }
    for key, allowed in choices.items():
        if key in raw:
            if raw[key] in allowed:
                view[key] = raw[key]
            else:
                problems.append(
                    f"{_quote(key, raw[key])} is not one of {', '.join(allowed)}; ignored"
                )
    limits = {}
    for key in ("vmin", "vmax"):
        if key in raw and (v := numbers(key, 1, "manual colour limits ignored")) is not None:
            limits[key] = v[0]
    if len(limits) == 1 and not any(k in raw for k in ("vmin", "vmax") if k not in limits):
        given = next(iter(limits))
        problems.append(f"{given} without {'vmax' if given == 'vmin' else 'vmin'}; ignored")
    elif len(limits) == 2:
        lo, hi = limits["vmin"], limits["vmax"]
        if lo > hi:
            problems.append(f"vmin={lo:g} is above vmax={hi:g}; swapped")
            lo, hi = hi, lo
        view["vmin"], view["vmax"] = lo, hi
    if "follow" in raw:
        if raw["follow"].lower() in ("true", "1", "yes", "on"):
            view["follow"] = True
        elif raw["follow"].lower() in ("false", "0", "no", "off"):
            view["follow"] = False
        else:
            problems.append(f"{_quote('follow', raw['follow'])} is not true or false; ignored")
    if "zoom" in raw and (z := numbers("zoom", 4, "showing the whole plane")) is not None:
        if z[0] == z[1] or z[2] == z[3]:
            problems.append(
                f"{_quote('zoom', raw['zoom'])} is an empty region; showing the whole plane"
            )
        else:
            view["x_range"], view["y_range"] = (z[0], z[1]), (z[2], z[3])
    unknown = [
        k for k in raw
        if k not in QUERY_KEYS and k not in FOREIGN_KEYS
        and not k.startswith(FOREIGN_PREFIXES) and not (k.startswith("d") and k[1:].isdigit())
    ]  # fmt: skip
    for key in unknown:
        name = f"{key[:40]!r}…" if len(key) > 40 else repr(key)
        problems.append(f"{name} is not a setting of the slicer; ignored")
    return opened, view, _at_most(problems)


def _at_most(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    more = len(problems) - MAX_PROBLEMS + 1
    return [*problems[: MAX_PROBLEMS - 1], f"and {more:,} more values that were ignored"]


def default_dataset(tree: Node) -> str | None:
    """The dataset to show when a file is opened: the NeXus default plot, else the largest image."""
    viewable = [n for n in tree.walk() if n.kind == "dataset" and n.viewable]
    if not viewable:
        return None
    default = tree.attrs.get("default")
    if default:
        entry = tree.find("/" + default)
        if entry is not None and entry.attrs.get("default"):
            group = tree.find(f"{entry.path}/{entry.attrs['default']}")
            if group is not None and "signal" in group.attrs:
                sig = tree.find(f"{group.path}/{group.attrs['signal']}")
                if sig is not None and sig.viewable:
                    return sig.path

    def size(n: Node) -> int:
        total = 1
        for s in n.shape or ():
            total *= s
        return total

    return max(viewable, key=size).path


def _default_of(state: SliceState, file: str) -> str | None:
    """The default dataset of ``file`` under the state's root (None: none, or unreadable)."""

    def read() -> str | None:
        return default_dataset(read_tree(resolve(state.root, file), root=state.root))

    try:  # (a link is applied on the server's event loop: the filesystem gets a deadline)
        return bounded(read, key=os.path.join(state.root, file), what="reading the file")
    except (DashappError, OSError):
        return None


def _missing(state: SliceState, file: str, dataset: str) -> bool:
    """True when ``dataset`` is not in ``file`` (rather than there but not an image: a link to
    a text dataset shows why it cannot be drawn, as clicking it does)."""

    def look() -> None:
        describe(resolve(state.root, file), dataset, root=state.root)

    try:
        bounded(look, key=os.path.join(state.root, file), what="looking the dataset up")
    except NotFound:
        return True
    except (DashappError, OSError):
        return False
    return False


#: What a restore puts back when its link does not say (a link without ``cmap`` is the default
#: colour map, not the one chosen since). Positions (axis, index, plane) come from the dataset.
#: (From VIEW_PARAMS: every setting but the plane's, which the dataset's default plane resets.)
RESET_DEFAULTS = tuple(
    k for k in VIEW_PARAMS if k not in ("axis", "index", "display", "indices", "x_range", "y_range")
)


def apply_query(state: SliceState, args: Mapping[str, Any], reset: bool = False) -> list[str]:
    """Open the file and dataset named in ``args`` and restore the view.

    Returns the problems found, one sentence each. Without a dataset, or when the one named is
    not in the file, the file's default dataset opens (as clicking the file does) and the rest
    of the view is applied to it. With ``reset`` (restoring a recorded view into a page already
    showing another), every setting the link lacks goes back to its default, as in a new page.
    """
    opened, view, problems = parse_query(args)
    file = opened.get("file")
    if not file:
        return problems
    if reset:
        state.param.update({k: state.param[k].default for k in RESET_DEFAULTS if k not in view})
        if (state.file, state.dataset) == (file, opened.get("dataset") or state.dataset):
            state.param.trigger("dataset")  # same dataset: back to its default plane and zoom
    dataset = opened.get("dataset")
    if dataset:
        state.param.update(file=file, dataset=dataset)
        if state.info is None and state.error and _missing(state, file, dataset):
            default = _default_of(state, file)
            if default is not None and default != dataset:
                problems.append(
                    f"{_quote('dataset', dataset)} cannot be shown ({state.error.strip()}); "
                    f"showing the file's default dataset {default}"
                )
                state.dataset = default
    else:
        default = _default_of(state, file) or ""
        state.param.update(file=file, dataset=default)
        if dataset == "":
            shown = (
                f"showing the file's default dataset {default}"
                if default
                else ("the file has no dataset to show as an image")
            )
            problems.append(f"dataset= is empty; {shown}")
    if state.info is not None and view:
        problems += state.apply_view(**view)
    return _at_most(problems)
