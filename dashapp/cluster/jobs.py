"""The batch jobs of a dask-jobqueue cluster: submissions, their queue state, and what went wrong.

:class:`JobBook` keeps one record per submitted job: it learns of each submission (and of a
refused one, with sbatch's message) through a subclass of the cluster's Job class
(:meth:`JobBook.job_class`), reads the jobs' state from ``squeue``, reports a job whose
worker never connects, and replaces a job that ended while its workers were needed (at its
walltime, quietly; otherwise as an error). It writes only public attributes of the cluster
(``worker_spec``, ``workers``) and of its own Job subclass.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.config
from distributed.core import Status

from . import slurm
from .config import config_name, setting_seconds
from .report import Report, plural

__all__ = ["Job", "JobBook"]


@dataclass
class Job:
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


class JobBook:
    """The jobs of the current cluster (one book per manager; :meth:`reset` per cluster).

    Parameters
    ----------
    report : Report
        Where events and errors go (its ``status`` says whether lost jobs are replaced).
    on_change : callable
        Called when the jobs changed outside a refresh (the manager republishes ``info()``).
    """

    def __init__(self, report: Report, on_change: Callable[[], None]) -> None:
        self.report = report
        self.on_change = on_change
        self.generation = 0
        self.cluster: Any = None
        self.options: dict[str, Any] = {}
        self.jobs: dict[str, Job] = {}
        self.retire_window = 0  # seconds before the walltime at which workers may retire
        self.last_squeue = -math.inf

    def reset(self, generation: int) -> None:
        """Start a new book for the cluster of ``generation`` (earlier jobs' news is ignored)."""
        self.generation = generation
        self.cluster = None
        self.options = {}
        self.jobs = {}
        self.retire_window = 0
        self.last_squeue = -math.inf

    # --------------------------------------------------------------- submissions
    def job_class(self, base: type) -> type:
        """``base`` (a dask-jobqueue Job) telling this book about every submission.

        dask-jobqueue submits in a background task and only logs a refused submission, with
        no hook for it: the subclass hands the message to the book, which puts it in
        ``info()["errors"]``. (A subclass passed as ``job_cls``, dask-jobqueue's own option,
        instead of writing anything into the library.)
        """
        book, generation = weakref.ref(self), self.generation

        async def start(job: Any) -> None:
            try:
                await base.start(job)
            except Exception as exc:  # whatever sbatch/qsub said: recorded, not raised
                b = book()
                if b is not None:
                    b.submit_failed(generation, job, exc)
                # Recorded, and the job removed from the cluster's spec: keep SpecCluster from
                # raising in a task nobody awaits (it expects a started job here).
                job.job_id = None
                job.status = Status.running
                return
            b = book()
            if b is not None:
                b.submitted(generation, job)

        async def close(job: Any) -> None:
            await base.close(job)
            job.status = Status.closed  # SpecCluster checks that every job it made is closed

        return type(base.__name__, (base,), {"start": start, "close": close})

    def submitted(self, generation: int, job: Any) -> None:
        """A job of cluster ``generation`` was accepted by the batch system."""
        if generation != self.generation or job.job_id is None or self.cluster is None:
            return
        names = self._worker_names_of(job.name)
        self.jobs[str(job.job_id)] = Job(str(job.job_id), str(job.name), names)
        self.report.event(f"job {job.job_id} submitted ({plural(len(names), 'worker')})")
        self.on_change()

    def submit_failed(self, generation: int, job: Any, exc: BaseException) -> None:
        """A submission of cluster ``generation`` was refused; the next scale retries."""
        if generation != self.generation:
            return
        command = str(getattr(job, "submit_command", "") or "submission").split()[0]
        self.report.error(f"{command} failed: {slurm.sbatch_error(str(exc))}")
        if self.cluster is not None:
            self.cluster.worker_spec.pop(job.name, None)  # not counted; the next scale retries
        self.on_change()

    def _worker_names_of(self, spec_name: Any) -> list[str]:
        cluster = self.cluster
        spec = cluster.worker_spec.get(spec_name) or cluster.new_spec or {}
        group = spec.get("group")
        if group:
            return [f"{spec_name}{suffix}" for suffix in group]
        return [str(spec_name)]

    # --------------------------------------------------------------------- views
    def rows(self) -> list[dict[str, Any]]:
        """The jobs still known, as ``info()["jobs"]`` shows them."""
        return [
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
            for rec in self.jobs.values()
            if not rec.ended
        ]

    def job_of(self) -> dict[str, str]:
        """Worker name -> job id, for the jobs that have not ended."""
        return {w: rec.job_id for rec in self.jobs.values() if not rec.ended for w in rec.workers}

    # --------------------------------------------------------------- the queue
    def squeue_due(self, force: bool) -> bool:
        """True when the queue should be asked again (each ``dashapp.poll-interval``)."""
        interval = setting_seconds("poll-interval", 2)
        return force or time.monotonic() - self.last_squeue >= 0.9 * interval

    async def refresh_slurm(self) -> None:
        """Jobs' state, name, reason and time left from ``squeue``; ended jobs handled."""
        asked = time.monotonic()
        try:
            queue = await slurm.squeue({rec.job_id for rec in self.jobs.values()})
        except slurm.SlurmError as exc:
            self.report.error(str(exc))
            return
        self.last_squeue = time.monotonic()
        for rec in list(self.jobs.values()):
            if rec.ended:
                continue
            q = queue.get(rec.job_id)
            if q is None and rec.submitted > asked:
                continue  # submitted while squeue ran
            if q is not None:
                if q.state == "RUNNING" and rec.state != "RUNNING":
                    self.report.event(f"job {rec.job_id} running")
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

    def refresh_other(self) -> None:
        """No queue query for other batch systems: jobs are what the cluster holds."""
        current = {
            str(j.job_id) for j in self.cluster.workers.values() if getattr(j, "job_id", None)
        }
        for job_id in list(self.jobs):
            if job_id not in current:
                del self.jobs[job_id]
        for rec in self.jobs.values():
            rec.state = "UNKNOWN"

    async def _job_ended(self, rec: Job, state: str | None) -> None:
        cluster = self.cluster
        wanted = (
            self.report.status == "running"
            and cluster is not None
            and (rec.spec_name in cluster.worker_spec)
        )
        how = state.lower() if state else "cancelled or failed"
        if not wanted:
            self.report.event(f"job {rec.job_id} left the queue ({how})")
            return
        at_walltime = state == "TIMEOUT" or (
            self.retire_window
            and rec.time_left_s is not None
            and rec.time_left_s <= self.retire_window + 3 * setting_seconds("poll-interval", 2)
        )
        lost = (
            f"its worker {rec.workers[0]} was lost"
            if len(rec.workers) == 1
            else f"its {len(rec.workers)} workers were lost"
        )
        # SpecCluster's own lock (read, not written): its _correct_state must not run while
        # the job is swapped out of worker_spec.
        async with cluster._lock:
            job = cluster.workers.get(rec.spec_name)
            if job is None or str(job.job_id) == rec.job_id:
                # Forget the job under a new name, so that neither SpecCluster's own
                # lost-worker timer nor a late message closes the job replacing it.
                cluster.worker_spec.pop(rec.spec_name, None)
                if job is not None:
                    del cluster.workers[rec.spec_name]
                    await job.close()
                cluster.worker_spec.update(self._fresh_worker_spec())
        if at_walltime:
            self.report.event(
                f"job {rec.job_id} reached its walltime ({lost}); submitting a new job"
            )
            await cluster
        else:
            self.report.error(f"job {rec.job_id} ended ({how}); {lost}; the next scale replaces it")

    def _fresh_worker_spec(self) -> dict[str, Any]:
        """A worker spec under a name no job of this cluster had.

        SpecCluster's ``new_worker_spec()`` skips only the names in ``worker_spec``; the names
        of jobs already dropped from it are shown there for the call (placeholders, taken out
        again), so that the cluster moves its own counter past them. (Before, the manager
        advanced the cluster's private counter itself.)
        """
        cluster = self.cluster
        used = {rec.spec_name for rec in self.jobs.values()} | set(map(str, cluster.workers))
        placeholders = {}
        for name in used:
            for key in (name, int(name) if name.isdigit() else None):
                if key is not None and key not in cluster.worker_spec:
                    placeholders[key] = {}
        cluster.worker_spec.update(placeholders)
        try:
            return cluster.new_worker_spec()
        finally:
            for key in placeholders:
                cluster.worker_spec.pop(key, None)

    def check_silent(self, worker_names: set[str], address: str | None) -> None:
        """A job running past ``dashapp.worker-timeout`` without its worker is reported."""
        timeout = setting_seconds("worker-timeout", 120)
        for rec in self.jobs.values():
            if rec.ended:
                continue
            rec.connected = sum(name in worker_names for name in rec.workers)
            if rec.connected:
                rec.ever_connected = True
                if rec.silent_error is not None:
                    self.report.withdraw(rec.silent_error)
                    rec.silent_error = None
                    self.report.event(f"the worker of job {rec.job_id} connected after all")
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
                    f"has not connected to the scheduler at {address}{self._log_hint(rec)}"
                )
                self.report.error(rec.silent_error)

    def _log_hint(self, rec: Job) -> str:
        """Where the job's output is, and its last error line if there is one."""
        directory = self.options.get("log_directory")
        if directory is None and self.cluster is not None:
            name = config_name(type(self.cluster))
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

    async def wait_gone(self, timeout: float) -> None:
        """After the cluster closed: wait until its Slurm jobs left the queue (or say which
        did not)."""
        ids = set(self.jobs)
        closing = sum(not rec.ended for rec in self.jobs.values())
        deadline = time.monotonic() + timeout
        while True:
            try:
                queue = await slurm.squeue(ids)
            except slurm.SlurmError as exc:
                self.report.error(str(exc))
                return
            left = {j for j, q in queue.items() if q.state not in slurm.ENDED_STATES}
            for job_id, rec in self.jobs.items():
                if job_id in queue:
                    rec.state = queue[job_id].state
                elif not rec.ended:
                    rec.ended, rec.state = True, "ENDED"
            self.on_change()
            if not left:
                if closing:
                    self.report.event(f"{plural(closing, 'job')} left the queue")
                self.jobs.clear()
                return
            if time.monotonic() > deadline:
                self.report.error(
                    f"jobs {', '.join(sorted(left))} still in the queue after {timeout:g} s"
                )
                return
            await asyncio.sleep(1)
