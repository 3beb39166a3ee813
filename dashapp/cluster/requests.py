"""Cluster requests: checking one, who may make it, and the batch script it would submit.

A request is the JSON-safe dict :class:`~dashapp.cluster.ClusterManager` takes
(``{"kind", "options", "workers" | "adapt"}``). Everything here runs before anything is
submitted: :func:`parse` checks the shape, :func:`effective_options` adds the site's defaults
and the walltime lifetime, :func:`dummy_job` builds the job dask-jobqueue would submit (for its
script), :func:`validate` asks ``sbatch --test-only``, and :func:`viewer_refusal` says what a
caller without the server's token may not set.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import dask.config

from . import slurm
from .config import (
    CONNECT,
    cluster_class,
    cluster_kinds,
    config_name,
    is_jobqueue,
    is_slurm,
    lifetime_args,
    parse_walltime,
)
from .errors import ClusterError

__all__ = [
    "VIEWER_OPTIONS",
    "Spec",
    "check_bounds",
    "dummy_job",
    "effective_options",
    "parse",
    "refuse_for_viewer",
    "validate",
    "viewer_refusal",
    "walltime_of",
]

# Options of JobQueueCluster itself; the rest are the Job's (used to build a script offline).
_CLUSTER_ONLY = {
    "n_workers",
    "loop",
    "security",
    "shared_temp_directory",
    "silence_logs",
    "name",
    "asynchronous",
    "dashboard_address",
    "host",
    "scheduler_options",
    "scheduler_cls",
    "protocol",
    "job_cls",
}


@dataclass
class Spec:
    """A checked cluster request (see :class:`~dashapp.cluster.ClusterManager` for the dict)."""

    kind: str
    options: dict[str, Any]
    workers: int | None
    adapt: dict[str, int] | None
    cls: type | None = None


def parse(spec: Any) -> Spec:
    """Check the shape of a request.

    Raises
    ------
    ClusterError
        Naming the first problem (unknown kind, options not a dict, a negative count, ...).
    """
    if not isinstance(spec, dict):
        raise ClusterError(f"a cluster request is a dict, not {type(spec).__name__}")
    kind = spec.get("kind")
    kinds = cluster_kinds()
    if kind not in kinds:
        raise ClusterError(
            f"unknown cluster kind {kind!r}; known kinds: {', '.join(sorted(kinds))}"
        )
    options = spec.get("options") or {}
    if not isinstance(options, dict):
        raise ClusterError("the cluster options must be a dict of keyword options")
    options = {str(k).replace("-", "_"): v for k, v in options.items()}
    workers = spec.get("workers")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 0
    ):
        raise ClusterError(f"workers must be a whole number >= 0, not {workers!r}")
    adapt = spec.get("adapt")
    if adapt is not None and not isinstance(adapt, dict):
        raise ClusterError("adapt must be None or {'minimum': ..., 'maximum': ...}")
    if adapt is not None:
        adapt = check_bounds(adapt.get("minimum", 0), adapt.get("maximum"))
    cls = None
    if kind != CONNECT:
        try:
            cls = cluster_class(kind)
        except (KeyError, ImportError) as exc:
            raise ClusterError(str(exc).strip("'\"")) from exc
    elif not str(options.get("address") or "").strip():
        raise ClusterError("connect needs the scheduler's address, e.g. tcp://host:8786")
    return Spec(kind, options, workers, adapt, cls)


def walltime_of(s: Spec, options: dict[str, Any]) -> int | None:
    """The job walltime in seconds (from the options or ``jobqueue.<name>.walltime``)."""
    name = config_name(s.cls)
    text = options.get("walltime") or dask.config.get(f"jobqueue.{name}.walltime", None)
    fmt = {"slurm": "slurm", "lsf": "lsf"}.get(name, "hms")
    if s.cls is not None and is_slurm(s.cls):
        fmt = "slurm"
    return parse_walltime(text, fmt)


def effective_options(s: Spec) -> dict[str, Any]:
    """Class options: ``dashapp.defaults.<kind>``, the request's, and the walltime lifetime."""
    own = dask.config.get(f"dashapp.defaults.{s.kind}", None) or {}
    options = {str(k).replace("-", "_"): copy.deepcopy(v) for k, v in own.items()}
    options.update(copy.deepcopy(s.options))
    options.pop("n_workers", None)  # the manager scales; n_workers is the form's count
    name = config_name(s.cls) if s.cls is not None else None
    if name is not None and dask.config.get("dashapp.retire-before-walltime", True):
        extra = options.get("worker_extra_args")
        if extra is None:
            extra = dask.config.get(f"jobqueue.{name}.worker-extra-args", None) or []
        extra = [str(a) for a in extra]
        if "--lifetime" not in extra:
            try:
                extra += lifetime_args(walltime_of(s, options))
            except ValueError as exc:
                raise ClusterError(str(exc)) from exc
        options["worker_extra_args"] = extra
    return options


