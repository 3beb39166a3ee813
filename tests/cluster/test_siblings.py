"""The processes of one server share one cluster (``panel serve --num-procs N``).

Real processes and a real LocalCluster: the owner runs in a subprocess (as one child of a
multi-process server would), the test's own manager follows it through the group folder.
"""

from __future__ import annotations

import fcntl
import operator
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dashapp.cluster import ClusterError, ClusterManager
from dashapp.cluster.siblings import Siblings, server_group

from .test_manager import run, wait_until

LOCAL = {"kind": "local", "options": {"threads_per_worker": 1, "memory_limit": "1GB"}}

OWNER = textwrap.dedent(
    """
    import asyncio, sys
    from dashapp.cluster import ClusterManager

    manager = ClusterManager(group=sys.argv[1])
    info = asyncio.run(manager.start({"kind": "local", "workers": 1,
                                      "options": {"threads_per_worker": 1,
                                                  "memory_limit": "1GB"}}))
    print("running", info["scheduler_address"], flush=True)
    sys.stdin.read()  # until the test closes it (or kills this process)
    manager.close()
    print("closed", flush=True)
    """
)


@pytest.fixture
def owner(tmp_path):
    """A process that starts a one-worker LocalCluster in the group ``tmp_path/group``."""
    group = tmp_path / "group"
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(group)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("running"), f"the owner did not start: {line!r}"
        proc.group = group
        proc.address = line.split()[1]
        yield proc
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def follower(owner):
    m = ClusterManager(group=owner.group)
    try:
        yield m
    finally:
        m.close()


def test_a_second_process_sees_uses_scales_and_stops_the_cluster_of_the_first(owner, follower):
    info = follower.info()
    assert info["status"] == "running"
    assert info["owner_pid"] == owner.pid
    assert info["scheduler_address"] == owner.address
    assert info["kind"] == "local"
    # its client reaches the owner's scheduler: work sent from here runs on those workers
    assert follower.client.submit(operator.add, 1, 2).result(timeout=30) == 3

    # a second cluster beside it is refused, naming who runs the first
    with pytest.raises(ClusterError, match=f"already running.*server process {owner.pid}"):
        run(follower.start({**LOCAL, "workers": 1}))

    # scaling from here scales the owner's cluster
    info = run(follower.scale(2))
    assert info["requested_workers"] == 2
    info = run(follower.wait_for_workers(2, timeout=60))
    assert len(info["workers"]) == 2
    assert any("scale asked by server process" in e["text"] for e in info["events"])
    with pytest.raises(ClusterError, match="whole number"):
        run(follower.scale(-1))  # the owner's refusal arrives here, in words

    # stopping from here stops it for every process
    info = run(follower.stop())
    assert info["status"] == "none"
    assert info["scheduler_address"] is None
    assert not (owner.group / "cluster.json").exists()

    # and this process may now start one of its own, which the group sees
    run(follower.start({**LOCAL, "workers": 1}))
    assert Siblings(owner.group).owner_info()[0]["owner_pid"] == os.getpid()


def test_replacing_from_a_follower_replaces_the_owners_cluster(owner, follower):
    info = run(follower.start({**LOCAL, "workers": 2}, replace=True))
    assert info["status"] == "running"
    assert info["owner_pid"] == owner.pid  # still the same owner, a new cluster
    assert info["scheduler_address"] != owner.address
    assert info["requested_workers"] == 2


def test_an_owner_that_dies_is_reported_and_the_cluster_can_be_started_again(owner, follower):
    assert follower.info()["status"] == "running"
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait(30)
    info = wait_until(
        lambda: (i := follower.info())["status"] == "none" and i,
        10,
        "the follower notices its owner died",
    )
    assert any(f"server process {owner.pid}" in e and "has ended" in e for e in info["errors"])
    with pytest.raises(ClusterError, match="no cluster is running"):
        run(follower.scale(2))

    info = run(follower.start({**LOCAL, "workers": 1}))
    assert info["status"] == "running"
    assert info["errors"] == []
    assert follower.client.submit(operator.mul, 6, 7).result(timeout=30) == 42


def test_two_managers_of_one_group_never_run_two_clusters(tmp_path):
    """Both ask at once; one starts a cluster, the other's request becomes a replace or a
    refusal, and afterwards both show the same scheduler."""
    a, b = ClusterManager(group=tmp_path), ClusterManager(group=tmp_path)
    try:
        first = run(a.start({**LOCAL, "workers": 1}))
        with pytest.raises(ClusterError, match="already running"):
            run(b.start({**LOCAL, "workers": 1}))
        assert b.info()["scheduler_address"] == first["scheduler_address"]
        run(b.stop())
        assert a.info()["status"] == "none"
        second = run(b.start({**LOCAL, "workers": 1}))
        assert a.info()["scheduler_address"] == second["scheduler_address"]
        assert a.info()["owner_pid"] == os.getpid()
    finally:
        b.close()
        a.close()


def test_the_group_is_the_servers_parent_in_a_multi_process_server(monkeypatch, tmp_path):
    import tornado.process

    monkeypatch.delenv("DASHAPP_CLUSTER_GROUP", raising=False)
    assert server_group() is None  # one process: no group, as before
    monkeypatch.setattr(tornado.process, "_task_id", 1)  # what fork_processes sets in a child
    group = server_group()
    assert group is not None
    assert group.name == f"server-{os.getppid()}"
    monkeypatch.setenv("DASHAPP_CLUSTER_GROUP", str(tmp_path))
    assert server_group() == tmp_path


FORKED = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from pathlib import Path
    from tornado.process import fork_processes, task_id
    from dashapp.cluster import MANAGER  # imported before the fork, as a server may

    done = Path(sys.argv[1])
    fork_processes(2, max_restarts=0)  # what panel serve --num-procs 2 does
    deadline = time.monotonic() + 90
    if task_id() == 0:
        info = asyncio.run(MANAGER.start({"kind": "local", "workers": 1,
                                          "options": {"memory_limit": "1GB"}}))
        print("started", os.getpid(), info["scheduler_address"], flush=True)
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        MANAGER.close()
    else:
        while MANAGER.info()["status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        info = MANAGER.info()
        print("sees", info.get("owner_pid"), info["scheduler_address"], flush=True)
        done.touch()
    """
)


def test_the_children_of_a_forked_server_share_the_process_wide_manager(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHAPP_CLUSTER_GROUP", raising=False)
    out = subprocess.run(
        [sys.executable, "-c", FORKED, str(tmp_path / "done")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = {ln.split()[0]: ln.split()[1:] for ln in out.stdout.splitlines() if ln.strip()}
    assert "started" in lines, out.stdout + out.stderr[-2000:]
    assert "sees" in lines, out.stdout + out.stderr[-2000:]
    assert lines["sees"] == lines["started"]  # the owner's pid and its scheduler's address


def test_a_request_nobody_answers_times_out(tmp_path):
    sib = Siblings(tmp_path)
    (tmp_path / "requests").mkdir()
    with open(tmp_path / "owner.lock", "a+") as fh:  # a live owner that never answers
        fcntl.flock(fh, fcntl.LOCK_EX)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=r"did not answer scale within 0\.5 s"):
            run(sib.request("scale", [1, None], 0.5))
        assert time.monotonic() - t0 < 5
    assert list((tmp_path / "requests").iterdir()) == []  # nothing left behind
