"""The cluster and sweep panes' own rules, without a browser or a running cluster."""

from __future__ import annotations

import pytest

from dashapp.cluster import ClusterManager, proxy
from dashapp.state.sweep import SweepRun
from dashapp.views.cluster import ClusterPane, SweepPane, dashboard_href


@pytest.fixture
def idle_manager():
    m = ClusterManager(group="")
    yield m
    m.close()


def test_empty_tables_say_so_and_batch_jobs_only_for_batch_kinds(idle_manager):
    pane = ClusterPane(manager=idle_manager)
    assert pane._no_workers.visible
    assert not pane._workers.visible
    assert pane.form.kind == "local"
    assert not pane._jobs_title.visible  # a local cluster has no batch jobs
    assert not pane._no_jobs.visible
    pane.form.kind = "slurm"
    assert pane._jobs_title.visible
    assert pane._no_jobs.visible
    assert not pane._jobs.visible
    pane.form.kind = "local"
    assert not pane._jobs_title.visible


def test_the_dashboard_link_goes_through_the_app_when_the_route_is_served(monkeypatch):
    monkeypatch.delenv("DASHAPP_JUPYTER_BASE_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    monkeypatch.setattr(proxy, "_served", False)
    assert dashboard_href("http://10.1.2.3:8787/status") == "http://10.1.2.3:8787/status"
    proxy.routes()  # what panel serve --plugins dashapp.cluster.proxy does
    assert dashboard_href("http://10.1.2.3:8787/status") == "dask/status"
    assert dashboard_href(None) == ""


def test_the_sweep_without_a_cluster_says_so_beside_the_button(idle_manager, tmp_path):
    pane = SweepPane(run=SweepRun(), root=str(tmp_path), manager=idle_manager)
    assert not pane._hint.visible
    pane._on_go()
    assert pane._hint.visible
    assert "No cluster is running" in pane._hint.object
    assert pane.run.status == "idle"  # nothing started
    labels = SweepRun.param.kind.names
    assert labels == {"DC resistivity": "dc", "Frequency-domain EM": "fdem"}
