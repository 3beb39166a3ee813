"""A served dashapp asks for its access token, for pages and websockets, and binds to loopback.

Real servers (``dashapp serve`` and ``panel serve apps/slicer.py``) in subprocesses; real HTTP
requests, real Bokeh websocket handshakes (without an Origin header, as a script sends them),
the real listening sockets. See dashapp/auth.py and docs/deployment.md.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import subprocess
import urllib.parse
import uuid

import h5py
import numpy as np
import psutil
import pytest

from dashapp import auth

from .conftest import TEST_TOKEN


def _get(server, path: str, headers: dict[str, str] | None = None):
    """One request, redirects not followed: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _websocket(server, path: str, headers: dict[str, str] | None = None):
    """A Bokeh websocket handshake with a made-up session token, no Origin header.

    Returns the websocket (the server took it) or the HTTP status it was refused with.
    """
    from bokeh.util.token import generate_jwt_token
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    token = generate_jwt_token("made-up-session-id", signed=False)

    async def connect():
        request = HTTPRequest(f"ws://127.0.0.1:{server.port}{path}", headers=headers or {})
        try:
            ws = await websocket_connect(request, subprotocols=["bokeh", token])
        except HTTPClientError as exc:
            return exc.code
        try:
            first = await asyncio.wait_for(ws.read_message(), 20)
        finally:
            ws.close()
        return first  # None: the server closed it without a session

    return _run(connect())


