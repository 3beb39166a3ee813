"""dashapp's cluster settings in the Dask configuration, and the form defaults of each kind.

Importing this module adds ``dashapp.yaml`` (next to it) to Dask's configuration defaults under
the key ``dashapp``; a user's own Dask config overrides any of it. Which class a cluster kind
builds is configuration (``dashapp.clusters``: name -> class path), so a site adds
``oar: dask_jobqueue.OARCluster`` without code, and dask-jobqueue's own ``jobqueue.<name>``
sections (queue, account, walltime, ... of the site) give the initial values of the form.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import signal
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import dask.config
import yaml
from dask.utils import parse_timedelta

__all__ = [
    "CONNECT",
    "cluster_class",
    "cluster_kinds",
    "config_name",
    "defaults",
    "import_jobqueue",
    "is_jobqueue",
    "is_slurm",
    "json_safe",
    "lifetime_args",
    "parse_walltime",
    "setting_seconds",
]

#: The kind that attaches to a running scheduler instead of building a cluster.
CONNECT = "connect"

_YAML = Path(__file__).with_name("dashapp.yaml")

# dask-jobqueue config keys that are deprecated aliases (always null unless a user set them):
# offering them in a form would show two fields for one thing.
_DEPRECATED = {"extra", "env_extra", "job_extra", "header_skip", "project"}


def _load() -> None:
    with _YAML.open() as f:
        dask.config.update_defaults(yaml.safe_load(f))


_load()


_import_lock = threading.Lock()


def import_jobqueue() -> ModuleType | None:
    """Import dask_jobqueue (None if it is not installed) without it taking over Ctrl-C.

    dask_jobqueue.runner sets ``SIGINT -> sys.exit()`` when imported (meant for its runner
    processes): in a server that replaces the server's own handler, and outside the main
    thread (the manager's loop) ``signal.signal`` raises, so the import fails. The handler is
    kept as it was.
    """
    if "dask_jobqueue" in sys.modules:
        return sys.modules["dask_jobqueue"]
    with _import_lock:
        real = signal.signal
        previous = signal.getsignal(signal.SIGINT)

        def keep_sigint(signum, handler):  # type: ignore[no-untyped-def]
            if signum == signal.SIGINT:
                return previous
            return real(signum, handler)

        signal.signal = keep_sigint
        try:
            import dask_jobqueue
        except ImportError:
            return None
        finally:
            signal.signal = real
        return dask_jobqueue


def cluster_kinds() -> dict[str, str]:
    """The cluster kinds on offer: name -> class path (``connect`` maps to ``""``).

    Returns
    -------
    dict
        ``dashapp.clusters`` from the Dask configuration, plus ``connect``.
    """
    kinds = {str(k): str(v) for k, v in (dask.config.get("dashapp.clusters") or {}).items()}
    kinds[CONNECT] = ""
    return kinds


def cluster_class(kind: str) -> type:
    """Import the cluster class that ``kind`` names in ``dashapp.clusters``.

    Raises
    ------
    KeyError
        ``kind`` is not configured (or is ``connect``, which has no class).
    ImportError
        The configured class cannot be imported (e.g. dask-jobqueue is not installed).
    """
    path = cluster_kinds().get(kind)
    if not path:
        known = ", ".join(sorted(cluster_kinds()))
        raise KeyError(f"unknown cluster kind {kind!r}; known kinds: {known}")
    module, _, name = path.rpartition(".")
    import_jobqueue()  # first, and on our terms (a configured module may import it)
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"cluster kind {kind!r}: cannot import {path} ({exc})") from exc


def is_jobqueue(cls: type) -> bool:
    """Whether ``cls`` is a dask-jobqueue cluster (workers started as batch jobs)."""
    if import_jobqueue() is None:
        return False
    from dask_jobqueue.core import JobQueueCluster

    return isinstance(cls, type) and issubclass(cls, JobQueueCluster)


def is_slurm(cls: type) -> bool:
    """Whether ``cls`` submits its jobs to Slurm (so squeue and sbatch apply)."""
    if not is_jobqueue(cls):
        return False
    from dask_jobqueue.slurm import SLURMJob

    return issubclass(cls.job_cls, SLURMJob)


def config_name(cls: type) -> str | None:
    """The ``jobqueue.<name>`` section a dask-jobqueue class reads (None for other classes)."""
    if not is_jobqueue(cls):
        return None
    return cls.job_cls.default_config_name()


def _underscored(options: dict[str, Any]) -> dict[str, Any]:
    """Config keys as keyword names: Dask config is hyphenated, constructors are not."""
    return {str(k).replace("-", "_"): v for k, v in options.items()}


def defaults(kind: str) -> dict[str, Any]:
    """The initial values of the cluster form for ``kind``, JSON-safe.

    For dask-jobqueue kinds: the ``jobqueue.<name>`` section of the Dask config (cores, memory,
    processes, queue, account, walltime, job_extra_directives, job_script_prologue, interface,
    local_directory, log_directory, ...) as keyword names, overlaid with
    ``dashapp.defaults.<kind>``. For ``local``: n_workers, threads_per_worker, memory_limit.
    For ``connect``: address.

    Parameters
    ----------
    kind : str
        A name from :func:`cluster_kinds`.

    Returns
    -------
    dict
        Keyword options of the kind's cluster class.
    """
    own = _underscored(dict(dask.config.get(f"dashapp.defaults.{kind}", None) or {}))
    if kind == CONNECT:
        return json_safe({"address": "", **own})
    cls = cluster_class(kind)  # imports dask_jobqueue, which loads the jobqueue.* config
    out: dict[str, Any] = {}
    name = config_name(cls)
    if name is not None:
        section = _underscored(dict(dask.config.get(f"jobqueue.{name}", None) or {}))
        # jobqueue's ``name`` is the batch job's name: the class keyword for it is job_name.
        if "name" in section:
            section["job_name"] = section.pop("name")
        out.update({k: v for k, v in section.items() if k not in _DEPRECATED})
    elif _is_local(cls):
        out.update(_local_defaults(own))
    # A null in dashapp.defaults means "no opinion", not "erase jobqueue's value".
    out.update({k: v for k, v in own.items() if v is not None or k not in out})
    return json_safe(out)


def _is_local(cls: type) -> bool:
    from distributed import LocalCluster

    return isinstance(cls, type) and issubclass(cls, LocalCluster)


def _local_defaults(own: dict[str, Any]) -> dict[str, Any]:
    """Concrete numbers for the form, where the config leaves them to distributed."""
    from dask.system import CPU_COUNT
    from distributed.deploy.utils import nprocesses_nthreads

    n_workers, threads = nprocesses_nthreads(CPU_COUNT)
    return {
        "n_workers": own.get("n_workers") if own.get("n_workers") is not None else n_workers,
        "threads_per_worker": (
            own.get("threads_per_worker") if own.get("threads_per_worker") is not None else threads
        ),
        "memory_limit": own.get("memory_limit", "auto"),
    }


def setting_seconds(key: str, default: float) -> float:
    """A duration from ``dashapp.<key>`` in seconds (numbers are seconds; "2min" works too)."""
    value = dask.config.get(f"dashapp.{key}", default)
    return float(parse_timedelta(value if value is not None else default, default="seconds"))


# Time formats of the batch systems' walltime options.
_SLURM_TIME = re.compile(
    r"^(?:(?P<d>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?"  # D-H[:M[:S]]
    r"|(?P<a>\d+)(?::(?P<b>\d+)(?::(?P<c>\d+))?)?)$"  # M, M:S, H:M:S
)
_HMS = re.compile(r"^(?:(?:(?P<h>\d+):)?(?P<m>\d+):)?(?P<s>\d+)$")  # [[H:]M:]S (PBS, SGE, OAR)
_HM = re.compile(r"^(?:(?P<h>\d+):)?(?P<m>\d+)$")  # [H:]M (LSF)


def parse_walltime(text: str | int | None, scheduler: str = "slurm") -> int | None:
    """Seconds in a batch system's walltime string.

    Parameters
    ----------
    text : str or int or None
        ``"00:10:00"``, ``"1-12"``, ... as the batch system writes it; ints are taken as the
        batch system would (minutes for Slurm and LSF, seconds for the others).
    scheduler : str
        The jobqueue config name: ``slurm`` (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
        ``D-H:M:S``), ``lsf`` (``[H:]M``), anything else ``[[H:]M:]S``.

    Returns
    -------
    int or None
        None for an empty walltime.

    Raises
    ------
    ValueError
        The text is not a walltime of that batch system.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    s = str(text).strip()
    if scheduler == "slurm":
        m = _SLURM_TIME.match(s)
        if m:
            g = {k: int(v) for k, v in m.groupdict().items() if v is not None}
            if "d" in g:
                return g["d"] * 86400 + g["dh"] * 3600 + g.get("dm", 0) * 60 + g.get("ds", 0)
            if "c" in g:
                return g["a"] * 3600 + g["b"] * 60 + g["c"]
            return g["a"] * 60 + g.get("b", 0)
        hint = "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
    elif scheduler == "lsf":
        m = _HM.match(s)
        if m:
            return int(m["h"] or 0) * 3600 + int(m["m"]) * 60
        hint = "[HH:]MM"
    else:
        m = _HMS.match(s)
        if m:
            return int(m["h"] or 0) * 3600 + int(m["m"] or 0) * 60 + int(m["s"])
        hint = "[[HH:]MM:]SS"
    raise ValueError(f"walltime {s!r} is not a {scheduler} time: write it as {hint}")


def lifetime_args(walltime_s: int | None) -> list[str]:
    """``dask worker`` arguments that retire a worker gracefully before its job's walltime.

    The worker closes after ``lifetime`` +/- ``stagger`` seconds, handing its data to the
    others, instead of being killed mid-task by the queue. For long jobs the margin is 5
    minutes and the stagger 2 (workers started together do not all leave together); short
    walltimes get 10 % and 4 % of the walltime.

    Parameters
    ----------
    walltime_s : int or None
        The job's walltime in seconds.

    Returns
    -------
    list of str
        ``["--lifetime", "55m", "--lifetime-stagger", "2m"]`` style arguments, or ``[]``.
    """
    if not walltime_s or walltime_s < 60:
        return []
    margin = min(300, math.ceil(walltime_s * 0.1))
    stagger = math.floor(margin * 0.4)
    lifetime = walltime_s - margin
    return ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"]


def json_safe(value: Any) -> Any:
    """``value`` with tuples as lists, paths and other objects as strings, inf as None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [json_safe(v) for v in items]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return str(value)
