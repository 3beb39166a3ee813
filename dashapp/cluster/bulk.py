"""Bulk Slurm workers: one batch job starts N Dask workers, one per Slurm task.

dask-jobqueue's ``SLURMCluster`` submits one job per worker (or per group of ``processes``
workers on one node). Sites that limit the number of jobs in the queue, or schedule whole
nodes, want the opposite: one job, ``#SBATCH --ntasks=N``, and ``srun`` starting a worker in
each task of the allocation. :class:`SLURMBulkCluster` does that and is otherwise the same
class (same options, same ``jobqueue.slurm`` config section), so the cluster manager and a
notebook use it like ``SLURMCluster``.

Bookkeeping: a job is one entry of the cluster's worker spec with a ``group`` of N suffixes,
like dask-jobqueue's ``processes > 1``. Worker ``i`` of the job named ``SLURMBulkCluster-3``
calls itself ``SLURMBulkCluster-3-i`` (``i`` = ``$SLURM_PROCID``, expanded by ``bash -c`` in
the task: srun does not expand ``%t`` in a program's arguments), so ``plan``, ``requested``
and ``observed`` agree, and adaptive scaling closes whole jobs, never a part of one.
"""

from __future__ import annotations

import math
import shlex
from typing import Any

import dask.config
from dask.utils import parse_bytes
from distributed.deploy.adaptive import Adaptive
from distributed.deploy.spec import SpecCluster

from .config import import_jobqueue

import_jobqueue()  # before dask_jobqueue's own import can take over Ctrl-C
from dask_jobqueue.slurm import SLURMCluster, SLURMJob  # noqa: E402

__all__ = ["BulkAdaptive", "SLURMBulkCluster", "SLURMBulkJob", "job_of_worker"]


def _workers_per_job(value: int | None) -> int:
    n = value if value is not None else dask.config.get("dashapp.bulk.workers-per-job", 4)
    n = int(n)
    if n < 1:
        raise ValueError(f"workers_per_job must be at least 1, not {n}")
    return n


class SLURMBulkJob(SLURMJob):
    """One Slurm job running ``workers_per_job`` Dask workers, one per task.

    Parameters
    ----------
    workers_per_job : int
        Slurm tasks in the job (``#SBATCH --ntasks``), one Dask worker each. Default
        ``dashapp.bulk.workers-per-job`` (4).
    cores, memory : int, str
        Per worker (per task): ``--cpus-per-task=cores`` and ``--mem-per-cpu=memory/cores``,
        so the tasks may land on several nodes. ``job_mem`` (per node) overrides the memory.
    **kwargs
        As for ``SLURMJob``; ``processes`` must be 1 (each task runs one worker process).
    """

    config_name = "slurm"  # the site's jobqueue.slurm section (queue, account, ...) applies

    def __init__(
        self, scheduler: str | None = None, name: str | None = None, workers_per_job=None, **kwargs
    ):
        self.workers_per_job = _workers_per_job(workers_per_job)
        if kwargs.get("processes") not in (None, 1):
            raise ValueError(
                "bulk jobs run one worker process per Slurm task: leave processes at 1 and "
                "set workers_per_job instead"
            )
        kwargs["processes"] = 1
        super().__init__(scheduler=scheduler, name=name, **kwargs)

        n = self.workers_per_job
        job_mem = kwargs.get("job_mem") or dask.config.get(f"jobqueue.{self.config_name}.job-mem")
        per_cpu_mib = math.ceil(self.worker_memory / self.worker_cores / 2**20)
        header = []
        for line in self.job_header.splitlines():
            if line == "#SBATCH -n 1":
                line = f"#SBATCH --ntasks={n}"
            elif line.startswith("#SBATCH --mem=") and not job_mem:
                line = f"#SBATCH --mem-per-cpu={per_cpu_mib}M"
            header.append(line)
        self.job_header = "\n".join(header)

        # Each task runs the worker command dask-jobqueue built, named <name>-<task number>.
        # srun must be told --cpus-per-task again: since Slurm 22.05 it is not inherited.
        worker = self._command_template.replace(f"--name {name} ", f"--name {name}-$SLURM_PROCID ")
        self._command_template = (
            f"srun --ntasks={n} --cpus-per-task={self.worker_cores} "
            f"bash -c {shlex.quote('exec ' + worker)}"
        )


def job_of_worker(ws: Any) -> str:
    """The job (worker spec name) a bulk worker belongs to: ``X-3-1`` -> ``X-3``.

    Given to ``Adaptive`` as ``worker_key``, so the scheduler retires a job's workers together.
    """
    return _job_of(ws.name)


def _job_of(worker_name: Any) -> str:
    return str(worker_name).rsplit("-", 1)[0]


