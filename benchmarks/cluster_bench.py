"""Time to N connected Dask workers on Slurm: one job per worker versus one bulk job.

For each N (2, 4, 8 by default) and each mode it starts a cluster, asks for N workers and
measures the seconds from the request (``scale``) to N workers connected to the scheduler,
then closes the cluster and waits for the queue to empty before the next run:

- ``per-job``: dask-jobqueue's ``SLURMCluster``, one ``sbatch`` job per worker;
- ``bulk``: dashapp's ``SLURMBulkCluster``, one job with ``--ntasks=N`` and ``srun``.

Modes alternate within each repeat, and the table gives the median (and range) of the repeats
together with a description of the machine. It runs on the Slurm in ``SLURM_CONF``, or starts
the test Slurm (``.ci/slurm start``) for the run and stops it afterwards. Not part of the tests.

    python benchmarks/cluster_bench.py                     # N = 2, 4, 8; 3 repeats
    python benchmarks/cluster_bench.py --workers 2 4 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODES = ("per-job", "bulk")


def _run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


@contextlib.contextmanager
def test_slurm() -> Iterator[str]:
    """The running Slurm of ``SLURM_CONF``, else the test Slurm for the duration."""
    if os.environ.get("SLURM_CONF") and _run("sinfo", "-h", timeout=10).returncode == 0:
        yield "SLURM_CONF (already running)"
        return
    workdir = tempfile.mkdtemp(prefix="dashapp-bench-", dir="/tmp")
    started = _run("bash", str(REPO / ".ci" / "slurm"), "start", workdir, timeout=180)
    if started.returncode != 0:
        _run("bash", str(REPO / ".ci" / "slurm"), "stop", workdir, timeout=120)
        sys.exit(f"could not start Slurm (is another test session using it?):\n{started.stderr}")
    os.environ["SLURM_CONF"] = f"{workdir}/slurm.conf"
    try:
        yield ".ci/slurm (started for this run)"
    finally:
        stopped = _run("bash", str(REPO / ".ci" / "slurm"), "stop", workdir, timeout=120)
        if stopped.returncode == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"Slurm stop failed, files kept in {workdir}:\n{stopped.stderr}", file=sys.stderr)


def queue(job_name: str) -> list[str]:
    """Ids of this user's jobs of that name still in the queue (any state but gone)."""
    out = _run("squeue", "-h", "-u", getpass.getuser(), "-n", job_name, "-o", "%i")
    return out.stdout.split()


def wait_empty(job_name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while queue(job_name):
        if time.monotonic() > deadline:
            _run("scancel", "-u", getpass.getuser(), "-n", job_name)
            raise TimeoutError(f"jobs {job_name} still queued after {timeout} s")
        time.sleep(0.5)


def one_run(mode: str, n: int, partition: str, tmp: Path, timeout: float) -> float:
    """Seconds from scale(n) to n connected workers."""
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    from dashapp.cluster.bulk import SLURMBulkCluster

    job_name = f"bench-{mode}-{n}-{os.getpid()}"
    options = {
        "cores": 1,
        "memory": "1GB",
        "processes": 1,
        "queue": partition,
        "walltime": "00:15:00",
        "interface": "lo",
        "local_directory": str(tmp / "spill"),
        "log_directory": str(tmp / "logs"),
        "job_name": job_name,
        "scheduler_options": {"dashboard_address": ":0"},
    }
    if mode == "bulk":
        cluster = SLURMBulkCluster(workers_per_job=n, **options)
    else:
        cluster = SLURMCluster(**options)
    try:
        with Client(cluster) as client:
            start = time.monotonic()
            cluster.scale(n)
            client.wait_for_workers(n, timeout=timeout)
            elapsed = time.monotonic() - start
            jobs = len(queue(job_name))
            expected = 1 if mode == "bulk" else n
            if jobs != expected:
                raise RuntimeError(f"{mode}: {jobs} jobs in the queue, expected {expected}")
    finally:
        cluster.close()
        wait_empty(job_name)
    return elapsed


def machine() -> str:
    import dask
    import dask_jobqueue
    import distributed

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    slurm = _run("sinfo", "--version").stdout.strip()
    node = _run("sinfo", "-h", "-N", "-o", "%N %c CPUs %m MB").stdout.strip()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GB RAM; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}, dask {dask.__version__}, "
        f"distributed {distributed.__version__}, dask-jobqueue {dask_jobqueue.__version__}; "
        f"{slurm}, node {node}; load average before the run {load}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run")
    args = parser.parse_args(argv)

    with test_slurm() as where, tempfile.TemporaryDirectory(prefix="dashapp-bench-") as tmp:
        names = _run("sinfo", "-h", "-o", "%P").stdout.split()
        partition = next((p.rstrip("*") for p in names if p.endswith("*")), names[0])
        description = machine()
        times: dict[tuple[str, int], list[float]] = {}
        for n in args.workers:
            for repeat in range(args.repeats):
                modes = MODES if repeat % 2 == 0 else MODES[::-1]
                for mode in modes:
                    t = one_run(mode, n, partition, Path(tmp), args.timeout)
                    times.setdefault((mode, n), []).append(t)
                    print(f"  {mode:8} N={n}: {t:6.1f} s", file=sys.stderr, flush=True)

    print(f"\nTime from scale(N) to N connected workers, Slurm from {where}.\n")
    after = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Machine: {description}, after {after}.\n")
    print(f"Median of {args.repeats} runs (min-max), seconds; each worker 1 core, 1 GB.\n")
    print("| N workers | one job per worker (SLURMCluster) | one bulk job (SLURMBulkCluster) |")
    print("|---:|---:|---:|")
    for n in args.workers:
        cells = []
        for mode in MODES:
            t = times[(mode, n)]
            cells.append(f"{statistics.median(t):.1f} ({min(t):.1f}-{max(t):.1f})")
        print(f"| {n} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