def dummy_job(s: Spec) -> Any:
    """The Job dask-jobqueue would submit, built without a cluster (so no scheduler)."""
    options = effective_options(s)
    job_cls = s.cls.job_cls
    kwargs = {k: v for k, v in options.items() if k not in _CLUSTER_ONLY}
    name = kwargs.pop("config_name", None) or job_cls.default_config_name()
    if kwargs.get("interface") is None:
        kwargs["interface"] = dask.config.get(f"jobqueue.{name}.interface", None)
    try:
        return job_cls(
            "tcp://<scheduler-address>:8786",
            name="dummy-name",
            config_name=name,
            protocol=options.get("protocol"),
            **kwargs,
        )
    except TypeError as exc:
        raise ClusterError(f"{s.cls.__name__} does not take these options: {exc}") from exc
    except (ValueError, KeyError) as exc:
        raise ClusterError(f"{s.cls.__name__} options: {exc}") from exc


def job_script(spec: dict[str, Any]) -> str:
    """The batch script ``spec`` would submit (see :meth:`ClusterManager.job_script`)."""
    s = parse(spec)
    if s.cls is None or not is_jobqueue(s.cls):
        raise ClusterError(f"a {s.kind} cluster has no batch script")
    return dummy_job(s).job_script()


async def validate(spec: dict[str, Any]) -> list[str]:
    """Problems with ``spec`` found before anything is submitted, in words (see
    :meth:`ClusterManager.validate`)."""
    try:
        s = parse(spec)
    except ClusterError as exc:
        return [str(exc)]
    if s.cls is None or not is_jobqueue(s.cls):  # connect: checked when connecting
        return []
    try:
        walltime_of(s, s.options)
        script = dummy_job(s).job_script()
    except (ClusterError, ValueError) as exc:
        return [str(exc)]
    if is_slurm(s.cls):
        try:
            refused = await slurm.sbatch_test_only(script)
        except slurm.SlurmError as exc:
            refused = str(exc)
        if refused:
            return [refused]
    return []


def check_bounds(minimum: Any, maximum: Any) -> dict[str, Any]:
    """``{"minimum", "maximum"}`` of adaptive scaling, checked (ClusterError if not whole)."""

    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not whole(minimum) or (maximum is not None and not whole(maximum)):
        raise ClusterError(
            f"adaptive bounds must be whole numbers >= 0, not {minimum!r}..{maximum!r}"
        )
    if maximum is not None and maximum < minimum:
        raise ClusterError(f"adaptive minimum {minimum} is above the maximum {maximum}")
    return {"minimum": minimum, "maximum": maximum}


#: Options a caller who is not the server's owner may set: numbers and plain words that only
#: size or place the jobs. Everything else (directives, prologue, interface, folders, python,
#: worker arguments, ...) is written into a job script or a command line that a shell runs.
VIEWER_OPTIONS = frozenset(
    {"cores", "memory", "processes", "queue", "account", "walltime", "workers_per_job",
     "n_workers", "threads_per_worker", "memory_limit"}
)  # fmt: skip
#: What such an option's text may hold: no space, quote, newline or shell character.
_PLAIN = re.compile(r"[A-Za-z0-9_.:+-]{0,64}")


def viewer_refusal(spec: Any) -> str | None:
    """Why a caller who is not the server's owner may not make this request, or None.

    Viewers (sessions without the server's access token) may start a cluster with the site's
    settings (Dask configuration) and size it, but not set anything a shell runs, nor
    connect the server to another scheduler (its client unpickles what that sends).

    Parameters
    ----------
    spec : dict
        A cluster request (see :class:`~dashapp.cluster.ClusterManager`).

    Returns
    -------
    str or None
        The sentence to show, naming the refused options.
    """
    if not isinstance(spec, dict):
        return None  # parse() says what is wrong with it
    owner_only = "only the person who started this server (with its access token) can"
    if spec.get("kind") == CONNECT:
        return f"{owner_only} connect it to another Dask scheduler"
    options = spec.get("options") or {}
    if not isinstance(options, dict):
        return None
    refused = []
    for key, value in options.items():
        name = str(key).replace("-", "_")
        if value in (None, "", [], ()):  # nothing set: the site's settings apply
            continue
        plain = isinstance(value, (int, float)) and not isinstance(value, bool)
        plain = plain or (isinstance(value, str) and _PLAIN.fullmatch(value) is not None)
        if name not in VIEWER_OPTIONS or not plain:
            refused.append(name)
    if refused:
        return f"{owner_only} set {', '.join(sorted(refused))}"
    return None


def refuse_for_viewer(spec: Any) -> None:
    """Raise :class:`ClusterError` with :func:`viewer_refusal`'s sentence, if there is one."""
    refusal = viewer_refusal(spec)
    if refusal:
        raise ClusterError(f"{refusal[0].upper()}{refusal[1:]}; nothing was submitted")
