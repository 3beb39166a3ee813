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

The manager is the lifecycle (start, scale, adapt, stop, wait) and composes one part per job:
:mod:`.requests` (checking a request, viewers' limits, the job script), :mod:`.loop` (its own
event loop), :mod:`.report` (status, errors, events, the published dict), :mod:`.workers`
(the workers table), :mod:`.jobs` (batch jobs: submissions, ``squeue``, lost and silent jobs)
and :mod:`.group` (the other processes of a server). It writes no private attribute of
dask-jobqueue or distributed: where they lack a hook it passes a subclass (``job_cls``) or
uses what their public methods return (``adapt()``'s Adaptive).
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import logging
import math
import os
import threading
import time
import weakref
from typing import Any

from distributed.core import rpc

from ..errors import DashappError
from . import requests
from .config import CONNECT, is_jobqueue, is_slurm, json_safe, lifetime_args, setting_seconds
from .errors import ClusterError, ClusterTimeout
from .group import GroupLink, op_timeout
from .jobs import JobBook
from .loop import ManagerLoop
from .report import STATUSES, Report, plural, reason
from .requests import VIEWER_OPTIONS, Spec, check_bounds, refuse_for_viewer, viewer_refusal
from .workers import arrivals, worker_rows

__all__ = [
    "MANAGER",
    "STATUSES",
    "VIEWER_OPTIONS",
    "ClusterError",
    "ClusterManager",
    "viewer_refusal",
]

log = logging.getLogger(__name__)


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
        self._loop = ManagerLoop()
        self._client_lock = threading.Lock()
        self._report = Report(on_change=self._share)
        self._jobs = JobBook(self._report, on_change=self._publish)
        ops = {
            "start": self._start,
            "scale": lambda n, jobs: self._scale(n=n, jobs=jobs),
            "adapt": self._adapt_cluster,
            "stop": self._stop,
            "wait": self._wait_for_workers,
        }
        self._link = GroupLink(group, self._report, self.info, ops)

        self._generation = 0
        self._spec: Spec | None = None
        self._options: dict[str, Any] = {}
        self._cluster: Any = None
        self._adaptive: Any = None  # the Adaptive that cluster.adapt() returned, while on
        self._remote: Any = None  # rpc to a scheduler we connected to
        self._remote_address: str | None = None
        self._remote_dashboard: str | None = None
        self._client: Any = None
        self._watch_task: asyncio.Task | None = None
        self._adapt: dict[str, int] | None = None
        self._workers: list[dict[str, Any]] = []
        self._worker_names: set[str] = set()
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
            refuse_for_viewer(spec)
        return requests.job_script(spec)

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
        return await self._loop.run(requests.validate(spec))

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
            refuse_for_viewer(spec)
        return await self._loop.run(self._start(spec, replace))

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
        return await self._loop.run(self._scale(n=n))

    async def scale_jobs(self, n: int) -> dict[str, Any]:
        """Ask for ``n`` batch jobs (dask-jobqueue clusters only); adaptive scaling stops."""
        return await self._loop.run(self._scale(jobs=n))

    async def adapt(self, minimum: int = 0, maximum: int | None = None) -> dict[str, Any]:
        """Scale between ``minimum`` and ``maximum`` workers with the load (Dask's Adaptive).

        The interval and patience come from ``distributed.adaptive.*`` in the Dask config.
        """
        return await self._loop.run(self._adapt_cluster(minimum, maximum))

    async def stop(self) -> dict[str, Any]:
        """Close the cluster and the client; wait (``dashapp.stop-timeout``) for its jobs to
        leave the queue. A connected scheduler is only detached from, not shut down."""
        return await self._loop.run(self._stop())

    async def wait_for_workers(self, n: int, timeout: float = 120) -> dict[str, Any]:
        """Wait until ``n`` workers are connected; return :meth:`info`.

        Raises
        ------
        ClusterTimeout
            Fewer workers after ``timeout`` seconds; the message lists ``info()["errors"]``.
        ClusterError
            No cluster is running.
        """
        return await self._loop.run(self._wait_for_workers(n, timeout))

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
        if self._loop.in_thread():
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
        view = self._report.snapshot()
        if self._report.status in ("none", "failed"):
            sib = self._link.siblings()
            if sib is not None:
                theirs, gone = sib.owner_info()
                if theirs is not None:
                    return theirs  # another process of this server runs the cluster
                if gone and gone not in view["errors"]:
                    view["errors"].append(gone)
        return view

    def close(self) -> None:
        """Stop the cluster (if any) and the manager's event loop thread."""
        if not self._loop.alive:
            return
        if self._report.status != "none":
            self._loop.call(self._stop(), timeout=setting_seconds("stop-timeout", 60) + 60)
        self._loop.stop()

    # ------------------------------------------------------------------- operations

    @property
    def _status(self) -> str:
        return self._report.status

    def _sibling_cluster(self) -> dict[str, Any] | None:
        """The info() of the cluster another process of the group runs, if this one runs
        none; else None."""
        if self._status not in ("none", "failed"):
            return None
        return self._link.their_cluster()

    async def _start(self, spec: dict[str, Any], replace: bool) -> dict[str, Any]:
        assert self._loop.op_lock is not None
        async with self._loop.op_lock:
            theirs = self._sibling_cluster()
            if theirs is not None and not replace:
                raise ClusterError(
                    f"a {theirs.get('kind') or ''} cluster is already running "
                    f"({theirs.get('scheduler_address')}), started from server process "
                    f"{theirs.get('owner_pid')}: stop it first, or replace it"
                )
            if theirs is not None:
                return await self._link.forward("start", [spec, True], op_timeout("start"))
            if self._status in ("starting", "running", "stopping") and not replace:
                raise ClusterError(
                    f"a {self._spec.kind if self._spec else ''} cluster is already running "
                    f"({self._address()}): stop it first, or replace it"
                )
            problems = await requests.validate(spec)
            if problems:
                raise ClusterError("; ".join(problems))
            s = requests.parse(spec)
            if not self._link.claim():  # another process of this server started one meanwhile
                return await self._link.forward("start", [spec, True], op_timeout("start"))
            if self._status != "none":
                await self._stop_locked()
            self._reset(s)
            self._set_status("starting")
            self._report.event(f"starting a {s.kind} cluster")
            try:
                if s.cls is None:
                    await self._connect_remote(str(s.options["address"]).strip())
                else:
                    await self._create(s)
                    if s.adapt is not None:
                        await self._adapt_locked(s.adapt["minimum"], s.adapt["maximum"])
                    elif s.workers:
                        await self._scale_locked(s.workers, None)
            except Exception as exc:  # any library's failure: said in words, then raised as ours
                message = f"the {s.kind} cluster did not start: {reason(exc)}"
                self._report.error(message)
                await self._teardown()
                self._set_status("failed")
                self._link.release()
                raise ClusterError(message) from exc
            self._set_status("running")
            self._report.event(f"{s.kind} cluster running, scheduler {self._address()}")
            self._watch_task = asyncio.ensure_future(self._watch(self._generation))
            await self._refresh(force=True)
            return self.info()

    async def _create(self, s: Spec) -> None:
        kwargs = self._options = self._jobs.options = requests.effective_options(s)
        kwargs = dict(kwargs)
        if is_jobqueue(s.cls):
            kwargs["job_cls"] = self._jobs.job_class(s.cls.job_cls)
            walltime = requests.walltime_of(s, kwargs)
            window = lifetime_args(walltime)
            if window:  # margin + stagger: when the first worker may retire
                lifetime, stagger = (int(window[i].rstrip("s")) for i in (1, 3))
                self._jobs.retire_window = walltime - lifetime + stagger
        if "n_workers" in inspect.signature(s.cls).parameters:
            kwargs["n_workers"] = 0
        self._cluster = self._jobs.cluster = s.cls(asynchronous=True, **kwargs)
        await self._cluster

    async def _connect_remote(self, address: str) -> None:
        if "://" not in address:
            address = f"tcp://{address}"
        comm = rpc(address)
        try:
            identity = await asyncio.wait_for(comm.identity(n_workers=0), 15)
        except (OSError, TimeoutError) as exc:
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
        assert self._loop.op_lock is not None
        async with self._loop.op_lock:
            if self._sibling_cluster() is not None:
                return await self._link.forward("scale", [n, jobs], op_timeout("scale"))
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
        adaptive, self._adaptive = self._adaptive, None
        if adaptive is not None:  # the one cluster.adapt() gave us (not the cluster's own field)
            adaptive.stop(reason="scaled by hand")
        if self._adapt is not None:
            self._report.event("adaptive scaling off")
        self._adapt = None
        if jobs is not None:
            cluster.scale(jobs=jobs)
            self._report.event(
                f"scaled to {plural(jobs, 'job')} ({plural(len(cluster.plan), 'worker')})"
            )
        else:
            cluster.scale(n)
            self._report.event(f"scaled to {plural(n, 'worker')}")
        await cluster  # submits the jobs (or starts local workers) before answering

    async def _adapt_cluster(self, minimum: int, maximum: int | None) -> dict[str, Any]:
        assert self._loop.op_lock is not None
        async with self._loop.op_lock:
            if self._sibling_cluster() is not None:
                return await self._link.forward("adapt", [minimum, maximum], op_timeout("scale"))
            self._require_cluster("adapt")
            bounds = check_bounds(minimum, maximum)
            await self._adapt_locked(bounds["minimum"], bounds["maximum"])
            await self._refresh(force=True)
            return self.info()

    async def _adapt_locked(self, minimum: int, maximum: int | None) -> None:
        adaptive = self._cluster.adapt(
            minimum=minimum, maximum=maximum if maximum is not None else math.inf
        )
        self._adaptive = adaptive
        top = adaptive.maximum if math.isfinite(adaptive.maximum) else None
        self._adapt = {"minimum": int(adaptive.minimum), "maximum": top}
        self._report.event(
            f"adaptive scaling between {self._adapt['minimum']} and "
            f"{top if top is not None else 'any number of'} workers"
        )

    async def _stop(self) -> dict[str, Any]:
        assert self._loop.op_lock is not None
        async with self._loop.op_lock:
            if self._sibling_cluster() is not None:
                return await self._link.forward("stop", [], op_timeout("stop"))
            if self._status != "none":
                await self._stop_locked()
            self._link.release()
            return self.info()

    async def _stop_locked(self) -> None:
        self._set_status("stopping")
        self._report.event("stopping the cluster")
        await self._teardown()
        self._cluster = self._jobs.cluster = self._remote = None
        self._set_status("none")
        self._report.event("stopped")

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
        self._adapt = self._adaptive = None
        timeout = setting_seconds("stop-timeout", 60)
        cluster = self._cluster
        if cluster is not None:
            try:
                await asyncio.wait_for(cluster.close(), timeout)
            except Exception as exc:  # whatever the library raised: said, and we go on closing
                self._report.error(f"the cluster did not close cleanly: {reason(exc)}")
            if self._jobs.jobs and is_slurm(type(cluster)):
                await self._jobs.wait_gone(timeout)
        if self._remote is not None:
            await self._remote.close_rpc()
            self._remote = None
        self._workers, self._worker_names = [], set()
        self._jobs.jobs = {}  # those still queued after the timeout are named in the errors
        self._publish()

    async def _wait_for_workers(self, n: int, timeout: float) -> dict[str, Any]:
        if self._sibling_cluster() is not None:
            return await self._link.forward("wait", [n, timeout], timeout + 30)
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
                problems = "; ".join(self._report.errors) or "no error reported"
                raise ClusterTimeout(
                    f"{have} of {n} workers connected after {timeout:g} s ({problems})"
                )
            await asyncio.sleep(0.25)

    # ---------------------------------------------------------------------- watching

    async def _watch(self, generation: int) -> None:
        while generation == self._generation:
            await asyncio.sleep(setting_seconds("poll-interval", 2))
            try:
                await self._refresh()
            except asyncio.CancelledError:
                raise
            except (DashappError, OSError, TimeoutError) as exc:
                log.warning("cluster refresh failed", exc_info=True)
                self._report.event(f"could not refresh the cluster state: {reason(exc)}")
            except Exception as exc:  # last line of defence: the watch must go on
                log.exception("cluster refresh failed unexpectedly")
                self._report.event(f"could not refresh the cluster state: {reason(exc)}")

    def _scheduler_comm(self) -> Any:
        if self._cluster is not None:
            return self._cluster.scheduler_comm
        return self._remote

    async def _refresh(self, force: bool = False) -> None:
        """Workers from the scheduler, jobs from the queue, then the checks on them."""
        if self._status not in ("running", "starting"):
            return
        comm = self._scheduler_comm()
        if comm is not None:
            identity = await asyncio.wait_for(comm.identity(n_workers=-1), 15)
            workers = worker_rows(identity, self._jobs.job_of())
            names = {w["name"] for w in workers}
            for text in arrivals(self._worker_names, names):
                self._report.event(text)
            self._workers, self._worker_names = workers, names
        cluster = self._cluster
        if cluster is not None and is_jobqueue(type(cluster)):
            if is_slurm(type(cluster)):
                if self._jobs.squeue_due(force):
                    await self._jobs.refresh_slurm()
            else:
                self._jobs.refresh_other()
            self._jobs.check_silent(self._worker_names, self._address())
        self._publish()

    # ------------------------------------------------------------------------- state

    def _reset(self, s: Spec) -> None:
        self._generation += 1
        self._spec = s
        self._options = dict(s.options)
        self._cluster = self._remote = None
        self._remote_address = self._remote_dashboard = None
        self._adapt = self._adaptive = None
        self._jobs.reset(self._generation)
        self._workers, self._worker_names = [], set()
        self._report.clear()

    def _set_status(self, status: str) -> None:
        assert status in STATUSES
        self._report.status = status
        self._publish()

    def _share(self) -> None:
        self._link.share()

    def _address(self) -> str | None:
        if self._cluster is not None:
            try:
                return self._cluster.scheduler_address
            except (AttributeError, ValueError, RuntimeError):  # closing: no scheduler yet/now
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
            except (AttributeError, KeyError, ValueError):  # no dashboard (not installed, off)
                dashboard = None
            requested = len(cluster.plan)
        jobs = self._jobs.rows()
        left = [j["time_left_s"] for j in jobs if j["state"] == "RUNNING" and j["time_left_s"]]
        on = self._status != "none"
        view = {
            "status": self._status,
            "kind": self._spec.kind if self._spec and on else None,
            "options": json_safe(self._options) if on else {},
            "scheduler_address": self._address() if on else None,
            "dashboard_link": dashboard if on else None,
            "workers": [dict(w) for w in self._workers],
            "jobs": jobs,
            "requested_workers": requested,
            "adapt": dict(self._adapt) if self._adapt else None,
            "walltime_left_s": min(left) if left else None,
        }
        self._report.publish(json_safe(view))


def _quietly(func: Any) -> None:
    try:
        func()
    except Exception:  # closing a client whose scheduler is gone: nothing left to say
        log.debug("ignored error while closing", exc_info=True)


def _stop_at_exit(ref: weakref.ref) -> None:
    """Cancel the jobs of a cluster left running when Python exits (they would keep the
    allocation until their walltime)."""
    manager = ref()
    if manager is not None:
        try:
            manager.close()
        except Exception:  # at exit: log, never raise
            log.warning("could not stop the cluster at exit", exc_info=True)


#: The process's cluster manager.
MANAGER = ClusterManager()
