"""The "HDF5 Slicer" tile in a real JupyterLab: jupyter-server-proxy, Panel, and Debian's Chromium.

One ``jupyter lab`` per module, started as a user would (token, loopback, its own config, data and
runtime folders), under a JupyterHub-like base URL ``/user/ada/`` so that every prefix is tested.
Its root folder holds the demo workspace and one file of our own, so the pages show that the tile
browses the Jupyter root. The tile's Panel process is started by the proxy on the first request.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import secrets
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import h5py
import numpy as np
import psutil
import pytest
from playwright.sync_api import FrameLocator, Locator, Page, expect

from dashapp.demo import ensure_demo_workspace
from dashapp.jupyter import ICON, proxied_url
from tests.conftest import free_port

pytestmark = pytest.mark.browser

BASE_URL = "/user/ada/"
#: A cold start of the tile: Panel, Bokeh, HoloViews, h5py imported on a busy 2-core machine.
COLD = 120_000
TIMEOUT = 30_000
ARTIFACTS = Path(os.environ.get("DASHAPP_TEST_ARTIFACTS", "/tmp/dashapp-test-artifacts"))


class JupyterLab:
    """``jupyter lab`` with jupyter-server-proxy in a subprocess, isolated from the user's setup."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.origin = f"http://127.0.0.1:{self.port}"
        self.url = self.origin + BASE_URL
        self.tmp = tmp
        self.root = tmp / "root"
        self.cache = tmp / "cache"
        ensure_demo_workspace(self.root)  # inversion/, survey/ at the Jupyter root
        with h5py.File(self.root / "mine.h5", "w") as f:
            f["stack"] = np.arange(4 * 5 * 6, dtype="f4").reshape(4, 5, 6)
        self.log = tmp / "jupyter.log"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DASHAPP_", "JUPYTER", "JPY_", "XDG_"))
        }
        env.update(
            DASHAPP_CACHE=str(self.cache),
            JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"),
            JUPYTER_DATA_DIR=str(tmp / "jupyter-data"),
            JUPYTER_RUNTIME_DIR=str(tmp / "jupyter-runtime"),
            IPYTHONDIR=str(tmp / "ipython"),
            XDG_CONFIG_HOME=str(tmp / "xdg-config"),
            XDG_CACHE_HOME=str(tmp / "xdg-cache"),
            XDG_DATA_HOME=str(tmp / "xdg-data"),
            TMPDIR=str(tmp / "t"),  # jupyter-server-proxy makes the unix socket's folder here
            PYTHONUNBUFFERED="1",
        )
        (tmp / "t").mkdir()
        cmd = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser", "--allow-root",
            "--ip", "127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            f"--ServerApp.base_url={BASE_URL}",
            # stay off the network: no news feed, no update check
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]  # fmt: skip
        self._log = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, cwd=tmp, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started

    def _wait(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited:\n{self.log.read_text()}")
            with contextlib.suppress(OSError):
                if self.get("api/status")[0] == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"jupyter lab did not start in {timeout} s:\n{self.log.read_text()}")

    def get(self, path: str, token: bool = True, timeout: float = 10) -> tuple[int, dict, bytes]:
        """GET ``<base_url><path>`` (with the token unless told otherwise), without redirects."""
        request = urllib.request.Request(self.url + path)
        if token:
            request.add_header("Authorization", f"token {self.token}")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def slicer_process(self) -> psutil.Process:
        """The tile's ``panel serve`` process, started by jupyter-server-proxy."""
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "panel" in child.cmdline() and "serve" in child.cmdline():
                    return child
        raise LookupError("no panel serve process under jupyter lab")

    def login(self, page: Page) -> None:
        """Log the browser in with the token, as the URL printed by ``jupyter lab`` does."""
        page.goto(f"{self.url}api/status?token={self.token}")
        assert any(c["name"].startswith("username-") for c in page.context.cookies())

    def stop(self) -> None:
        children: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        _, alive = psutil.wait_procs(children, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        self._log.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[JupyterLab]:
    server = JupyterLab(tmp_path_factory.mktemp("lab"))
    print(f"jupyter lab answered after {server.start_seconds:.1f} s")
    yield server
    server.stop()


# --------------------------------------------------------------------------------- helpers
def plot_png(where: Page | FrameLocator) -> bytes:
    return where.locator(".dashapp-plot canvas").first.screenshot()


def wait_for_picture(where: Page | FrameLocator, not_equal: bytes | None = None) -> bytes:
    """Wait until the plot shows a frame (different from ``not_equal``) that has settled."""
    where.locator(".dashapp-status-text").first.wait_for(timeout=COLD)
    deadline = time.monotonic() + 30
    last = plot_png(where)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = plot_png(where)
        if now == last and (not_equal is None or now != not_equal):
            return now
        last = now
    raise AssertionError("the picture did not change" if not_equal else "the plot never settled")


def href(page: Page) -> str:
    return page.evaluate("window.location.href")  # page.url lags behind history.replaceState


def wait_query(page: Page, **expected: str) -> dict[str, str]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        q = {k: v[0] for k, v in parse_qs(urlparse(href(page)).query).items()}
        if all(q.get(k) == v for k, v in expected.items()):
            return q
        time.sleep(0.1)
    raise AssertionError(f"URL {href(page)} never had {expected}")


def status(where: Page | FrameLocator) -> Locator:
    return where.locator(".dashapp-status-text").first


@contextlib.contextmanager
def screenshot_on_failure(page: Page, name: str) -> Iterator[None]:
    """Keep a screenshot of the page when the block fails (in ``$DASHAPP_TEST_ARTIFACTS``)."""
    try:
        yield
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            page.screenshot(path=str(ARTIFACTS / f"jupyter-{name}-{int(time.time())}.png"))
        raise


# ----------------------------------------------------------------------------------- tests
def test_servers_info_lists_the_tile(lab):
    code, _, body = lab.get("server-proxy/servers-info")
    assert code == 200
    servers = {s["name"]: s for s in json.loads(body)["server_processes"]}
    tile = servers["dashapp"]
    assert tile["launcher_entry"] == {
        "enabled": True,
        "title": "HDF5 Slicer",
        "path_info": "dashapp/",
        "category": "Notebook",
        "icon_url": f"{BASE_URL}server-proxy/icon/dashapp",
    }
    assert tile["new_browser_tab"] is False
    code, headers, icon = lab.get("server-proxy/icon/dashapp")
    assert code == 200
    assert headers["Content-Type"] == "image/svg+xml"
    assert icon == ICON.read_bytes()


def test_the_proxy_asks_for_the_login(lab):
    assert lab.get("server-proxy/servers-info", token=False)[0] in (302, 403)
    code, headers, _ = lab.get("dashapp/", token=False)
    assert code in (302, 403)
    if code == 302:
        assert "/login" in headers["Location"]
    # the slicer was not started for an anonymous request
    with pytest.raises(LookupError):
        lab.slicer_process()


def test_cold_start_through_the_proxy(lab):
    started = time.monotonic()
    code, headers, body = lab.get("dashapp/", timeout=COLD / 1000)
    seconds = time.monotonic() - started
    print(f"the tile's slicer answered through the proxy after a cold start of {seconds:.1f} s")
    assert code == 200, body[-2000:]
    assert headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert "dashapp · HDF5 slicer" in page
    # Bokeh's and Panel's resources are requested relative to <base_url>dashapp/
    assert 'src="static/js/bokeh.min.js' in page
    code, headers, js = lab.get("dashapp/static/js/bokeh.min.js")
    assert code == 200
    assert "javascript" in headers["Content-Type"]
    assert b"Bokeh" in js[:5000]
    code, _, _ = lab.get("dashapp/static/extensions/panel/panel.min.js")
    assert code == 200

    # Panel listens on a unix socket in a private folder: nothing on TCP, loopback or not.
    proc = lab.slicer_process()
    cmd = proc.cmdline()
    socket_path = Path(cmd[cmd.index("--unix-socket") + 1])
    assert socket_path.is_socket()
    assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
    assert not [c for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert cmd[cmd.index("--prefix") + 1] == f"{BASE_URL}dashapp"
    assert cmd[-2:] == ["--root", str(lab.root)]  # the Jupyter root, not the demo
    assert proc.environ()["DASHAPP_JUPYTER_BASE_URL"] == BASE_URL
    assert not (lab.cache / "demo-v2").exists()  # the demo was not written: not needed


def test_the_tiles_panel_wants_the_token_the_proxy_brings(lab):
    """Around the proxy (another user on the TCP fallback, or anything reaching the socket),
    Panel refuses pages and websockets without the token; through it, the proxy adds it."""
    import http.client
    import socket as sockets

    assert lab.get("dashapp/", timeout=COLD / 1000)[0] == 200  # through the proxy
    proc = lab.slicer_process()
    cmd = proc.cmdline()
    path = cmd[cmd.index("--unix-socket") + 1]
    token = proc.environ()["DASHAPP_TOKEN"]
    assert token not in " ".join(cmd)  # the process list is public; the environment is not

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
            self.sock.connect(path)

    def direct(headers: dict[str, str]) -> tuple[int, str]:
        conn = UnixConnection("localhost", timeout=60)
        conn.request("GET", f"{BASE_URL}dashapp/", headers=headers)
        r = conn.getresponse()
        out = r.status, r.getheader("Location") or ""
        conn.close()
        return out

    code, location = direct({})
    assert code == 302
    assert "login" in location
    ws = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    conn = UnixConnection("localhost", timeout=60)
    conn.request("GET", f"{BASE_URL}dashapp/ws", headers=ws)  # no Origin, no token
    assert conn.getresponse().status == 403
    conn.close()
    assert direct({"Authorization": f"token {token}"})[0] == 200


def test_deep_link_and_keyboard_through_the_proxy(lab, page: Page):
    lab.login(page)
    with screenshot_on_failure(page, "deep-link"):
        page.goto(f"{lab.url}dashapp/?file=inversion/model.h5&dataset=/true_model&axis=0&index=10")
        expect(page.locator(".dashapp-title").first).to_contain_text("/true_model", timeout=COLD)
        expect(status(page)).to_contain_text("index 10 of", timeout=TIMEOUT)
        before = wait_for_picture(page)
        assert href(page).startswith(f"{lab.url}dashapp/?file=inversion/model.h5")

        # Keyboard on the slider: the server reads the next slice and sends it over the
        # websocket, through the proxy; the picture and the URL follow.
        handle = page.locator(".noUi-handle").first
        handle.focus()
        page.keyboard.press("ArrowRight")
        wait_query(page, index="11")
        expect(status(page)).to_contain_text("index 11 of", timeout=TIMEOUT)
        after = wait_for_picture(page, not_equal=before)
        assert after != before


def test_one_route_and_old_links_redirect_through_the_proxy(lab, page: Page):
    """<base_url>dashapp/slicer?... (the route of every way of serving) opens the view, and an
    old <base_url>dashapp/slicer_app?... link lands there with the same view."""
    lab.login(page)
    link = "file=inversion/model.h5&dataset=/true_model&axis=0&index=10"
    with screenshot_on_failure(page, "routes"):
        for path in ("dashapp/slicer", "dashapp/slicer_app"):
            page.goto(f"{lab.url}{path}?{link}")
            expect(page.locator(".dashapp-title").first).to_contain_text(
                "/true_model", timeout=COLD
            )
            expect(status(page)).to_contain_text("index 10 of", timeout=TIMEOUT)
            assert href(page).startswith(f"{lab.url}dashapp/slicer?file=inversion/model.h5")


def test_proxied_url_reaches_a_local_service(lab, tmp_path):
    """What a Dask dashboard link would do: a local web server, reached through the proxy."""
    (tmp_path / "status").write_text("dask dashboard stand-in")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    service = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=service.serve_forever, daemon=True)
    thread.start()
    try:
        local = f"http://127.0.0.1:{service.server_address[1]}/status"
        path = proxied_url(local, base_url=BASE_URL)
        assert path == f"{BASE_URL}proxy/{service.server_address[1]}/status"
        code, _, body = lab.get(path.removeprefix(BASE_URL))
        assert (code, body) == (200, b"dask dashboard stand-in")
    finally:
        service.shutdown()
        service.server_close()


def test_launcher_tile_opens_the_app_in_a_lab_tab(lab, page: Page):
    with screenshot_on_failure(page, "launcher"):
        page.goto(f"{lab.url}lab?reset&token={lab.token}")
        tile = page.locator(".jp-LauncherCard", has_text="HDF5 Slicer")
        expect(tile).to_be_visible(timeout=COLD)
        expect(page.get_by_text("HDF5 Slicer", exact=True)).to_be_visible()
        icon = tile.locator("img")
        expect(icon).to_have_attribute("src", f"{BASE_URL}server-proxy/icon/dashapp")
        icon.evaluate("img => img.decode()")  # the SVG loads and decodes
        assert icon.evaluate("img => img.naturalWidth") > 0

        tile.click()
        # A JupyterLab tab with the app in an iframe, under the proxy's prefix.
        expect(page.locator(".lm-TabBar-tab", has_text="HDF5 Slicer")).to_be_visible()
        frame_element = page.locator(f"iframe[src*='{BASE_URL}dashapp/']")
        expect(frame_element).to_be_visible(timeout=TIMEOUT)
        app = page.frame_locator(f"iframe[src*='{BASE_URL}dashapp/']")
        expect(app.get_by_text("mine.h5", exact=True)).to_be_visible(timeout=COLD)
        # a folder of one's own, nothing open yet: what to do, not an empty plot
        expect(app.get_by_text("No dataset open yet")).to_be_visible()

        # Use it in the tab: open a file; the picture arrives over the proxied websocket.
        app.get_by_text("inversion", exact=True).click()
        app.get_by_text("model.h5", exact=True).click()
        expect(app.locator(".dashapp-title").first).to_contain_text("/model_history", timeout=COLD)
        wait_for_picture(app)
        expect(status(app)).to_contain_text("index", timeout=TIMEOUT)


def test_in_a_lab_tab_the_plot_has_the_width_and_copy_link_opens_the_view(lab, browser):
    """The tile's app in a JupyterLab tab beside Lab's file browser (a ~1200 px window): the
    plot gets most of the tab, not ~140 px between fixed columns; and "Copy link" gives the
    proxied address of the view, which opens the same view in a new page."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.origin)
    page = context.new_page()
    with screenshot_on_failure(page, "lab-width"):
        page.goto(f"{lab.url}lab?reset&token={lab.token}")
        tile = page.locator(".jp-LauncherCard", has_text="HDF5 Slicer")
        expect(tile).to_be_visible(timeout=COLD)
        tile.click()
        frame = page.locator(f"iframe[src*='{BASE_URL}dashapp/']")
        expect(frame).to_be_visible(timeout=TIMEOUT)
        app = page.frame_locator(f"iframe[src*='{BASE_URL}dashapp/']")
        expect(app.get_by_text("No dataset open yet")).to_be_visible(timeout=COLD)
        tab = frame.bounding_box()["width"]
        assert tab < 1000, tab  # Lab's own sidebar takes its share of the window
        # Open a file (the first page keeps the file browser), then fold the browser away with
        # the page's top-left button; the controls were folded from the start.
        app.get_by_text("inversion", exact=True).click()
        app.get_by_text("model.h5", exact=True).click()
        expect(app.locator(".dashapp-title").first).to_contain_text("/model_history", timeout=COLD)
        expect(app.get_by_role("button", name="Show controls")).to_be_visible()
        app.locator("#sidebar-toggle").click()
        wait_for_picture(app)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jupyter-lab-tab.png"))
        width = app.locator(".dashapp-plot").first.bounding_box()["width"]
        assert width > 0.75 * tab, (width, tab)

        app.get_by_role("button", name="Copy link").click()
        box = app.locator(".dashapp-link input").first
        expect(box).to_be_visible(timeout=TIMEOUT)
        expect(box).to_have_value(re.compile("file=inversion/model.h5"), timeout=TIMEOUT)
        link = box.input_value()
        assert link.startswith(f"{lab.url}dashapp/?file=inversion/model.h5&dataset=/model_history")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == link

        other = context.new_page()  # the link outside Lab: the app alone, through the proxy
        other.goto(link)
        expect(other.locator(".dashapp-title").first).to_contain_text(
            "/model_history", timeout=COLD
        )
        wait_for_picture(other)
        q = wait_query(other, file="inversion/model.h5", dataset="/model_history")
        given = {k: v[0] for k, v in parse_qs(urlparse(link).query).items()}
        for key in ("axis", "index", "d0", "cmap"):
            assert q[key] == given[key], key
    context.close()
