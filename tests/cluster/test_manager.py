"""The cluster manager against a real LocalCluster and a real single-node Slurm.

Every Slurm test names its jobs uniquely (``job_name``), runs them with small memory and a
10 minute walltime on 127.0.0.1 (``interface="lo"``), and leaves the queue empty: the
``manager`` fixture stops the cluster, and stop waits for the jobs to leave the queue.
"""

from __future__ import annotations

import asyncio
import json
import operator
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dask
import pytest

from dashapp.cluster import (
    ClusterError,
    ClusterManager,
    cluster_kinds,
    defaults,
    lifetime_args,
    parse_walltime,
)
from dashapp.cluster import slurm as slurm_commands

WORKER_FIELDS = {
    "name",
    "address",
    "host",
    "nthreads",
    "memory",
    "memory_limit",
    "cpu",
    "executing",
    "in_memory",
    "ready",
    "status",
}
JOB_FIELDS = {"job_id", "state", "name", "time_left", "workers", "reason"}


def run(coro: Any) -> Any:
    """Await a manager coroutine from a plain test (the manager runs on its own loop).

    In a thread of its own: once a browser test ran, pytest-playwright's sync API keeps an
    event loop marked running on the main thread, and ``asyncio.run`` refuses to start there.
    """
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def wait_until(check: Callable[[], Any], timeout: float, what: str, manager=None) -> Any:
    """Poll ``check`` until it returns something true; fail with the manager's state."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            state = manager.info() if manager is not None else {}
            pytest.fail(
                f"{what}: not after {timeout} s. errors={state.get('errors')} "
                f"jobs={state.get('jobs')} events={state.get('events')}"
            )
        time.sleep(0.5)


def texts(info: dict) -> list[str]:
    return [event["text"] for event in info["events"]]


@pytest.fixture
def spec(slurm, tmp_path):
    """Build cluster requests whose jobs carry this test's unique name."""
    job_name = f"dt-{uuid.uuid4().hex[:8]}"

    def make(kind: str = "slurm", workers=None, adapt=None, **options: Any) -> dict:
        opts = {
            "cores": 1,
            "memory": "1GB",
            "processes": 1,
            "queue": slurm.partition,
            "walltime": "00:10:00",
            "interface": "lo",
            "local_directory": str(tmp_path / "spill"),
            "log_directory": str(tmp_path / "logs"),
            "job_name": job_name,
            "job_extra_directives": [f"--chdir={tmp_path}"],
        }
        opts.update(options)
        return {"kind": kind, "options": opts, "workers": workers, "adapt": adapt}

    make.job_name = job_name
    make.logs = tmp_path / "logs"
    return make


def our_jobs(slurm, spec) -> list[tuple[str, str, str]]:
    """This test's jobs in the queue (other tests or developers may have jobs too)."""
    return [job for job in slurm.queue() if job[2] == spec.job_name]


# ------------------------------------------------------------------------- no cluster


def test_import_has_no_ui_library():
    code = (
        "import sys, dashapp.cluster, dashapp.cluster.bulk, dashapp.cluster.slurm\n"
        "print(','.join(m for m in ('panel', 'bokeh', 'holoviews') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    ("text", "scheduler", "seconds"),
    [
        ("00:10:00", "slurm", 600),
        ("10", "slurm", 600),
        ("10:30", "slurm", 630),
        ("1-12", "slurm", 129600),
        ("2-00:30:00", "slurm", 174600),
        ("01:30", "lsf", 5400),
        ("01:00:00", "pbs", 3600),
        ("", "slurm", None),
    ],
)
def test_parse_walltime(text, scheduler, seconds):
    assert parse_walltime(text, scheduler) == seconds


@pytest.mark.parametrize("text", ["1h", "10:00:00:00", "abc", "1-"])
def test_parse_walltime_refuses(text):
    with pytest.raises(ValueError, match="walltime"):
        parse_walltime(text, "slurm")


@pytest.mark.parametrize(
    ("walltime", "args"),
    [
        (3600, ["--lifetime", "3300s", "--lifetime-stagger", "120s"]),  # 5 min margin, 2 stagger
        (600, ["--lifetime", "540s", "--lifetime-stagger", "24s"]),  # 10 % / 4 %
        (30, []),
        (None, []),
    ],
)
def test_lifetime_args(walltime, args):
    assert lifetime_args(walltime) == args


