"""Shared fixtures: HDF5 files written into tmp_path, the real corpus, a real panel server."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from functools import partial
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Debian's Chromium, with the flags that keep it off the closed network (see the testing notes).
CHROMIUM = os.environ.get("DASHAPP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _find_corpus() -> Path:
    candidates = [
        os.environ.get("DASHAPP_CORPUS", ""),
        REPO.parent / "shared" / "corpus",
        Path("/work/shared/corpus"),
    ]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    raise RuntimeError(
        "The real-file corpus was not found: set DASHAPP_CORPUS to the shared/corpus folder."
    )


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The folder of real facility HDF5/NeXus files (read-only)."""
    return _find_corpus()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep the demo workspace and any cache out of the user's home."""
    cache = tmp_path_factory.getbasetemp() / "dashapp-cache"
    monkeypatch.setenv("DASHAPP_CACHE", str(cache))


@pytest.fixture(autouse=True)
def _fresh_handles():
    """Each test starts with no open HDF5 handles (files in tmp_path get deleted)."""
    from dashapp.data import HANDLES

    HANDLES.clear()
    yield
    HANDLES.clear()


# ----------------------------------------------------------------------------- browser / server
@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright: launch Debian's Chromium instead of a downloaded browser."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


#: The access token of the test servers (``DASHAPP_TOKEN``); the test browser holds its cookie.
TEST_TOKEN = "test-token-of-the-dashapp-test-servers"


def token_cookies(token: str = TEST_TOKEN) -> list[dict]:
    """The cookie a browser keeps after opening a server's token URL (any port of the host)."""
    from dashapp.auth import cookie_name

    return [
        {"name": cookie_name(token), "value": token, "domain": host, "path": "/",
         "httpOnly": True, "secure": False, "sameSite": "Lax", "expires": -1}
        for host in ("127.0.0.1", "localhost")
    ]  # fmt: skip


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {
        **browser_context_args,
        "viewport": {"width": 1400, "height": 900},
        # as after opening the printed URL with the token (see dashapp.auth)
        "storage_state": {"cookies": token_cookies(), "origins": []},
    }


def _limit_memory(nbytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PanelServer:
    """``panel serve apps/slicer.py`` in a subprocess, on a free port.

    Its access token is :data:`TEST_TOKEN` (the test browser has its cookie); clients without
    a browser add ``token=`` to the URL's query (:attr:`token`). ``dashapp_serve=True`` starts
    ``dashapp serve`` instead (the app at ``/``, the token required by the auth module).
    ``memory_limit`` (bytes) caps the server's address space (``RLIMIT_AS``): a read that
    asks for more raises MemoryError in the server instead of exhausting the machine.
    """

    def __init__(
        self,
        root: Path | None,
        tmp: Path,
        env: dict[str, str] | None = None,
        options: list[str] | None = None,
        token: str = TEST_TOKEN,
        dashapp_serve: bool = False,
        memory_limit: int | None = None,
    ) -> None:
        self.port = free_port()
        self.token = token
        self.log = tmp / f"panel-{self.port}.log"
        if dashapp_serve:
            cmd = [sys.executable, "-m", "dashapp", "serve", "--port", str(self.port)]
        else:
            cmd = [
                sys.executable, "-m", "panel", "serve", str(REPO / "apps" / "slicer.py"),
                "--port", str(self.port), "--address", "127.0.0.1",
            ]  # fmt: skip
        cmd += [
            "--liveness",
            "--allow-websocket-origin", f"127.0.0.1:{self.port}",
            "--allow-websocket-origin", f"localhost:{self.port}",
            *(options or []),  # more panel serve options, e.g. --num-procs 2
        ]  # fmt: skip
        if root is not None:
            cmd += ["--root", str(root)] if dashapp_serve else ["--args", "--root", str(root)]
        full_env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
            "XDG_CACHE_HOME": str(tmp / "xdg-cache"),
            "PYTHONUNBUFFERED": "1",
            "DASHAPP_TOKEN": token,
            **(env or {}),
        }
        self._log = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: --num-procs children stop with it
            preexec_fn=None if memory_limit is None else partial(_limit_memory, memory_limit),
        )
        self.url = f"http://127.0.0.1:{self.port}/" + ("" if dashapp_serve else "slicer")
        self._wait()

    def _wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"panel serve exited:\n{self.log.read_text()}")
            url = f"http://127.0.0.1:{self.port}/liveness"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
                return
            time.sleep(0.3)
        raise RuntimeError(f"panel serve did not start in {timeout} s:\n{self.log.read_text()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Stop the server and every process of its group (--num-procs children, workers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            self.proc.poll()  # (reaps the parent)
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break  # all gone
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()


@pytest.fixture
def serve(tmp_path):
    """Start ``panel serve apps/slicer.py --args --root ROOT``; stopped after the test."""
    servers: list[PanelServer] = []

    def start(
        root: Path | None,
        env: dict[str, str] | None = None,
        options: list[str] | None = None,
        **kwargs,
    ) -> PanelServer:
        server = PanelServer(root, tmp_path, env, options, **kwargs)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()
