"""The cluster manager: start, scale, watch and stop one Dask cluster; plain dicts out.

Modelled on dask-labextension's ``manager.py``: async, knows nothing of the UI, and every
answer is a JSON-safe dict (:meth:`ClusterManager.info`) that a Panel pane, a notebook or a
REST handler can show as it is. Which class a cluster kind builds is Dask configuration
(``dashapp.clusters``), so dask-jobqueue's classes, or a site's own, are configuration.

One manager per server process (:data:`MANAGER`) runs its clusters on its own event loop in a
thread: the scheduler of a batch-queue cluster lives in this process, and must not stall (or
be stalled by) the web server's loop. Its ``async`` methods can be awaited from any loop
(several Panel sessions, a notebook); :meth:`ClusterManager.info` is synchronous and cheap.

What goes wrong on a batch system is reported in ``info()["errors"]``, in words, never only in
a log: a refused submission (sbatch's message), a job that runs but whose worker never
connects, a job that ended while its workers were needed (the worker is replaced on the next
scale), and a job that reached its walltime (its workers retire first and it is replaced).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import copy
import inspect
import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import dask.config
from distributed.core import Status, rpc

from ..errors import ClusterError
from . import slurm
from .config import (
    CONNECT,
    cluster_class,
    cluster_kinds,
    config_name,
    is_jobqueue,
    is_slurm,
    json_safe,
    lifetime_args,
    parse_walltime,
    setting_seconds,
)
from .siblings import OwnerGone, Siblings, server_group

__all__ = [
    "MANAGER",
    "STATUSES",
    "VIEWER_OPTIONS",
    "ClusterError",
    "ClusterManager",
    "viewer_refusal",
]

log = logging.getLogger(__name__)

#: The values of ``info()["status"]``.
STATUSES = ("none", "starting", "running", "stopping", "failed")

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

_T = TypeVar("_T")


@dataclass
class _Spec:
    """A checked cluster request (see :meth:`ClusterManager.start` for the dict form)."""

    kind: str
    options: dict[str, Any]
    workers: int | None
    adapt: dict[str, int] | None
    cls: type | None = None


@dataclass
class _Job:
    """What the manager knows of one batch job of its cluster."""

    job_id: str
    spec_name: str  # the job's key in the cluster's worker_spec
    workers: list[str]  # names its Dask workers take
    submitted: float = field(default_factory=time.monotonic)
    state: str = "SUBMITTED"
    name: str = ""
    time_left: str = ""
    time_left_s: int | None = None
    elapsed_s: int | None = None
    reason: str = ""
    connected: int = 0
    ever_connected: bool = False
    silent_error: str | None = None  # the "never connected" error, while it stands
    ended: bool = False


class ClusterManager:
    """Start, scale, watch and stop one Dask cluster at a time; every answer a plain dict.

    Create one per process (:data:`MANAGER`). Its coroutines may be awaited from any event
    loop and thread; the work runs on the manager's own loop.

    A cluster request (``spec``) is a JSON-safe dict::

        {"kind": "slurm",                       # a name of dashapp.clusters, or "connect"
         "options": {"cores": 4, "memory": "16GB", "walltime": "01:00:00", "queue": "debug"},
         "workers": 4,                          # scale to this many workers, or
         "adapt": {"minimum": 0, "maximum": 40}}  # adaptive scaling (instead of workers)

    ``options`` are the keyword options of the kind's class; what they leave out comes from
    ``dashapp.defaults.<kind>`` and, for dask-jobqueue classes, ``jobqueue.<name>``.

    The processes of one server (``panel serve --num-procs N``) share one cluster: the one
    that starts it owns it, the others show it and pass their requests on
    (:mod:`dashapp.cluster.siblings`). ``group`` names the folder through which they do;
    by default :func:`~dashapp.cluster.siblings.server_group` decides.
    """

    def __init__(self, group: str | os.PathLike[str] | None = None) -> None:
        self._group_arg = group
        self._group: tuple[int, Siblings | None] | None = None  # (pid it is for, group)
        self._serve_task: asyncio.Task | None = None
        self._answering: set[asyncio.Task] = set()
        self._thread_lock = threading.Lock()
        self._state_lock = threading.Lock()  # guards what info() reads from other threads
        self._client_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._op_lock: asyncio.Lock | None = None

        self._generation = 0
        self._status = "none"
        self._spec: _Spec | None = None
        self._options: dict[str, Any] = {}
        self._cluster: Any = None
        self._remote: Any = None  # rpc to a scheduler we connected to
        self._remote_address: str | None = None
        self._remote_dashboard: str | None = None
        self._client: Any = None
        self._watch_task: asyncio.Task | None = None
        self._adapt: dict[str, int] | None = None
        self._retire_window = 0  # seconds before the walltime at which workers may retire
        self._jobs: dict[str, _Job] = {}
        self._workers: list[dict[str, Any]] = []
        self._worker_names: set[str] = set()
        self._last_squeue = -math.inf
        self._errors: list[str] = []
        self._events: collections.deque[dict[str, str]] = collections.deque(maxlen=200)
        self._view: dict[str, Any] = {}
        self._publish()
        atexit.register(_stop_at_exit, weakref.ref(self))

    # ----------------------------------------------------------------------------- public

    def job_script(self, spec: dict[str, Any], privileged: bool = True) -> str:
        """The batch script that would be submitted for ``spec`` (nothing is submitted).

        Parameters
        ----------
        spec : dict
            A cluster request; its kind must be a dask-jobqueue class (for ``slurm-bulk``,
            the script starts all workers of the job with ``srun``).
        privileged : bool
            False for a caller who is not the server's owner (a viewer's session).

        Returns
        -------
        str
            The script, with ``tcp://<scheduler-address>:8786`` where the address will be.

        Raises
        ------
        ClusterError
            The kind has no batch script, or the options are not accepted (for a caller who
            is not the server's owner: any option that reaches a shell, :func:`viewer_refusal`).
        """
        if not privileged:
            _refuse_for_viewer(spec)
        s = self._parse(spec)
        if s.cls is None or not is_jobqueue(s.cls):
            raise ClusterError(f"a {s.kind} cluster has no batch script")
        return self._dummy_job(s).job_script()

    async def validate(self, spec: dict[str, Any], privileged: bool = True) -> list[str]:
        """Problems with ``spec`` found before anything is submitted, in words.

        Checks the kind, the numbers, the options (by building the job script), the walltime
        format, and for Slurm kinds asks ``sbatch --test-only`` whether the job could run.

        Parameters
        ----------
        spec : dict
            A cluster request.
        privileged : bool
            False for a caller who is not the server's owner (a viewer's session).

        Returns
        -------
        list of str
            Empty when nothing was found, e.g. ``["sbatch: error: Memory specification can not
            be satisfied; sbatch: error: Batch job submission failed: Requested node
            configuration is not available"]``.
        """
        refusal = None if privileged else viewer_refusal(spec)
        if refusal:
            return [refusal]
        return await self._on_loop(self._validate(spec))

    async def start(
        self, spec: dict[str, Any], replace: bool = False, privileged: bool = True
    ) -> dict[str, Any]:
        """Create the cluster of ``spec``, scale or adapt it as asked, and return :meth:`info`.

        Parameters
        ----------
        spec : dict
            A cluster request (see the class docstring).
        replace : bool
            Stop the running cluster first; without it, starting while one runs is an error.
        privileged : bool
            False for a caller who is not the server's owner (a viewer's session): then
            nothing that reaches a shell may be set (:func:`viewer_refusal`), and ``connect``
            is refused.

        Raises
        ------
        ClusterError
            ``spec`` has problems (:meth:`validate`), a viewer asked for a shell option, a
            cluster already runs, or the cluster did not start (the message is also in
            ``info()["errors"]``).
        """
        if not privileged:
            _refuse_for_viewer(spec)
        return await self._on_loop(self._start(spec, replace))

    async def connect(
        self, address: str, replace: bool = False, privileged: bool = True
    ) -> dict[str, Any]:
        """Attach to a running Dask scheduler by its address (kind ``connect``).

        Its workers are shown; it cannot be scaled from here, and :meth:`stop` only detaches.
        """
        spec = {"kind": CONNECT, "options": {"address": address}}
        return await self.start(spec, replace, privileged=privileged)

    async def scale(self, n: int) -> dict[str, Any]:
        """Ask for ``n`` workers (adaptive scaling stops); jobs are submitted or cancelled.

        For batch-queue clusters, ``n`` is rounded up to whole jobs. A worker lost with its
        job is replaced here.
        """
        return await self._on_loop(self._scale(n=n))

    async def scale_jobs(self, n: int) -> dict[str, Any]:
        """Ask for ``n`` batch jobs (dask-jobqueue clusters only); adaptive scaling stops."""
        return await self._on_loop(self._scale(jobs=n))

    async def adapt(self, minimum: int = 0, maximum: int | None = None) -> dict[str, Any]:
        """Scale between ``minimum`` and ``maximum`` workers with the load (Dask's Adaptive).

        The interval and patience come from ``distributed.adaptive.*`` in the Dask config.
        """
        return await self._on_loop(self._adapt_cluster(minimum, maximum))

    async def stop(self) -> dict[str, Any]:
        """Close the cluster and the client; wait (``dashapp.stop-timeout``) for its jobs to
        leave the queue. A connected scheduler is only detached from, not shut down."""
        return await self._on_loop(self._stop())

    async def wait_for_workers(self, n: int, timeout: float = 120) -> dict[str, Any]:
        """Wait until ``n`` workers are connected; return :meth:`info`.

        Raises
        ------
        TimeoutError
            Fewer workers after ``timeout`` seconds; the message lists ``info()["errors"]``.
        ClusterError
            No cluster is running.
        """
        return await self._on_loop(self._wait_for_workers(n, timeout))

    @property
    def client(self) -> Any:
        """A ``distributed.Client`` (synchronous) on the cluster, for submitting work.

        Made on first use and closed by :meth:`stop`. It is not set as Dask's default client,
        so that the app's own local computations stay local; use
        ``dask.config.set(scheduler=manager.client)`` or ``client.compute`` to send work.
        """
        view = self.info()
        address = view.get("scheduler_address")
        if view.get("status") != "running" or not address:
            raise ClusterError("no cluster is running: start one first")
        if threading.current_thread() is self._thread:
            raise ClusterError("the synchronous client cannot be made on the manager's loop")
        with self._client_lock:
            client = self._client
            if (
                client is None
                or client.status in ("closing", "closed")
                or (client.scheduler.address != address)
            ):
                from distributed import Client

                security = getattr(self._cluster, "security", None)
                client = Client(address, security=security, set_as_default=False, timeout=30)
                self._client = client
            return client

    def info(self) -> dict[str, Any]:
        """The state of the cluster as a JSON-safe dict (cheap: no command is run).

        Returns
        -------
        dict
            ``status`` (one of :data:`STATUSES`), ``kind``, ``options``,
            ``scheduler_address``, ``dashboard_link``, ``workers`` (``name``, ``address``,
            ``host``, ``nthreads``, ``memory``, ``memory_limit``, ``cpu``, ``executing``,
            ``in_memory``, ``ready``, ``status``, ``job_id``), ``jobs`` (``job_id``, ``state``
            as Slurm says it, ``name``, ``time_left``, ``time_left_s``, ``workers``,
            ``connected``, ``reason``), ``requested_workers``, ``adapt``
            (``{"minimum", "maximum"}`` or None), ``errors`` (str), ``events`` (``time``,
            ``text``) and ``walltime_left_s`` (the first running job's time left, or None).
            Jobs and workers are refreshed every ``dashapp.poll-interval`` seconds.
        """
        with self._state_lock:
            view = copy.deepcopy(self._view)
            view["errors"] = list(self._errors)
            view["events"] = [dict(e) for e in self._events]
        if self._status in ("none", "failed"):
            sib = self._siblings()
            if sib is not None:
                theirs, gone = sib.owner_info()
                if theirs is not None:
                    return theirs  # another process of this server runs the cluster
                if gone and gone not in view["errors"]:
                    view["errors"].append(gone)
        return view

    def close(self) -> None:
        """Stop the cluster (if any) and the manager's event loop thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        if self._status != "none":
            fut = asyncio.run_coroutine_threadsafe(self._stop(), loop)
            fut.result(timeout=setting_seconds("stop-timeout", 60) + 60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        with self._thread_lock:
            self._loop = self._thread = self._op_lock = None

    # ------------------------------------------------------------------ loop plumbing

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._thread_lock:
            if self._loop is not None and self._thread is not None and self._thread.is_alive():
                return self._loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=run, name="dashapp-cluster-manager", daemon=True)
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread
            self._op_lock = asyncio.Lock()
            return loop

    async def _on_loop(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the manager's loop and await it from the caller's loop."""
        loop = self._ensure_loop()
        if asyncio.get_running_loop() is loop:
            return await coro
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        # shield: a closed browser tab must not cancel a half-done start or stop
        return await asyncio.shield(asyncio.wrap_future(future))

    # ---------------------------------------------------------------------- requests

    def _parse(self, spec: dict[str, Any]) -> _Spec:
        """Check the shape of a request; raise ClusterError naming the first problem."""
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
            adapt = _check_bounds(adapt.get("minimum", 0), adapt.get("maximum"))
        cls = None
        if kind != CONNECT:
            try:
                cls = cluster_class(kind)
            except (KeyError, ImportError) as exc:
                raise ClusterError(str(exc).strip("'\"")) from exc
        elif not str(options.get("address") or "").strip():
            raise ClusterError("connect needs the scheduler's address, e.g. tcp://host:8786")
        return _Spec(kind, options, workers, adapt, cls)

    def _effective_options(self, s: _Spec) -> dict[str, Any]:
        """Class options: dashapp.defaults.<kind>, the request's, and the walltime lifetime."""
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
                    extra += lifetime_args(self._walltime(s, options))
                except ValueError as exc:
                    raise ClusterError(str(exc)) from exc
            options["worker_extra_args"] = extra
        return options

    @staticmethod
    def _walltime(s: _Spec, options: dict[str, Any]) -> int | None:
        name = config_name(s.cls)
        text = options.get("walltime") or dask.config.get(f"jobqueue.{name}.walltime", None)
        fmt = {"slurm": "slurm", "lsf": "lsf"}.get(name, "hms")
        if s.cls is not None and is_slurm(s.cls):
            fmt = "slurm"
        return parse_walltime(text, fmt)

    def _dummy_job(self, s: _Spec) -> Any:
        """The Job dask-jobqueue would submit, built without a cluster (so no scheduler)."""
        options = self._effective_options(s)
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

    async def _validate(self, spec: dict[str, Any]) -> list[str]:
        try:
            s = self._parse(spec)
        except ClusterError as exc:
            return [str(exc)]
        if s.cls is None:  # connect: reachability is checked when connecting
            return []
        if not is_jobqueue(s.cls):
            return []
        try:
            self._walltime(s, s.options)
            script = self._dummy_job(s).job_script()
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

    # ------------------------------------------------------------------- operations

    async def _start(self, spec: dict[str, Any], replace: bool) -> dict[str, Any]:
        assert self._op_lock is not None
        async with self._op_lock:
            theirs = self._sibling_cluster()
            if theirs is not None and not replace:
                raise ClusterError(
                    f"a {theirs.get('kind') or ''} cluster is already running "
                    f"({theirs.get('scheduler_address')}), started from server process "
                    f"{theirs.get('owner_pid')}: stop it first, or replace it"
                )
            if theirs is not None:
                return await self._forward("start", [spec, True], _op_timeout("start"))
            if self._status in ("starting", "running", "stopping") and not replace:
                raise ClusterError(
                    f"a {self._spec.kind if self._spec else ''} cluster is already running "
                    f"({self._view.get('scheduler_address')}): stop it first, or replace it"
                )
            problems = await self._validate(spec)
            if problems:
                raise ClusterError("; ".join(problems))
            s = self._parse(spec)
            if not self._claim():  # another process of this server started one meanwhile
                return await self._forward("start", [spec, True], _op_timeout("start"))
            if self._status != "none":
                await self._stop_locked()
            self._reset(s)
            self._set_status("starting")
            self._event(f"starting a {s.kind} cluster")
            try:
                if s.cls is None:
                    await self._connect_remote(str(s.options["address"]).strip())
                else:
                    await self._create(s)
                    if s.adapt is not None:
                        await self._adapt_locked(s.adapt["minimum"], s.adapt["maximum"])
                    elif s.workers:
                        await self._scale_locked(s.workers, None)
            except Exception as exc:
                message = f"the {s.kind} cluster did not start: {_reason(exc)}"
                self._error(message)
                await self._teardown()
                self._set_status("failed")
                self._release()
                raise ClusterError(message) from exc
            self._set_status("running")
            self._event(f"{s.kind} cluster running, scheduler {self._address()}")
            self._watch_task = asyncio.ensure_future(self._watch(self._generation))
            await self._refresh(force=True)
            return self.info()

    async def _create(self, s: _Spec) -> None:
        kwargs = self._options = self._effective_options(s)
        kwargs = dict(kwargs)
        if is_jobqueue(s.cls):
            kwargs["job_cls"] = self._reporting_job_cls(s.cls.job_cls, self._generation)
            window = lifetime_args(self._walltime(s, kwargs))
            if window:  # margin + stagger: when the first worker may retire
                lifetime, stagger = (int(window[i].rstrip("s")) for i in (1, 3))
                self._retire_window = self._walltime(s, kwargs) - lifetime + stagger
        if "n_workers" in inspect.signature(s.cls).parameters:
            kwargs["n_workers"] = 0
        self._cluster = s.cls(asynchronous=True, **kwargs)
        await self._cluster

    async def _connect_remote(self, address: str) -> None:
        if "://" not in address:
            address = f"tcp://{address}"
        comm = rpc(address)
        try:
            identity = await asyncio.wait_for(comm.identity(n_workers=0), 15)
        except Exception as exc:
            await comm.close_rpc()
            raise ClusterError(f"no Dask scheduler answered at {address} ({exc})") from exc
        self._remote, self._remote_address = comm, identity.get("address") or address
        port = (identity.get("services") or {}).get("dashboard")
        if port:
            from distributed.utils import format_dashboard_link, get_address_host

            host = get_address_host(self._remote_address)
            self._remote_dashboard = format_dashboard_link(host, port)

    def _require_cluster(self, what: str) -> Any:
        if self._status != "running":
            raise ClusterError(f"cannot {what}: no cluster is running")
        if self._cluster is None:
            raise ClusterError(f"cannot {what} a scheduler that dashapp connected to")
        return self._cluster

    async def _scale(self, n: int | None = None, jobs: int | None = None) -> dict[str, Any]:
        assert self._op_lock is not None
        async with self._op_lock:
            if self._sibling_cluster() is not None:
                return await self._forward("scale", [n, jobs], _op_timeout("scale"))
            cluster = self._require_cluster("scale")
            count = n if n is not None else jobs
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ClusterError(f"scale needs a whole number >= 0, not {count!r}")
            if jobs is not None and not is_jobqueue(type(cluster)):
                raise ClusterError("only batch-queue clusters are scaled in jobs")
            await self._scale_locked(n, jobs)
            await self._refresh(force=True)
            return self.info()

    async def _scale_locked(self, n: int | None, jobs: int | None) -> None:
        cluster = self._cluster
        if cluster._adaptive is not None:
            cluster._adaptive.stop(reason="scaled by hand")
        if self._adapt is not None:
            self._event("adaptive scaling off")
        self._adapt = None
        if jobs is not None:
            cluster.scale(jobs=jobs)
            self._event(
                f"scaled to {_plural(jobs, 'job')} ({_plural(len(cluster.plan), 'worker')})"
            )
        else:
            cluster.scale(n)
            self._event(f"scaled to {_plural(n, 'worker')}")
        await cluster  # submits the jobs (or starts local workers) before answering

    async def _adapt_cluster(self, minimum: int, maximum: int | None) -> dict[str, Any]:
        assert self._op_lock is not None
        async with self._op_lock:
            if self._sibling_cluster() is not None:
                return await self._forward("adapt", [minimum, maximum], _op_timeout("scale"))
            self._require_cluster("adapt")
            bounds = _check_bounds(minimum, maximum)
            await self._adapt_locked(bounds["minimum"], bounds["maximum"])
            await self._refresh(force=True)
            return self.info()

    async def _adapt_locked(self, minimum: int, maximum: int | None) -> None:
        cluster = self._cluster
        adaptive = cluster.adapt(
            minimum=minimum, maximum=maximum if maximum is not None else math.inf
        )
        top = adaptive.maximum if math.isfinite(adaptive.maximum) else None
        self._adapt = {"minimum": int(adaptive.minimum), "maximum": top}
        self._event(
            f"adaptive scaling between {self._adapt['minimum']} and "
            f"{top if top is not None else 'any number of'} workers"
        )

    async def _stop(self) -> dict[str, Any]:
        assert self._op_lock is not None
        async with self._op_lock:
            if self._sibling_cluster() is not None:
                return await self._forward("stop", [], _op_timeout("stop"))
            if self._status != "none":
                await self._stop_locked()
            self._release()
            return self.info()

    async def _stop_locked(self) -> None:
        self._set_status("stopping")
        self._event("stopping the cluster")
        await self._teardown()
        self._cluster = self._remote = None
        self._set_status("none")
        self._event("stopped")

    async def _teardown(self) -> None:
        """Close the watch, the client, the cluster; wait for its jobs to leave the queue."""
        task, self._watch_task = self._watch_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(_quietly, client.close)
        self._adapt = None
        timeout = setting_seconds("stop-timeout", 60)
        cluster = self._cluster
        if cluster is not None:
            try:
                await asyncio.wait_for(cluster.close(), timeout)
            except Exception as exc:
                self._error(f"the cluster did not close cleanly: {_reason(exc)}")
            if self._jobs and is_slurm(type(cluster)):
                await self._wait_jobs_gone(timeout)
        if self._remote is not None:
            await self._remote.close_rpc()
            self._remote = None
        self._workers, self._worker_names = [], set()
        self._jobs = {}  # those still queued after the timeout are named in the errors
        self._publish()

    async def _wait_jobs_gone(self, timeout: float) -> None:
        ids = set(self._jobs)
        closing = sum(not rec.ended for rec in self._jobs.values())
        deadline = time.monotonic() + timeout
        while True:
            try:
                queue = await slurm.squeue(ids)
            except slurm.SlurmError as exc:
                self._error(str(exc))
                return
            left = {j for j, q in queue.items() if q.state not in slurm.ENDED_STATES}
            for job_id, rec in self._jobs.items():
                if job_id in queue:
                    rec.state = queue[job_id].state
                elif not rec.ended:
                    rec.ended, rec.state = True, "ENDED"
            self._publish()
            if not left:
                if closing:
                    self._event(f"{_plural(closing, 'job')} left the queue")
                self._jobs.clear()
                return
            if time.monotonic() > deadline:
                self._error(
                    f"jobs {', '.join(sorted(left))} still in the queue after {timeout:g} s"
                )
                return
            await asyncio.sleep(1)

    async def _wait_for_workers(self, n: int, timeout: float) -> dict[str, Any]:
        if self._sibling_cluster() is not None:
            return await self._forward("wait", [n, timeout], timeout + 30)
        deadline = time.monotonic() + timeout
        while True:
            comm = self._scheduler_comm()
            if comm is None:
                raise ClusterError("no cluster is running: start one first")
            identity = await comm.identity(n_workers=0)
            have = int(identity.get("n_workers", 0))
            if have >= n:
                await self._refresh(force=True)
                return self.info()
            if time.monotonic() > deadline:
                problems = "; ".join(self._errors) or "no error reported"
                raise TimeoutError(
                    f"{have} of {n} workers connected after {timeout:g} s ({problems})"
                )
            await asyncio.sleep(0.25)

    # ------------------------------------------------------------- job bookkeeping

    def _reporting_job_cls(self, base: type, generation: int) -> type:
        """``base`` (a dask-jobqueue Job) telling this manager about every submission.

        dask-jobqueue submits in a background task and only logs a refused submission; the
        subclass hands the message to the manager, which puts it in ``info()["errors"]``.
        """
        manager = weakref.ref(self)

        async def start(job: Any) -> None:
            try:
                await base.start(job)
            except Exception as exc:
                m = manager()
                if m is not None:
                    m._submit_failed(generation, job, exc)
                # Recorded, and the job removed from the cluster's spec: keep SpecCluster from
                # raising in a task nobody awaits (it expects a started job here).
                job.job_id = None
                job.status = Status.running
                return
            m = manager()
            if m is not None:
                m._submitted(generation, job)

        async def close(job: Any) -> None:
            await base.close(job)
            job.status = Status.closed  # SpecCluster checks that every job it made is closed

        return type(base.__name__, (base,), {"start": start, "close": close})

    def _submitted(self, generation: int, job: Any) -> None:
        if generation != self._generation or job.job_id is None:
            return
        names = self._worker_names_of(job.name)
        self._jobs[str(job.job_id)] = _Job(str(job.job_id), str(job.name), names)
        self._event(f"job {job.job_id} submitted ({_plural(len(names), 'worker')})")
        self._publish()

    def _submit_failed(self, generation: int, job: Any, exc: Exception) -> None:
        if generation != self._generation:
            return
        command = str(getattr(job, "submit_command", "") or "submission").split()[0]
        self._error(f"{command} failed: {slurm.sbatch_error(str(exc))}")
        cluster = self._cluster
        if cluster is not None:
            cluster.worker_spec.pop(job.name, None)  # not counted; the next scale retries
        self._publish()

    def _worker_names_of(self, spec_name: Any) -> list[str]:
        cluster = self._cluster
        spec = cluster.worker_spec.get(spec_name) or cluster.new_spec or {}
        group = spec.get("group")
        if group:
            return [f"{spec_name}{suffix}" for suffix in group]
        return [str(spec_name)]

    # ---------------------------------------------------------------------- watching

    async def _watch(self, generation: int) -> None:
        while generation == self._generation:
            await asyncio.sleep(setting_seconds("poll-interval", 2))
            try:
                await self._refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cluster refresh failed", exc_info=True)
                self._event(f"could not refresh the cluster state: {_reason(exc)}")

    def _scheduler_comm(self) -> Any:
        if self._cluster is not None:
            return self._cluster.scheduler_comm
        return self._remote

    async def _refresh(self, force: bool = False) -> None:
        """Workers from the scheduler, jobs from the queue, then the checks on them."""
        if self._status not in ("running", "starting"):
            return
        await self._refresh_workers()
        cluster = self._cluster
        if cluster is not None and is_jobqueue(type(cluster)):
            if is_slurm(type(cluster)):
                interval = setting_seconds("poll-interval", 2)
                if force or time.monotonic() - self._last_squeue >= 0.9 * interval:
                    await self._refresh_slurm_jobs()
            else:
                self._refresh_other_jobs()
            self._check_silent_jobs()
        self._publish()

    async def _refresh_workers(self) -> None:
        comm = self._scheduler_comm()
        if comm is None:
            return
        identity = await asyncio.wait_for(comm.identity(n_workers=-1), 15)
        job_of = {
            w: rec.job_id for rec in self._jobs.values() if not rec.ended for w in rec.workers
        }
        workers = []
        for address, w in (identity.get("workers") or {}).items():
            metrics = w.get("metrics") or {}
            counts = metrics.get("task_counts") or {}
            name = str(w.get("name", address))
            workers.append(
                {
                    "name": name,
                    "address": address,
                    "host": w.get("host"),
                    "nthreads": w.get("nthreads"),
                    "memory": metrics.get("memory"),
                    "memory_limit": w.get("memory_limit"),
                    "cpu": metrics.get("cpu"),
                    "executing": counts.get("executing", 0),
                    "in_memory": counts.get("memory", 0),
                    "ready": counts.get("ready", 0) + counts.get("constrained", 0),
                    "status": w.get("status"),
                    "job_id": job_of.get(name),
                }
            )
        workers.sort(key=lambda w: _natural(w["name"]))
        names = {w["name"] for w in workers}
        for name in sorted(names - self._worker_names, key=_natural):
            self._event(f"worker {name} connected")
        for name in sorted(self._worker_names - names, key=_natural):
            self._event(f"worker {name} left")
        self._workers, self._worker_names = workers, names

    async def _refresh_slurm_jobs(self) -> None:
        asked = time.monotonic()
        try:
            queue = await slurm.squeue({rec.job_id for rec in self._jobs.values()})
        except slurm.SlurmError as exc:
            self._error(str(exc))
            return
        self._last_squeue = time.monotonic()
        for rec in list(self._jobs.values()):
            if rec.ended:
                continue
            q = queue.get(rec.job_id)
            if q is None and rec.submitted > asked:
                continue  # submitted while squeue ran
            if q is not None:
                if q.state == "RUNNING" and rec.state != "RUNNING":
                    self._event(f"job {rec.job_id} running")
                rec.state, rec.name, rec.reason = q.state, q.name, q.reason
                rec.time_left, rec.time_left_s, rec.elapsed_s = (
                    q.time_left,
                    q.time_left_s,
                    q.elapsed_s,
                )
                if q.state not in slurm.ENDED_STATES:
                    continue
            rec.ended = True
            await self._job_ended(rec, q.state if q is not None else None)
        # Ended jobs stay known until stop (for the queue check); only their ids are kept.

    def _refresh_other_jobs(self) -> None:
        """No queue query for other batch systems: jobs are what the cluster holds."""
        current = {
            str(j.job_id) for j in self._cluster.workers.values() if getattr(j, "job_id", None)
        }
        for job_id in list(self._jobs):
            if job_id not in current:
                del self._jobs[job_id]
        for rec in self._jobs.values():
            rec.state = "UNKNOWN"

    async def _job_ended(self, rec: _Job, state: str | None) -> None:
        cluster = self._cluster
        wanted = (
            self._status == "running"
            and cluster is not None
            and (rec.spec_name in cluster.worker_spec)
        )
        how = state.lower() if state else "cancelled or failed"
        if not wanted:
            self._event(f"job {rec.job_id} left the queue ({how})")
            return
        at_walltime = state == "TIMEOUT" or (
            self._retire_window
            and rec.time_left_s is not None
            and rec.time_left_s <= self._retire_window + 3 * setting_seconds("poll-interval", 2)
        )
        lost = (
            f"its worker {rec.workers[0]} was lost"
            if len(rec.workers) == 1
            else f"its {len(rec.workers)} workers were lost"
        )
        async with cluster._lock:
            job = cluster.workers.get(rec.spec_name)
            if job is None or str(job.job_id) == rec.job_id:
                # Forget the job under a new name, so that neither SpecCluster's own
                # lost-worker timer nor a late message closes the job replacing it.
                cluster.worker_spec.pop(rec.spec_name, None)
                if job is not None:
                    del cluster.workers[rec.spec_name]
                    await job.close()
                cluster.worker_spec.update(self._fresh_worker_spec(cluster))
        if at_walltime:
            self._event(f"job {rec.job_id} reached its walltime ({lost}); submitting a new job")
            await cluster
        else:
            self._error(f"job {rec.job_id} ended ({how}); {lost}; the next scale replaces it")

    def _fresh_worker_spec(self, cluster: Any) -> dict[str, Any]:
        used = {rec.spec_name for rec in self._jobs.values()} | set(map(str, cluster.workers))
        used |= set(map(str, cluster.worker_spec))
        while str(cluster._new_worker_name(cluster._i)) in used:
            cluster._i += 1
        return cluster.new_worker_spec()

    def _check_silent_jobs(self) -> None:
        """A job running past ``dashapp.worker-timeout`` without its worker is reported."""
        timeout = setting_seconds("worker-timeout", 120)
        for rec in self._jobs.values():
            if rec.ended:
                continue
            rec.connected = sum(name in self._worker_names for name in rec.workers)
            if rec.connected:
                rec.ever_connected = True
                if rec.silent_error is not None:
                    with self._state_lock:
                        if rec.silent_error in self._errors:
                            self._errors.remove(rec.silent_error)
                    rec.silent_error = None
                    self._event(f"the worker of job {rec.job_id} connected after all")
                continue
            if (
                rec.state == "RUNNING"
                and not rec.ever_connected
                and rec.silent_error is None
                and rec.elapsed_s is not None
                and rec.elapsed_s > timeout
            ):
                rec.silent_error = (
                    f"job {rec.job_id} has been running for {rec.elapsed_s} s but its worker "
                    f"has not connected to the scheduler at {self._address()}{self._log_hint(rec)}"
                )
                self._error(rec.silent_error)

    def _log_hint(self, rec: _Job) -> str:
        """Where the job's output is, and its last error line if there is one."""
        directory = self._options.get("log_directory")
        if directory is None and self._cluster is not None:
            name = config_name(type(self._cluster))
            directory = dask.config.get(f"jobqueue.{name}.log-directory", None)
        if not directory:
            return f"; see slurm-{rec.job_id}.out where the job was submitted"
        err = Path(directory) / f"{rec.name or 'worker'}-{rec.job_id}.err"
        hint = f"; see {err}"
        try:
            lines = [ln for ln in err.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        return f"{hint} (last line: {lines[-1].strip()[:200]})" if lines else hint

    # ------------------------------------------------- the other processes of a server

    def _siblings(self) -> Siblings | None:
        """This process's group (see :mod:`.siblings`), decided once per process (a server
        may import dashapp before it forks its children)."""
        pid = os.getpid()
        if self._group is None or self._group[0] != pid:
            folder = self._group_arg if self._group_arg is not None else server_group()
            self._group = (pid, Siblings(folder) if folder else None)
        return self._group[1]

    def _sibling_cluster(self) -> dict[str, Any] | None:
        """The info() of the cluster another process of the group runs, if this one runs
        none; else None."""
        if self._status not in ("none", "failed"):
            return None
        sib = self._siblings()
        return sib.owner_info()[0] if sib is not None else None

    def _claim(self) -> bool:
        """Own the group's cluster (True without a group); start answering the others."""
        sib = self._siblings()
        if sib is None or sib.owning:
            return True
        if not sib.claim():
            return False
        self._serve_task = asyncio.ensure_future(self._serve_siblings(sib))
        return True

    def _release(self) -> None:
        sib = self._siblings()
        if sib is None or not sib.owning:
            return
        sib.release()
        task, self._serve_task = self._serve_task, None
        if task is not None:
            task.cancel()

    def _share(self) -> None:
        """Publish info() to the group while owning its cluster."""
        group = self._group
        sib = group[1] if group is not None and group[0] == os.getpid() else None
        if sib is not None and sib.owning:
            try:
                sib.publish(self.info())
            except OSError:
                log.warning("could not publish the cluster state", exc_info=True)

    async def _forward(self, op: str, args: list[Any], timeout: float) -> dict[str, Any]:
        """Have the owning process do ``op``; its answer, or its error raised here."""
        sib = self._siblings()
        assert sib is not None
        try:
            reply = await sib.request(op, args, timeout)
        except (OwnerGone, TimeoutError) as exc:
            raise ClusterError(str(exc)) from exc
        if "error" in reply:
            kind = TimeoutError if reply.get("type") == "TimeoutError" else ClusterError
            raise kind(reply["error"])
        return self.info()

    async def _serve_siblings(self, sib: Siblings) -> None:
        """The owner's side: answer the group's requests while owning."""
        while sib.owning:
            for rid, request in sib.take_requests():
                task = asyncio.ensure_future(self._answer(sib, rid, request))
                self._answering.add(task)  # (a task nobody refers to may be collected)
                task.add_done_callback(self._answering.discard)
            await asyncio.sleep(0.05)

    async def _answer(self, sib: Siblings, rid: str, request: dict[str, Any]) -> None:
        op, args = request.get("op"), list(request.get("args") or [])
        ops = {
            "start": self._start,
            "scale": lambda n, jobs: self._scale(n=n, jobs=jobs),
            "adapt": self._adapt_cluster,
            "stop": self._stop,
            "wait": self._wait_for_workers,
        }
        try:
            if op not in ops:
                raise ClusterError(f"unknown cluster request {op!r}")
            self._event(f"{op} asked by server process {request.get('from')}")
            reply: dict[str, Any] = {"info": await ops[op](*args)}
        except (ClusterError, TimeoutError) as exc:
            reply = {"error": str(exc), "type": type(exc).__name__}
        except Exception as exc:
            reply = {"error": _reason(exc), "type": "ClusterError"}
        sib.answer(rid, reply)

    # ------------------------------------------------------------------------- state

    def _reset(self, s: _Spec) -> None:
        self._generation += 1
        self._spec = s
        self._options = dict(s.options)
        self._cluster = self._remote = None
        self._remote_address = self._remote_dashboard = None
        self._adapt = None
        self._retire_window = 0
        self._jobs = {}
        self._workers, self._worker_names = [], set()
        self._last_squeue = -math.inf
        with self._state_lock:
            self._errors = []
            self._events.clear()

    def _set_status(self, status: str) -> None:
        assert status in STATUSES
        self._status = status
        self._publish()

    def _event(self, text: str) -> None:
        now = datetime.now().isoformat(timespec="seconds")
        with self._state_lock:
            if self._events and self._events[-1]["text"] == text:
                self._events[-1]["time"] = now  # a repeated message once, with its last time
            else:
                self._events.append({"time": now, "text": text})
        log.info("%s", text)
        self._share()

    def _error(self, text: str) -> None:
        with self._state_lock:
            if text not in self._errors:
                self._errors.append(text)
        self._event(text)

    def _address(self) -> str | None:
        if self._cluster is not None:
            try:
                return self._cluster.scheduler_address
            except Exception:
                return None
        return self._remote_address

    def _publish(self) -> None:
        """Rebuild the dict info() returns (on the manager's loop)."""
        cluster = self._cluster
        dashboard = self._remote_dashboard
        requested = None
        if cluster is not None:
            try:
                dashboard = cluster.dashboard_link
            except Exception:
                dashboard = None
            requested = len(cluster.plan)
        jobs = [
            {
                "job_id": rec.job_id,
                "state": rec.state,
                "name": rec.name,
                "time_left": rec.time_left,
                "time_left_s": rec.time_left_s,
                "workers": list(rec.workers),
                "connected": rec.connected,
                "reason": rec.reason,
            }
            for rec in self._jobs.values()
            if not rec.ended
        ]
        left = [j["time_left_s"] for j in jobs if j["state"] == "RUNNING" and j["time_left_s"]]
        view = {
            "status": self._status,
            "kind": self._spec.kind if self._spec and self._status != "none" else None,
            "options": json_safe(self._options) if self._status != "none" else {},
            "scheduler_address": self._address() if self._status != "none" else None,
            "dashboard_link": dashboard if self._status != "none" else None,
            "workers": copy.deepcopy(self._workers),
            "jobs": jobs,
            "requested_workers": requested,
            "adapt": dict(self._adapt) if self._adapt else None,
            "walltime_left_s": min(left) if left else None,
        }
        with self._state_lock:
            self._view = json_safe(view)
        self._share()


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
        A cluster request (see :class:`ClusterManager`).

    Returns
    -------
    str or None
        The sentence to show, naming the refused options.
    """
    if not isinstance(spec, dict):
        return None  # _parse says what is wrong with it
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


def _refuse_for_viewer(spec: Any) -> None:
    refusal = viewer_refusal(spec)
    if refusal:
        raise ClusterError(f"{refusal[0].upper()}{refusal[1:]}; nothing was submitted")


def _op_timeout(op: str) -> float:
    """Seconds a process waits for the owner of the cluster to do ``op``."""
    stop = setting_seconds("stop-timeout", 60)
    return {"start": 2 * stop + 300, "stop": stop + 60}.get(op, stop + 120)


def _check_bounds(minimum: Any, maximum: Any) -> dict[str, Any]:
    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not whole(minimum) or (maximum is not None and not whole(maximum)):
        raise ClusterError(
            f"adaptive bounds must be whole numbers >= 0, not {minimum!r}..{maximum!r}"
        )
    if maximum is not None and maximum < minimum:
        raise ClusterError(f"adaptive minimum {minimum} is above the maximum {maximum}")
    return {"minimum": minimum, "maximum": maximum}


def _reason(exc: BaseException) -> str:
    """The most telling message in an exception chain (distributed wraps them)."""
    messages = []
    while exc is not None:
        text = str(exc).strip()
        if text and text not in messages:
            messages.append(text)
        exc = exc.__cause__ or exc.__context__
    if not messages:
        return "unknown error"
    return slurm.sbatch_error(messages[-1]) if "stderr:" in messages[-1] else messages[-1]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _natural(name: str) -> tuple:
    """Sort key: "w-10" after "w-9"."""
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(name)))


def _quietly(func: Any) -> None:
    try:
        func()
    except Exception:
        log.debug("ignored error while closing", exc_info=True)


def _stop_at_exit(ref: weakref.ref) -> None:
    """Cancel the jobs of a cluster left running when Python exits (they would keep the
    allocation until their walltime)."""
    manager = ref()
    if manager is not None:
        try:
            manager.close()
        except Exception:
            log.warning("could not stop the cluster at exit", exc_info=True)


#: The process's cluster manager.
MANAGER = ClusterManager()
