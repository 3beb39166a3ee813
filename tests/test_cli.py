"""The command line and the composition root: readable help, no <defunct> children, services
started in one place."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request

import h5py
import numpy as np
import psutil


def _zombies(pid: int) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _children(pid: int) -> list[psutil.Process]:
    """The announcer while it still runs (it is the server's only child here)."""
    return [c for c in psutil.Process(pid).children() if "dashapp" in " ".join(_cmd(c))]


def _cmd(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _dashapp(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dashapp", *args], capture_output=True, text=True, timeout=60
    )


def test_help_is_plain_text_listing_every_command():
    run = _dashapp("--help")
    assert run.returncode == 0, run.stderr
    assert "``" not in run.stdout  # (it printed the module docstring's RST before)
    for line in ("dashapp serve [--root DIR]", "dashapp capsule export", "dashapp prov export"):
        assert line in run.stdout


def test_serve_help_shows_port_and_num_procs():
    run = _dashapp("serve", "--help")
    assert run.returncode == 0, run.stderr
    text = " ".join(run.stdout.split())
    assert "--port PORT port to listen on (default: 5006)" in text
    assert "--num-procs NUM_PROCS number of server processes" in text
    assert "/slicer" in text


def test_serve_passes_port_and_num_procs_to_panel(monkeypatch, tmp_path):
    from dashapp import cli

    seen = {}
    monkeypatch.setattr(cli.os, "execvpe", lambda prog, cmd, env: seen.update(cmd=cmd, env=env))
    monkeypatch.setattr(cli, "_announce_when_ready", lambda *args: 4242)
    cli.main(["serve", "--root", str(tmp_path), "--port", "5099", "--num-procs", "2"])
    cmd = seen["cmd"]
    assert cmd[cmd.index("--port") + 1] == "5099"
    assert cmd[cmd.index("--num-procs") + 1] == "2"
    assert seen["env"]["DASHAPP_ANNOUNCER_PID"] == "4242"  # the server reaps it


def test_a_finished_live_inversion_leaves_no_defunct_process(tmp_path):
    from dashapp.demo.launcher import _LOCK, start_inversion

    path = start_inversion(tmp_path, size="tiny", delay=0)
    assert path.exists()
    with _LOCK:
        from dashapp.demo import launcher

        proc = launcher._RUN[0]
    deadline = time.monotonic() + 120
    while psutil.pid_exists(proc.pid) and time.monotonic() < deadline:
        try:
            if psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    # nobody asks running_inversion(): the launcher must reap it by itself
    deadline = time.monotonic() + 5
    while _zombies(psutil.Process().pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _zombies(psutil.Process().pid) == []
    assert proc.returncode == 0  # (it ran to its end; the reaper collected its status)


def test_dashapp_serve_leaves_no_defunct_announcer(serve, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    with h5py.File(root / "a.h5", "w") as f:
        f["image"] = np.zeros((4, 5), "f4")
    server = serve(root, dashapp_serve=True)
    request = urllib.request.Request(  # (the header the Jupyter proxy sends: no cookie needed)
        f"http://127.0.0.1:{server.port}/slicer?file=a.h5",
        headers={"Authorization": f"token {server.token}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # a session: the app starts
        assert response.status == 200
    deadline = time.monotonic() + 60  # the announcer prints its line, then ends
    while "ready, open" not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "ready, open" in server.log.read_text()  # (the announcer did run)
    deadline = time.monotonic() + 30
    while (_zombies(server.proc.pid) or _children(server.proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _zombies(server.proc.pid) == []


def test_building_a_view_starts_no_service_and_services_start_once(tmp_path, monkeypatch):
    from dashapp import app
    from dashapp.data import PYRAMIDS
    from dashapp.views.app import SlicerApp

    monkeypatch.setattr(app, "_SERVICES", None)
    monkeypatch.setattr(PYRAMIDS, "client_provider", None)

    def warm_ups() -> int:
        return sum(t.name == "dashapp-warm-up" for t in threading.enumerate())

    before = warm_ups()
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["image"] = np.zeros((4, 5), "f4")
    SlicerApp(tmp_path)
    assert PYRAMIDS.client_provider is None  # the view wired nothing
    assert warm_ups() == before
    first = app.services(server=False)
    assert PYRAMIDS.client_provider is app._cluster_client
    assert app.services(server=False) is first  # once per process
    assert first.chunk_cache is not None
    assert first.handles is not None


def test_the_packaged_script_is_named_after_its_route():
    from dashapp.routes import ROUTE, SLICER_SCRIPT

    assert SLICER_SCRIPT.name == "slicer.py"
    assert ROUTE == "slicer"
    assert SLICER_SCRIPT.is_file()
    assert not SLICER_SCRIPT.with_name("slicer_app.py").exists()
