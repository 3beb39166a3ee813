"""dashapp's configuration: every ``DASHAPP_*`` environment variable, read in this one place.

Each variable is declared once in :data:`VARIABLES` with its default, type and meaning; the
rest of dashapp asks :func:`current` for the parsed values (``settings.current().fs_timeout``)
and never reads ``os.environ`` for a ``DASHAPP_`` name itself (``tests/test_settings.py``
checks that). The table in ``docs/deployment.md`` is this list (checked by the same test).

The values are parsed once and kept; they are parsed again only if the process's
``DASHAPP_*`` environment changed since (a server never changes it; a test that sets a
variable with ``monkeypatch.setenv`` sees its value at the next call). A value that cannot be
parsed gives the default, with a warning in the log. Paths have ``~`` expanded here, once.

This module imports nothing of dashapp and no UI library: every layer may use it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = [
    "ALLOW_VIEWERS_ENV",
    "ANNOUNCER_ENV",
    "BASE_URL_ENV",
    "TOKEN_ENV",
    "VARIABLES",
    "Settings",
    "Variable",
    "cache_dir",
    "current",
    "markdown_table",
    "reload",
]

log = logging.getLogger(__name__)

#: Names other modules write into a child process's environment.
TOKEN_ENV = "DASHAPP_TOKEN"
ALLOW_VIEWERS_ENV = "DASHAPP_ALLOW_VIEWERS"
BASE_URL_ENV = "DASHAPP_JUPYTER_BASE_URL"
ANNOUNCER_ENV = "DASHAPP_ANNOUNCER_PID"
#: Set by JupyterHub for the user's server and its kernels (read as the base URL's fallback).
_HUB_PREFIX = "JUPYTERHUB_SERVICE_PREFIX"


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, its default (as written in the environment), the
    type of its value, what it does, and how its text becomes that value."""

    name: str
    default: str
    type: str
    doc: str
    parse: Callable[[str], Any] = field(repr=False)


def _path(text: str) -> Path | None:
    return Path(text).expanduser() if text.strip() else None


def _float(low: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        return max(low, float(text))

    return parse


def _optional_float(text: str) -> float | None:
    return max(0.0, float(text)) if text.strip() else None


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes")


def _names(text: str) -> frozenset[str]:
    return frozenset(n.strip() for n in text.split(",") if n.strip())


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"one of {', '.join(choices)}")
        return value

    return parse


def _pid(text: str) -> int | None:
    return int(text) if text.strip() else None


def _bits(text: str) -> int:
    return 32 if text.strip() == "32" else 16


def _base_url(text: str) -> str | None:
    if not text:
        return None
    return "/" + text.strip("/") + "/" if text.strip("/") else "/"


def _demo_size(text: str) -> str:
    size = text.strip() or "demo"
    if size not in ("tiny", "small", "demo"):
        raise ValueError("not one of tiny, small, demo")
    return size


#: Every ``DASHAPP_*`` variable dashapp reads (the field of :class:`Settings` is the name
#: without ``DASHAPP_``, in lower case).
VARIABLES: tuple[Variable, ...] = (
    Variable(
        "DASHAPP_ROOT",
        "",
        "folder",
        (
            "The folder the slicer browses when no `--root` is given (default: the built-in "
            "demo workspace)."
        ),
        _path,
    ),
    Variable(
        ANNOUNCER_ENV,
        "",
        "process id",
        "Set by `dashapp serve` for its server: the helper that prints the link once the "
        "server answers (the server reaps it when it ends). Not for you to set.",
        _pid,
    ),
    Variable(
        "DASHAPP_CACHE",
        "",
        "folder",
        (
            "dashapp's cache folder: pyramids, demo workspace, default workspace, token file "
            "(default: the user's cache folder, e.g. `~/.cache/dashapp`)."
        ),
        _path,
    ),
    Variable(
        "DASHAPP_WORKSPACE",
        "",
        "folder",
        (
            "The provenance workspace (timeline, views) when none is given (default: "
            "`workspace` in the cache folder)."
        ),
        _path,
    ),
    Variable(
        TOKEN_ENV,
        "",
        "text",
        (
            "The server's access token (default: the one in the token file `<cache>/token`, "
            "made on first use)."
        ),
        str.strip,
    ),
    Variable(
        ALLOW_VIEWERS_ENV,
        "",
        "flag",
        "`1`: people without the token may view (not start clusters, not write).",
        _flag,
    ),
    Variable(
        "DASHAPP_OWNERS",
        "",
        "names",
        "Comma-separated user names (JupyterHub/proxy header) who are owners.",
        _names,
    ),
    Variable(
        BASE_URL_ENV,
        "",
        "URL path",
        (
            "The Jupyter server's base URL, set for the launcher tile's Panel process "
            "(fallback: `$JUPYTERHUB_SERVICE_PREFIX`)."
        ),
        _base_url,
    ),
    Variable(
        "DASHAPP_CLUSTER_GROUP",
        "",
        "folder",
        (
            "Folder through which the server processes of one group share one Dask cluster "
            "(default: per multi-process server)."
        ),
        _path,
    ),
    Variable(
        "DASHAPP_READ_MEMORY_MB",
        "1024",
        "MB (>= 16)",
        "Memory one read of the data layer may hold at once.",
        _float(16),
    ),
    Variable(
        "DASHAPP_CHUNK_CACHE_MB",
        "512",
        "MB",
        "The server's decoded-chunk cache, shared out among its processes.",
        _float(0),
    ),
    Variable(
        "DASHAPP_PYRAMID_MIN_MB",
        "256",
        "MB",
        "Datasets from this size on get an overview pyramid.",
        _float(0),
    ),
    Variable(
        "DASHAPP_PYRAMID_BUDGET_GB",
        "",
        "GB",
        (
            "Disk the pyramids may take (0: no pyramids; default: a quarter of the cache "
            "filesystem's free space, at most 50 GB)."
        ),
        _optional_float,
    ),
    Variable(
        "DASHAPP_FS_TIMEOUT",
        "10",
        "seconds (>= 0.1)",
        (
            "Time a filesystem call may take before the person is told the filesystem does "
            "not answer."
        ),
        _float(0.1),
    ),
    Variable(
        "DASHAPP_WATCH",
        "auto",
        "auto, poll, inotify",
        "How live files are followed (auto: polling on network filesystems).",
        _choice("auto", "poll", "inotify"),
    ),
    Variable(
        "DASHAPP_POLL_INTERVAL",
        "2",
        "seconds (>= 0.2)",
        "Polling interval when following a live file by polling.",
        _float(0.2),
    ),
    Variable(
        "DASHAPP_FRAME_BITS",
        "16",
        "16 or 32",
        "Bits per value of the pictures sent to the browser.",
        _bits,
    ),
    Variable(
        "DASHAPP_MMAP_THRESHOLD_KB",
        "4096",
        "kB",
        (
            "Allocations from this size on get their own mapping, returned at once when freed"
            " (0: glibc's default)."
        ),
        int,
    ),
    Variable(
        "DASHAPP_MALLOC_TRIM_S",
        "5",
        "seconds",
        "Interval at which freed memory is given back to the system (0: never).",
        float,
    ),
    Variable(
        "DASHAPP_DEMO_INVERSION_SIZE",
        "demo",
        "tiny, small or demo",
        "The size of the demo's live inversion started by its Run button (tiny: seconds).",
        _demo_size,
    ),
)