def _run(coroutine):
    """Run ``coroutine`` to its end in a thread of its own: a browser test earlier in the same
    process leaves an event loop running in this thread (Playwright's sync API)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    with h5py.File(root / "secret-run.h5", "w") as f:
        f["volume"] = np.arange(4 * 8 * 8, dtype="f4").reshape(4, 8, 8)
    with h5py.File(root / "neighbour-run.h5", "w") as f:  # named by no link: only a listing
        f["iterations"] = np.zeros((2, 4, 4), dtype="f4")
    return root


# ---------------------------------------------------------------------------- dashapp serve
def test_dashapp_serve_listens_on_loopback_only(serve, data_root):
    server = serve(data_root, dashapp_serve=True)
    listening = {
        c.laddr.ip
        for c in psutil.Process(server.proc.pid).net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
    }
    assert listening, "nothing listens on the port"
    assert listening <= {"127.0.0.1"}, listening
    ips = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    others = [ip for ip in ips if ":" not in ip and not ip.startswith("127.")]
    assert others, "this machine has no non-loopback IPv4 address to try"
    for ip in others:  # this machine's own address on its network: nobody answers there
        with pytest.raises(OSError), socket.create_connection((ip, server.port), timeout=5):
            pass


def test_dashapp_serve_prints_the_url_with_a_new_token(tmp_path):
    """Without $DASHAPP_TOKEN, each run makes its own and prints it (nothing else runs)."""
    import os
    import sys

    code = (
        "import os, sys\n"
        "os.execvpe = lambda f, cmd, env: (print(env['DASHAPP_TOKEN'], env['BOKEH_SIGN_SESSIONS'],"
        " json.dumps(cmd)), sys.exit(0))\n"
        "import json\n"
        "from dashapp.cli import main\n"
        "main(['serve', '--port', '5999'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DASHAPP_TOKEN"}
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        for _ in range(2)
    ]
    tokens = []
    for out in runs:
        assert out.returncode == 0, out.stderr
        token, signed, cmd = out.stdout.strip().split(" ", 2)
        assert f"dashapp: open http://localhost:5999/?token={token}" in out.stderr
        assert signed == "yes"
        cmd = json.loads(cmd)
        assert cmd[cmd.index("--address") + 1] == "127.0.0.1"
        assert cmd[cmd.index("--auth-module") + 1] == str(auth.AUTH_MODULE)
        assert token not in " ".join(cmd)  # argv is public (ps); the environment is not
        tokens.append(token)
    assert tokens[0] != tokens[1]
    assert len(tokens[0]) >= 32


def test_without_the_token_the_page_is_refused(serve, data_root):
    server = serve(data_root, dashapp_serve=True)
    status, headers, _ = _get(server, "/?file=secret-run.h5&dataset=/volume")
    assert status == 302
    assert "/login?next=" in headers["Location"]
    for path in ("/login?next=/", "/?token=wrong", "/login?next=/%3Ftoken%3Dwrong"):
        status, headers, body = _get(server, path)
        if status == 302:
            status, headers, body = _get(server, headers["Location"].lstrip("."))
        assert status == 401, (path, status)
        assert "access token" in body
        assert "secret-run" not in body
        assert "bokeh" not in body.lower()
    assert _get(server, "/slicer")[0] == 302
    assert _get(server, "/slicer/autoload.js?bokeh-autoload-element=x")[0] == 302
    assert _get(server, "/slicer/metadata")[0] == 302


def test_without_the_token_no_websocket_session(serve, data_root):
    from bokeh.client import pull_session

    server = serve(data_root, dashapp_serve=True)
    assert _websocket(server, "/ws") == 403  # no Origin header, no token: refused
    assert _websocket(server, "/slicer/ws") == 403
    with pytest.raises(Exception):  # noqa: B017 - Bokeh's client raises OSError or IOError
        pull_session(url=server.url)
    # the token opens the websocket, but a session id the server did not sign gets no session
    answer = _websocket(server, "/ws", {"Authorization": f"token {TEST_TOKEN}"})
    assert answer is None or answer == 403, answer
    assert server.alive()


def test_the_token_url_sets_a_cookie_and_leaves_the_address(serve, data_root):
    server = serve(data_root, dashapp_serve=True)
    status, headers, _ = _get(server, f"/?file=secret-run.h5&token={TEST_TOKEN}")
    assert status == 302
    status, headers, _ = _get(server, headers["Location"].lstrip("."))
    assert status == 302  # the login handler: cookie set, back to the page without the token
    assert headers["Location"] == "/?file=secret-run.h5"
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"{auth.cookie_name(TEST_TOKEN)}={TEST_TOKEN};")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    status, _, body = _get(server, "/?file=secret-run.h5", {"Cookie": cookie.split(";")[0]})
    assert status == 200
    assert "bokeh" in body.lower()
    status, _, body = _get(server, "/", {"Authorization": f"token {TEST_TOKEN}"})
    assert status == 200
    assert "bokeh" in body.lower()
    assert (
        _get(server, "/login?next=//evil.example.org/&token=" + TEST_TOKEN)[1]["Location"] == "/"
    )  # never sent elsewhere


def test_login_page_is_text():
    page = auth.login_page('/?file="><script>alert(1)</script>')
    assert "<script>alert" not in page
    assert "&quot;&gt;&lt;script&gt;" in page


# ------------------------------------------------------------------ panel serve apps/slicer.py
def _pull_document(server, path: str, query: dict[str, str]) -> str:
    """The text of the document a websocket client gets, as Bokeh's protocol sends it."""
    from bokeh.util.token import generate_jwt_token
    from tornado.websocket import websocket_connect

    token = generate_jwt_token(uuid.uuid4().hex, signed=False)  # a new session each time
    url = f"ws://127.0.0.1:{server.port}{path}?{urllib.parse.urlencode(query)}"

    async def pull() -> str:
        ws = await websocket_connect(url, subprotocols=["bokeh", token])
        try:
            frames = [await asyncio.wait_for(ws.read_message(), 60) for _ in range(3)]  # ACK
            assert json.loads(frames[0])["msgtype"] == "ACK"
            for part in ({"msgid": "1", "msgtype": "PULL-DOC-REQ"}, {}, {}):
                await ws.write_message(json.dumps(part))
            while True:  # the app may patch the document first
                header = json.loads(await asyncio.wait_for(ws.read_message(), 60))
                await ws.read_message()  # metadata
                content = await ws.read_message()
                for _ in range(2 * header.get("num_buffers", 0)):
                    await ws.read_message()
                if header["msgtype"] == "PULL-DOC-REPLY":
                    return content
        finally:
            ws.close()

    return _run(pull())