class BulkAdaptive(Adaptive):
    """Adaptive scaling in whole jobs of ``cluster.workers_per_job`` workers.

    Plain ``Adaptive`` counts workers: with 4 workers per job and a target of 5 it would ask
    for 2 jobs, then see 3 workers too many among those still queued and cancel a job, and
    so on. Here the target is rounded up to whole jobs, queued jobs are cancelled whole, and
    connected workers are retired a job at a time (``worker_key``).
    """

    def __init__(self, cluster: SLURMBulkCluster, *args: Any, **kwargs: Any):
        kwargs.setdefault("worker_key", job_of_worker)
        super().__init__(cluster, *args, **kwargs)

    async def target(self) -> int:
        """The scheduler's target, rounded up to whole jobs."""
        per_job = self.cluster.workers_per_job
        return math.ceil(await super().target() / per_job) * per_job

    async def recommendations(self, target: int) -> dict:
        """As ``Adaptive``'s, but scaling down removes whole jobs, queued ones first."""
        if target >= len(self.plan):
            return await super().recommendations(target)
        if len(self.plan) != len(self.requested):
            await self.cluster
        plan, requested, observed = self.plan, self.requested, self.observed
        per_job = self.cluster.workers_per_job
        waiting: dict[str, set] = {}
        for name in requested - observed:
            waiting.setdefault(_job_of(name), set()).add(name)
        queued = sorted(j for j, names in waiting.items() if len(names) == per_job)
        to_close: set = set()
        for job in queued[: (len(plan) - target) // per_job]:
            to_close |= waiting[job]
        if target < len(plan) - len(to_close):
            to_close.update(await self.workers_to_close(target=target))

        firmly_close = set()
        for name in to_close:
            self.close_counts[name] += 1
            if self.close_counts[name] >= self.wait_count:
                firmly_close.add(name)
        for name in list(self.close_counts):
            if name in firmly_close or name not in to_close:
                del self.close_counts[name]
        if firmly_close:
            return {"status": "down", "workers": list(firmly_close)}
        return {"status": "same"}


class SLURMBulkCluster(SLURMCluster):
    """A ``SLURMCluster`` whose jobs each start ``workers_per_job`` workers (``srun``).

    Parameters
    ----------
    workers_per_job : int
        Workers (Slurm tasks) per batch job. Default ``dashapp.bulk.workers-per-job`` (4).
    n_workers : int
        Workers to start with, rounded up to whole jobs.
    **kwargs
        As for ``dask_jobqueue.SLURMCluster``; ``cores`` and ``memory`` are per worker.

    Examples
    --------
    >>> cluster = SLURMBulkCluster(workers_per_job=8, cores=4, memory="16GB", queue="regular")
    >>> cluster.scale(jobs=2)  # 2 batch jobs, 16 workers
    >>> cluster.scale(10)  # 10 workers: rounded up to 2 jobs
    """

    job_cls = SLURMBulkJob

    def __init__(self, n_workers: int = 0, workers_per_job: int | None = None, **kwargs):
        self.workers_per_job = _workers_per_job(workers_per_job)
        super().__init__(n_workers=0, workers_per_job=self.workers_per_job, **kwargs)
        # The spec's group makes SpecCluster expect (and scale down) N named workers per job.
        self.new_spec["group"] = [f"-{i}" for i in range(self.workers_per_job)]
        if n_workers:
            self.scale(n_workers)

    def scale(self, n: int | None = None, jobs: int = 0, memory=None, cores=None):
        """Scale to ``n`` workers (rounded up to jobs), or to ``jobs`` jobs.

        ``memory`` and ``cores`` ask for at least that much in total, also in whole jobs.
        """
        per_job = self.workers_per_job
        if n is not None:
            jobs = math.ceil(n / per_job)
        if memory is not None:
            job_bytes = self._dummy_job.worker_memory * per_job
            jobs = max(jobs, math.ceil(parse_bytes(memory) / job_bytes))
        if cores is not None:
            jobs = max(jobs, math.ceil(cores / (self._dummy_job.worker_cores * per_job)))
        return SpecCluster.scale(self, jobs)

    def adapt(
        self,
        Adaptive: type[Adaptive] = BulkAdaptive,
        minimum_jobs: int | None = None,
        maximum_jobs: int | None = None,
        **kwargs: Any,
    ) -> Adaptive:
        """Adaptive scaling between ``minimum`` and ``maximum`` workers, in whole jobs.

        The bounds are rounded up to whole jobs; ``minimum_jobs``/``maximum_jobs`` count jobs.
        """
        per_job = self.workers_per_job
        if minimum_jobs is not None:
            kwargs["minimum"] = minimum_jobs * per_job
        if maximum_jobs is not None:
            kwargs["maximum"] = maximum_jobs * per_job
        for bound in ("minimum", "maximum"):
            if kwargs.get(bound) is not None and math.isfinite(kwargs[bound]):
                kwargs[bound] = math.ceil(kwargs[bound] / per_job) * per_job
        return SpecCluster.adapt(self, Adaptive=Adaptive, **kwargs)
