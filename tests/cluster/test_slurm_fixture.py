"""The ``slurm`` fixture gives a real Slurm: batch jobs run, impossible requests are refused,
8 single-core jobs run at once, scancel works, and dask-jobqueue starts workers on it."""

from __future__ import annotations

import os
import subprocess
import time

import pytest


def sbatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sbatch", "--parsable", *args], capture_output=True, text=True, timeout=30, check=False
    )


def submit(*args: str) -> str:
    """Submit a batch job; return its id."""
    out = sbatch(*args)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def wait_running(slurm, jobids: list[str], timeout: float = 30) -> None:
    """Wait until all ``jobids`` are RUNNING at the same time."""
    deadline = time.monotonic() + timeout
    while True:
        states = {jobid: state for jobid, state, _ in slurm.queue()}
        if all(states.get(j) == "RUNNING" for j in jobids):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"jobs {jobids} not all RUNNING after {timeout} s: {states}")
        time.sleep(0.2)


def test_fixture_exports_conf(slurm):
    assert os.environ["SLURM_CONF"] == str(slurm.conf)
    assert slurm.conf.is_file()
    assert slurm.partition  # "debug" on the Slurm that .ci/slurm starts


def test_batch_job_runs_and_writes_output(slurm, tmp_path):
    jobid = submit(f"--chdir={tmp_path}", "--output=out-%j.txt", "--wrap", "hostname")
    slurm.wait_empty(60)
    out = tmp_path / f"out-{jobid}.txt"
    assert out.is_file()
    assert out.read_text().strip(), "hostname printed nothing"


def test_impossible_memory_is_refused(slurm, tmp_path):
    out = sbatch(f"--chdir={tmp_path}", "--mem=10000G", "--wrap", "hostname")
    # sbatch: error: Memory specification can not be satisfied
    # sbatch: error: Batch job submission failed: Requested node configuration is not available
    assert out.returncode != 0
    assert "Memory specification can not be satisfied" in out.stderr
    assert "Requested node configuration is not available" in out.stderr
    assert slurm.queue() == []


def test_eight_single_core_jobs_run_at_once(slurm, tmp_path):
    # The node declares more CPUs than the runner has, so 8 single-core jobs fit at once.
    # They sleep long enough to be seen together even on a loaded machine, then are cancelled.
    jobids = [
        submit(
            f"--chdir={tmp_path}", "--cpus-per-task=1", f"--job-name=sleep{i}", "--wrap", "sleep 60"
        )
        for i in range(8)
    ]
    start = time.monotonic()
    wait_running(slurm, jobids, timeout=30)
    print(f"8 jobs RUNNING together {time.monotonic() - start:.1f} s after the last sbatch")
    assert sorted(name for _, _, name in slurm.queue()) == [f"sleep{i}" for i in range(8)]
    subprocess.run(["scancel", *jobids], check=True, timeout=30)
    slurm.wait_empty(60)
    assert len(list(tmp_path.glob("slurm-*.out"))) == 8


def test_scancel_removes_job(slurm, tmp_path):
    jobid = submit(f"--chdir={tmp_path}", "--wrap", "sleep 300")
    wait_running(slurm, [jobid])
    subprocess.run(["scancel", jobid], check=True, timeout=30)
    print(f"queue empty {slurm.wait_empty(30):.1f} s after scancel")
    assert jobid not in [j for j, _, _ in slurm.queue()]


def test_dask_jobqueue_workers(slurm, tmp_path):
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    # interface="lo": scheduler and workers listen on 127.0.0.1, which needs no network.
    with SLURMCluster(
        cores=1,
        memory="1GB",
        processes=1,
        queue=slurm.partition,
        walltime="00:10:00",
        interface="lo",
        local_directory=str(tmp_path),
        log_directory=str(tmp_path),
        job_extra_directives=[f"--chdir={tmp_path}"],
        scheduler_options={"dashboard_address": ":0"},  # no clash with a running app on 8787
    ) as cluster:
        assert f"#SBATCH -p {slurm.partition}" in cluster.job_script()
        cluster.scale(2)
        with Client(cluster) as client:
            start = time.monotonic()
            client.wait_for_workers(2, timeout=60)
            print(f"2 Slurm workers connected in {time.monotonic() - start:.1f} s")
            assert len(slurm.queue()) == 2
            assert client.submit(lambda x: x + 1, 1).result() == 2
    print(f"queue empty {slurm.wait_empty(60):.1f} s after close")