def test_defaults_per_kind():
    local = defaults("local")
    assert isinstance(local["n_workers"], int)
    assert isinstance(local["threads_per_worker"], int)
    assert local["memory_limit"] == "auto"
    slurm = defaults("slurm")
    # from dask-jobqueue's jobqueue.slurm section, as keyword names
    assert slurm["walltime"] == dask.config.get("jobqueue.slurm.walltime")
    assert {"cores", "memory", "queue", "account", "job_extra_directives"} <= set(slurm)
    assert {"job_script_prologue", "interface", "local_directory", "log_directory"} <= set(slurm)
    assert "extra" not in slurm  # deprecated aliases are not offered
    assert slurm["scheduler_options"] == {"dashboard_address": ":0"}  # dashapp.defaults.slurm
    assert defaults("slurm-bulk")["workers_per_job"] == 4
    assert defaults("connect") == {"address": ""}
    json.dumps([local, slurm])
    with pytest.raises(KeyError, match="unknown cluster kind"):
        defaults("nope")


def test_a_kind_is_configuration():
    assert "oar" not in cluster_kinds()
    with dask.config.set({"dashapp.clusters.oar": "dask_jobqueue.OARCluster"}):
        assert cluster_kinds()["oar"] == "dask_jobqueue.OARCluster"
        assert defaults("oar")["walltime"] == dask.config.get("jobqueue.oar.walltime")
        script = ClusterManager().job_script(
            {
                "kind": "oar",
                "options": {
                    "cores": 1,
                    "memory": "1GB",
                    "queue": "q",
                    "memory_per_core_property_name": "not_applicable",
                },
            }
        )
        assert "#OAR -q q" in script


def test_validate_explains_bad_requests(manager):
    assert run(manager.validate({"kind": "nope"})) == [
        f"unknown cluster kind 'nope'; known kinds: {', '.join(sorted(cluster_kinds()))}"
    ]
    problems = run(manager.validate({"kind": "local", "workers": -1}))
    assert problems == ["workers must be a whole number >= 0, not -1"]
    problems = run(manager.validate({"kind": "local", "adapt": {"minimum": 3, "maximum": 1}}))
    assert problems == ["adaptive minimum 3 is above the maximum 1"]
    problems = run(manager.validate({"kind": "slurm", "options": {"cores": 1}}))
    assert "memory" in problems[0]
    problems = run(
        manager.validate(
            {"kind": "slurm", "options": {"cores": 1, "memory": "1GB", "walltime": "1h"}}
        )
    )
    assert problems == [
        "walltime '1h' is not a slurm time: write it as MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM "
        "or D-HH:MM:SS"
    ]
    with pytest.raises(ClusterError, match="walltime '1h'"):
        manager.job_script({"kind": "slurm", "options": {"cores": 1, "walltime": "1h"}})
    with pytest.raises(ClusterError, match="unknown cluster kind"):
        run(manager.start({"kind": "nope"}))
    assert manager.info()["status"] == "none"


def test_job_script_shows_the_options(manager):
    options = {
        "cores": 2,
        "memory": "4GB",
        "processes": 1,
        "queue": "debug",
        "account": "m1234",
        "walltime": "01:00:00",
        "interface": "lo",
        "job_extra_directives": ["--constraint=cpu"],
        "job_script_prologue": ["module load python"],
    }
    script = manager.job_script({"kind": "slurm", "options": options})
    for line in [
        "#SBATCH -p debug",
        "#SBATCH -A m1234",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=4G",
        "#SBATCH -t 01:00:00",
        "#SBATCH --constraint=cpu",
        "module load python",
    ]:
        assert line in script.splitlines()
    assert "--lifetime 3300s --lifetime-stagger 120s" in script
    assert "--interface lo" in script

    bulk = manager.job_script(
        {"kind": "slurm-bulk", "options": {**options, "workers_per_job": 8}}
    ).splitlines()
    assert "#SBATCH --ntasks=8" in bulk
    assert "#SBATCH --cpus-per-task=2" in bulk
    assert "#SBATCH --mem-per-cpu=1908M" in bulk  # 4 GB per worker, over its 2 cores
    srun = [line for line in bulk if line.startswith("srun ")]
    assert srun[0].startswith("srun --ntasks=8 --cpus-per-task=2 bash -c 'exec ")
    assert "--name dummy-name-$SLURM_PROCID" in srun[0]

    with pytest.raises(ClusterError, match="no batch script"):
        manager.job_script({"kind": "local"})


