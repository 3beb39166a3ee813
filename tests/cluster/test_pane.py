"""The cluster pane and the cluster form, without a browser, against real clusters."""

from __future__ import annotations

import uuid

import pytest

from dashapp.cluster import MANAGER
from dashapp.state.cluster import ClusterForm
from dashapp.views.cluster import ClusterPane, jobs_frame, workers_frame

from .test_manager import run


@pytest.fixture
def pane():
    p = ClusterPane()
    yield p
    run(MANAGER.stop())


def test_form_spec_for_each_kind():
    form = ClusterForm()
    assert "slurm" in form.param.kind.objects
    assert form.param.kind.objects.count("connect") == 1
    form.kind = "slurm"  # loads the kind's defaults first
    form.param.update(
        queue="debug",
        memory="2GB",
        cores=2,
        walltime="01:00:00",
        job_directives="--constraint=cpu\n\n--qos=debug ",
        workers=40,
    )
    spec = form.spec()
    assert spec["kind"] == "slurm"
    assert spec["workers"] == 40
    assert spec["options"]["job_extra_directives"] == ["--constraint=cpu", "--qos=debug"]
    assert "account" not in spec["options"]  # empty fields are left to the Dask config
    form.adaptive = True
    assert form.spec()["adapt"] == {"minimum": 0, "maximum": 10}
    form.kind = "slurm-bulk"
    assert "workers_per_job" in form.visible_fields()
    form.kind = "connect"
    assert form.visible_fields() == ["address"]


def test_tables_from_info():
    info = {
        "workers": [{"name": "w0", "host": "n1", "nthreads": 4, "memory": 2**30,
                     "memory_limit": 4 * 2**30, "cpu": 12.5, "executing": 1, "in_memory": 3,
                     "ready": 0, "status": "running"}],
        "jobs": [{"job_id": "42", "state": "RUNNING", "name": "dask-worker",
                  "time_left": "29:10", "workers": ["w0"], "reason": ""}],
    }  # fmt: skip
    w = workers_frame(info)
    assert w.loc[0, "memory"] == "1,024 MiB / 4,096 MiB"
    assert w.loc[0, "running"] == 1
    assert w.loc[0, "stored"] == 3
    assert w.loc[0, "cpu"] == "12 %"
    assert jobs_frame(info).loc[0, "workers"] == "w0"
    assert workers_frame({}).empty


def test_job_script_preview_and_refused_request_are_shown(pane, slurm, tmp_path):
    pane.form.kind = "slurm"
    pane.form.param.update(
        queue=slurm.partition,
        memory="10000GB",
        cores=1,
        walltime="00:10:00",
        interface="lo",
        log_directory=str(tmp_path),
        local_directory=str(tmp_path),
    )
    pane._on_preview()
    assert "#SBATCH" in pane._script.object
    assert "--lifetime" in pane._script.object  # workers retire before the walltime
    run(pane._on_start())
    assert pane._message.visible
    assert "Requested node configuration is not available" in pane._message.object
    assert slurm.queue() == []  # nothing was submitted


def test_start_scale_and_stop_a_slurm_cluster_from_the_pane(pane, slurm, tmp_path):
    name = f"pane-{uuid.uuid4().hex[:6]}"
    pane.form.kind = "slurm"
    pane.form.param.update(
        queue=slurm.partition,
        memory="1GB",
        cores=1,
        walltime="00:10:00",
        interface="lo",
        workers=2,
        log_directory=str(tmp_path),
        local_directory=str(tmp_path),
    )
    pane.form.prologue = ""
    spec = pane.form.spec()
    spec["options"]["job_name"] = name
    run(MANAGER.start(spec, replace=True))
    run(MANAGER.wait_for_workers(2, timeout=120))
    pane.update()
    assert "running" in pane._summary.object
    assert len(pane._workers.value) == 2
    assert set(pane._jobs.value["state"]) == {"RUNNING"}
    assert MANAGER.client.submit(lambda x: x * 2, 21).result() == 42
    run(pane._on_stop())
    slurm.wait_empty(60)
    pane.update()
    assert pane._workers.value.empty


def test_a_page_of_another_process_shows_and_stops_the_cluster(tmp_path):
    """Two managers of one group stand for two processes of a ``--num-procs`` server (real
    processes: test_siblings.py); the pane of the one that did not start the cluster shows
    it, says where it runs, and a stop asked there stops it."""
    import os

    from dashapp.cluster import ClusterManager

    owner, other = ClusterManager(group=tmp_path), ClusterManager(group=tmp_path)
    try:
        run(owner.start({"kind": "local", "workers": 1, "options": {"memory_limit": "1GB"}}))
        pane = ClusterPane(manager=other)
        pane.update()
        assert "running" in pane._summary.object
        assert f"server process {os.getpid()}" in pane._summary.object
        assert not pane._scale.disabled
        run(other.stop())
        pane.update()
        assert "Status:</b> none" in pane._summary.object
        assert owner.info()["status"] == "none"
    finally:
        other.close()
        owner.close()