def test_panel_serve_without_the_token_shows_only_the_token_page(serve, data_root):
    """``panel serve apps/slicer.py`` has no auth module: the page asks, and shows no data."""
    server = serve(data_root)
    status, _, body = _get(server, "/slicer?file=secret-run.h5&dataset=/volume")
    assert status == 200
    assert "secret-run" not in body
    query = {"file": "secret-run.h5", "dataset": "/volume"}
    text = _pull_document(server, "/slicer/ws", query)  # a script: no Origin, no token
    assert "access token" in text
    assert "neighbour-run" not in text  # no folder listing, no file tree
    text = _pull_document(server, "/slicer/ws", {**query, "token": "wrong"})
    assert "not this server" in text
    assert "neighbour-run" not in text
    text = _pull_document(server, "/slicer/ws", {**query, "token": TEST_TOKEN})
    assert "neighbour-run" in text
    assert "access token" not in text
    log = server.log.read_text()
    assert f"?token={TEST_TOKEN}" in log  # the owner finds the URL in the server's output


def test_session_access_rules(monkeypatch, tmp_path):
    monkeypatch.setenv("DASHAPP_TOKEN", "t" * 32)
    monkeypatch.delenv("DASHAPP_ALLOW_VIEWERS", raising=False)
    monkeypatch.delenv("DASHAPP_OWNERS", raising=False)
    cookie = {auth.cookie_name(): "t" * 32}
    assert auth.access_of(cookies=cookie) == auth.OWNER
    assert auth.access_of(headers={"Authorization": "token " + "t" * 32}) == auth.OWNER
    assert auth.access_of(arguments={"token": [b"t" * 32]}) == auth.OWNER
    assert auth.access_of(arguments={"token": [b"wrong"]}) is None
    assert auth.access_of(cookies={"is_guest": "1", "user": "x"}) is None
    monkeypatch.setenv("DASHAPP_ALLOW_VIEWERS", "1")
    assert auth.access_of() == auth.VIEWER
    monkeypatch.setenv("DASHAPP_OWNERS", "ada")
    assert auth.access_of(user="ada") == auth.OWNER
    assert auth.strip_token("/x?a=1&token=t&b=2") == "/x?a=1&b=2"


def test_token_file_is_private_and_kept(monkeypatch, tmp_path):
    monkeypatch.delenv("DASHAPP_TOKEN", raising=False)
    monkeypatch.setenv("DASHAPP_CACHE", str(tmp_path / "cache"))
    first = auth.server_token()
    assert auth.server_token() == first
    assert len(first) >= 32
    path = auth.token_file()
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    assert auth.server_token() == first
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_token_is_not_in_a_shared_view_link():
    query = urllib.parse.urlencode({"file": "a.h5", "token": "x"})
    assert "token" not in auth.strip_token(f"/?{query}")


def test_show_opens_the_url_with_the_token(serve, data_root, tmp_path):
    """``dashapp serve --show`` opens the token URL (panel's own --show would open a page
    that asks for the token)."""
    import time

    opened = tmp_path / "opened"
    browser = f"/bin/sh -c 'echo %s > {opened}'"  # webbrowser runs $BROWSER with the URL
    server = serve(data_root, env={"BROWSER": browser}, options=["--show"], dashapp_serve=True)
    for _ in range(100):
        if opened.exists() and opened.read_text().strip():
            break
        time.sleep(0.2)
    assert opened.read_text().strip() == f"http://localhost:{server.port}/?token={TEST_TOKEN}"


def test_the_token_url_is_printed_again_below_panels_start_up_lines(serve, data_root):
    """Bokeh names its address without the token after dashapp's first line; the URL to open
    comes again, last, once the server answers."""
    import time

    server = serve(data_root, dashapp_serve=True)
    ready = f"dashapp: ready, open http://localhost:{server.port}/?token={TEST_TOKEN}"
    for _ in range(100):
        if ready in server.log.read_text():
            break
        time.sleep(0.2)
    log = server.log.read_text()
    assert ready in log
    assert log.index(ready) > log.index("Bokeh app running at")