# ------------------------------------------------------------------------ LocalCluster


def test_local_cluster_start_scale_adapt_stop(manager):
    info = run(
        manager.start(
            {
                "kind": "local",
                "options": {"threads_per_worker": 1, "memory_limit": "1GB"},
                "workers": 2,
            }
        )
    )
    assert info["status"] == "running"
    assert info["kind"] == "local"
    assert info["scheduler_address"].startswith("tcp://")
    assert info["dashboard_link"].startswith("http")
    assert info["requested_workers"] == 2
    assert info["jobs"] == []
    assert info["adapt"] is None
    assert info["errors"] == []
    assert info["walltime_left_s"] is None
    json.dumps(info)

    info = run(manager.wait_for_workers(2, timeout=60))
    assert len(info["workers"]) == 2
    worker = info["workers"][0]
    assert set(worker) >= WORKER_FIELDS
    assert worker["nthreads"] == 1
    assert worker["memory_limit"] == 10**9
    assert manager.client.submit(operator.add, 1, 2).result(timeout=30) == 3

    with pytest.raises(ClusterError, match="already running"):
        run(manager.start({"kind": "local", "workers": 1}))

    info = run(manager.scale(1))
    assert info["requested_workers"] == 1
    wait_until(lambda: len(manager.info()["workers"]) == 1, 30, "scaled down to 1", manager)

    info = run(manager.adapt(minimum=1, maximum=3))
    assert info["adapt"] == {"minimum": 1, "maximum": 3}

    info = run(manager.stop())
    assert info["status"] == "none"
    assert info["workers"] == []
    assert info["scheduler_address"] is None
    events = texts(info)
    assert "scaled to 1 worker" in events
    assert "adaptive scaling between 1 and 3 workers" in events
    assert events[-1] == "stopped"
    with pytest.raises(ClusterError, match="no cluster is running"):
        run(manager.scale(2))


# ------------------------------------------------------------------------------- Slurm


def test_slurm_workers_run_tasks_scale_down_and_stop(slurm, manager, spec):
    run(manager.start(spec(workers=2)))
    info = run(manager.wait_for_workers(2, timeout=120))
    assert sorted(w["name"] for w in info["workers"]) == ["SLURMCluster-0", "SLURMCluster-1"]
    jobs = {j for j, _, _ in our_jobs(slurm, spec)}
    assert len(jobs) == 2

    client = manager.client
    assert client.submit(operator.mul, 6, 7).result(timeout=60) == 42
    # the workers run inside those Slurm jobs
    assert set(client.run(os.getenv, "SLURM_JOB_ID").values()) == jobs

    info = wait_until(
        lambda: (i := manager.info())["walltime_left_s"] and i, 30, "squeue's time left", manager
    )
    assert 0 < info["walltime_left_s"] <= 600
    assert {j["job_id"] for j in info["jobs"]} == jobs
    for job in info["jobs"]:
        assert set(job) >= JOB_FIELDS
        assert job["state"] == "RUNNING"
        assert job["name"] == spec.job_name
        assert job["time_left"]
    assert {w["job_id"] for w in info["workers"]} == jobs

    info = run(manager.scale(1))
    assert info["requested_workers"] == 1
    wait_until(lambda: len(our_jobs(slurm, spec)) == 1, 60, "one job left in the queue", manager)
    wait_until(lambda: len(manager.info()["jobs"]) == 1, 30, "info shows one job", manager)

    info = run(manager.stop())
    assert info["status"] == "none"
    assert our_jobs(slurm, spec) == []
    assert info["errors"] == []


def test_bulk_job_starts_four_workers(slurm, manager, spec):
    run(manager.start(spec(kind="slurm-bulk", workers_per_job=4, workers=4)))
    info = run(manager.wait_for_workers(4, timeout=120))
    queue = our_jobs(slurm, spec)
    assert len(queue) == 1  # one batch job ...
    assert len(info["workers"]) == 4  # ... four workers
    assert sorted(w["name"] for w in info["workers"]) == [
        f"SLURMBulkCluster-0-{i}" for i in range(4)
    ]
    client = manager.client
    assert set(client.run(os.getenv, "SLURM_JOB_ID").values()) == {queue[0][0]}
    assert sorted(client.run(os.getenv, "SLURM_PROCID").values()) == ["0", "1", "2", "3"]
    futures = client.map(operator.pow, range(40), [2] * 40)
    assert sum(client.gather(futures)) == sum(i * i for i in range(40))
    assert len({a for addrs in client.who_has(futures).values() for a in addrs}) > 1  # spread

    info = run(manager.scale(5))  # rounded up to whole jobs
    assert info["requested_workers"] == 8
    assert len(info["jobs"]) == 2
    run(manager.stop())
    assert our_jobs(slurm, spec) == []