@dataclass(frozen=True)
class Settings:
    """The parsed values of :data:`VARIABLES` (see each variable's doc there)."""

    root: Path | None
    announcer_pid: int | None
    cache: Path | None
    workspace: Path | None
    token: str
    allow_viewers: bool
    owners: frozenset[str]
    jupyter_base_url: str | None
    cluster_group: Path | None
    read_memory_mb: float
    chunk_cache_mb: float
    pyramid_min_mb: float
    pyramid_budget_gb: float | None
    fs_timeout: float
    watch: str
    poll_interval: float
    frame_bits: int
    mmap_threshold_kb: int
    malloc_trim_s: float
    demo_inversion_size: str


def _field(var: Variable) -> str:
    return var.name.removeprefix("DASHAPP_").lower()


def _parse(environ: dict[str, str]) -> Settings:
    values: dict[str, Any] = {}
    for var in VARIABLES:
        text = environ.get(var.name, var.default)
        if var.name == BASE_URL_ENV and not text:
            text = environ.get(_HUB_PREFIX, "")
        try:
            values[_field(var)] = var.parse(text)
        except ValueError as exc:
            log.warning("%s=%r is not valid (%s): using %r", var.name, text, exc, var.default)
            values[_field(var)] = var.parse(var.default)
    return Settings(**values)


_LOCK = threading.Lock()
_CACHED: tuple[list[str | bytes | None], Settings] | None = None
_NAMES = (*(v.name for v in VARIABLES), _HUB_PREFIX)
_BYTE_NAMES = tuple(os.fsencode(name) for name in _NAMES)


def _snapshot() -> list[str | bytes | None]:
    """The variables' raw values, to tell whether the environment changed since the last parse.

    ``os.environ.get`` raises and catches a KeyError for each unset name (60 us for these 19);
    on POSIX the mapping it wraps (``os.environ._data``, bytes keys, kept in step by
    ``os.environ``'s setters) answers in 4 us, which keeps :func:`current` cheap enough to be
    called for each filesystem call.
    """
    data = getattr(os.environ, "_data", None)
    if os.name == "posix" and isinstance(data, dict):
        return [data.get(name) for name in _BYTE_NAMES]
    get = os.environ.get
    return [get(name) for name in _NAMES]


def current() -> Settings:
    """This process's settings (parsed once; again only if its ``DASHAPP_*`` environment changed).

    Keep it out of per-chunk loops: take the value once per read.
    """
    global _CACHED
    snap = _snapshot()
    cached = _CACHED
    if cached is not None and cached[0] == snap:
        return cached[1]
    with _LOCK:
        environ = {name: os.environ[name] for name in _NAMES if name in os.environ}
        _CACHED = (snap, _parse(environ))
        return _CACHED[1]


def reload() -> Settings:
    """Parse the environment again (for tests that change it by other means than ``os.environ``)."""
    global _CACHED
    with _LOCK:
        _CACHED = None
    return current()


def cache_dir() -> Path:
    """dashapp's cache folder: ``$DASHAPP_CACHE``, else the user's cache folder for dashapp
    (``platformdirs.user_cache_dir``: ``~/.cache/dashapp`` on Linux, or under ``$XDG_CACHE_HOME``).
    """
    cache = current().cache
    if cache is not None:
        return cache
    import platformdirs

    return Path(platformdirs.user_cache_dir("dashapp"))


def markdown_table() -> str:
    """The variables as a Markdown table (the one in ``docs/deployment.md``)."""
    rows = ["| Variable | Default | Type | What it does |", "|---|---|---|---|"]
    for var in VARIABLES:
        default = f"`{var.default}`" if var.default else "(see text)"
        rows.append(f"| `{var.name}` | {default} | {var.type} | {var.doc} |")
    return "\n".join(rows)


def _check_fields() -> None:
    names = {f.name for f in fields(Settings)}
    declared = {_field(v) for v in VARIABLES}
    assert names == declared, names ^ declared


_check_fields()