def test_adapt_on_slurm_grows_and_shrinks(slurm, manager, spec):
    adaptive = {
        "distributed.adaptive.interval": "1s",
        "distributed.adaptive.wait-count": 2,
        "distributed.adaptive.target-duration": "5s",
    }
    with dask.config.set(adaptive):
        info = run(manager.start(spec(adapt={"minimum": 0, "maximum": 3})))
    assert info["adapt"] == {"minimum": 0, "maximum": 3}
    assert info["requested_workers"] == 0

    client = manager.client
    futures = client.map(time.sleep, [1] * 24, pure=False)
    wait_until(lambda: len(manager.info()["workers"]) >= 2, 120, "adapt grew the workers", manager)
    assert len(our_jobs(slurm, spec)) <= 3
    client.gather(futures)
    del futures
    wait_until(lambda: not manager.info()["workers"], 60, "adapt retired idle workers", manager)
    wait_until(lambda: not our_jobs(slurm, spec), 60, "the idle jobs left the queue", manager)
    assert manager.info()["errors"] == []


def test_cancelled_job_is_reported_and_replaced(slurm, manager, spec):
    run(manager.start(spec(workers=2)))
    info = run(manager.wait_for_workers(2, timeout=120))
    victim = info["jobs"][0]
    subprocess.run(["scancel", victim["job_id"]], check=True, timeout=30)

    lost = f"job {victim['job_id']} ended"
    error = wait_until(
        lambda: [e for e in manager.info()["errors"] if e.startswith(lost)], 60, "lost job", manager
    )[0]
    assert f"its worker {victim['workers'][0]} was lost" in error
    assert error in texts(manager.info())
    wait_until(lambda: len(manager.info()["workers"]) == 1, 60, "the worker left", manager)
    assert manager.info()["requested_workers"] == 2  # still asked for; not yet replaced

    run(manager.scale(2))
    info = run(manager.wait_for_workers(2, timeout=120))
    assert victim["job_id"] not in {j["job_id"] for j in info["jobs"]}
    assert len(our_jobs(slurm, spec)) == 2
    assert manager.client.submit(operator.add, 2, 2).result(timeout=60) == 4


def test_impossible_request_is_refused_before_submission(slurm, manager, spec):
    request = spec(workers=1, memory="10000GB")
    problems = run(manager.validate(request))
    assert len(problems) == 1
    assert "Requested node configuration is not available" in problems[0]
    with pytest.raises(ClusterError, match="Requested node configuration is not available"):
        run(manager.start(request))
    assert manager.info()["status"] == "none"
    assert our_jobs(slurm, spec) == []


def test_refused_submission_is_reported(slurm, manager, spec, monkeypatch):
    # Skip the pre-check, so the real submission meets sbatch's refusal.
    async def accept(script: str, timeout: float = 30) -> None:
        return None

    monkeypatch.setattr(slurm_commands, "sbatch_test_only", accept)
    info = run(manager.start(spec(workers=1, memory="10000GB")))
    assert info["status"] == "running"
    assert info["requested_workers"] == 0  # the refused job is not counted
    assert info["jobs"] == []
    [error] = info["errors"]
    assert error.startswith("sbatch failed: sbatch: error: Memory specification can not be")
    assert "Requested node configuration is not available" in error
    assert our_jobs(slurm, spec) == []


def test_worker_that_never_arrives_is_reported(slurm, manager, spec):
    with dask.config.set({"dashapp.worker-timeout": 5}):
        run(manager.start(spec(workers=1, job_script_prologue=["sleep 600"])))
        [job] = manager.info()["jobs"]
        error = wait_until(
            lambda: [e for e in manager.info()["errors"] if "has not connected" in e],
            60,
            "silent job reported",
            manager,
        )[0]
    assert error.startswith(f"job {job['job_id']} has been running for ")
    assert str(spec.logs / f"{spec.job_name}-{job['job_id']}.err") in error
    assert manager.info()["workers"] == []
    run(manager.stop())
    assert our_jobs(slurm, spec) == []
