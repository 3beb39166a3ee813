"""The tile's jupyter-server-proxy configuration and :func:`dashapp.jupyter.proxied_url`.

No server here: the configuration goes through jupyter-server-proxy's own ``ServerProcess`` and
its command is rendered the way the proxy renders it. ``test_jupyter.py`` runs it for real.
"""

from __future__ import annotations

import importlib.resources
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import entry_points

import pytest
from jupyter_server_proxy.config import ServerProcess

from dashapp import jupyter
from dashapp.app import SLICER_SCRIPT
from dashapp.auth import AUTH_MODULE
from dashapp.jupyter import proxied_url, setup_slicer, slicer_command


def render(cmd: list[str], **args: object) -> list[str]:
    """Fill ``{port}``/``{unix_socket}``/``{base_url}`` as jupyter-server-proxy does."""
    values = {"port": 0, "unix_socket": "", "base_url": "/", **args}
    return [c.format(**values) for c in cmd]


def option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_entry_point_is_registered():
    (ep,) = [e for e in entry_points(group="jupyter_serverproxy_servers") if e.name == "dashapp"]
    assert ep.load() is setup_slicer


def test_jupyter_server_proxy_accepts_the_config():
    sp = ServerProcess(name="dashapp", **setup_slicer())
    assert sp.launcher_entry.title == "HDF5 Slicer"
    assert sp.launcher_entry.path_info == "dashapp/"
    assert sp.launcher_entry.icon_path == str(jupyter.ICON)
    assert sp.absolute_url is True
    assert sp.timeout >= 60  # a cold start imports the UI stack and may write the demo
    assert sp.new_browser_tab is False  # a JupyterLab tab, not a browser tab
    assert sp.unix_socket is True
    env = dict(sp.environment)
    token = env.pop("DASHAPP_TOKEN")
    assert len(token) >= 32
    assert len(env.pop("BOKEH_SECRET_KEY")) >= 32
    assert env == {
        "DASHAPP_JUPYTER_BASE_URL": "{base_url}",
        "PYTHONUNBUFFERED": "1",
        "BOKEH_SIGN_SESSIONS": "yes",
    }
    # the proxy presents the token on every request; the browser never sees a token page
    assert sp.request_headers_override == {"Authorization": f"token {token}"}
    assert setup_slicer()["environment"]["DASHAPP_TOKEN"] != token  # a new one per server


@pytest.mark.parametrize(
    ("base_url", "prefix"), [("/", "/dashapp"), ("/user/ada/", "/user/ada/dashapp")]
)
def test_command_on_a_unix_socket_under_the_prefix(base_url, prefix, monkeypatch, tmp_path):
    monkeypatch.setenv("DASHAPP_ROOT", str(tmp_path))
    sp = ServerProcess(name="dashapp", **setup_slicer())
    socket = str(tmp_path / "jsp" / "socket")
    cmd = render(sp.command(port=0, unix_socket=socket, base_url=base_url), base_url=base_url)
    assert cmd[:5] == [sys.executable, "-m", "panel", "serve", str(SLICER_SCRIPT)]
    assert option(cmd, "--unix-socket") == socket
    assert "--port" not in cmd
    assert "--address" not in cmd
    assert option(cmd, "--prefix") == prefix
    assert option(cmd, "--index") == "slicer"  # the app itself at <prefix>/ (and <prefix>/slicer)
    assert option(cmd, "--plugins") == "dashapp.routes"  # old <prefix>/slicer_app links redirect
    assert option(cmd, "--allow-websocket-origin") == "*"
    assert option(cmd, "--auth-module") == str(AUTH_MODULE)  # the token, for every request
    assert cmd[-3:] == ["--args", "--root", str(tmp_path)]


def test_command_on_tcp_binds_loopback_only():
    cmd = render(slicer_command("/", port=43210, root="/data"))
    assert option(cmd, "--address") == "127.0.0.1"
    assert option(cmd, "--port") == "43210"
    assert "--unix-socket" not in cmd


def test_braces_in_a_root_survive_the_proxy_formatting(tmp_path):
    odd = tmp_path / "run {1}" / "out}{"
    odd.mkdir(parents=True)
    cmd = render(slicer_command("/u/{x}/", unix_socket="/s", root=str(odd)))
    assert cmd[-1] == str(odd)
    assert option(cmd, "--prefix") == "/u/{x}/dashapp"


def test_root_is_dashapp_root_then_jupyter_root_then_demo(monkeypatch, tmp_path):
    monkeypatch.setenv("DASHAPP_ROOT", str(tmp_path))
    assert jupyter.slicer_root() == str(tmp_path)
    monkeypatch.delenv("DASHAPP_ROOT")
    monkeypatch.setattr(jupyter, "_jupyter_root_dir", lambda: str(tmp_path))
    assert jupyter.slicer_root() == str(tmp_path.resolve())
    monkeypatch.setattr(jupyter, "_jupyter_root_dir", lambda: None)
    assert jupyter.slicer_root() is None  # the app writes and shows the demo workspace
    assert "--args" not in slicer_command("/", unix_socket="/s")


def test_no_jupyter_server_in_this_process():
    assert jupyter._jupyter_root_dir() is None


def test_icon_is_a_clean_svg_shipped_in_the_package():
    icon = importlib.resources.files("dashapp") / "assets" / "dashapp.svg"
    assert icon.is_file()
    assert jupyter.ICON.read_bytes() == icon.read_bytes()
    svg = ET.fromstring(icon.read_bytes())
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert svg.get("viewBox") == "0 0 64 64"
    assert not [e for e in svg.iter() if e.tag.endswith(("script", "image", "foreignObject"))]


@pytest.fixture
def no_jupyter_env(monkeypatch):
    monkeypatch.delenv("DASHAPP_JUPYTER_BASE_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("http://127.0.0.1:8787/status", "/user/ada/", "/user/ada/proxy/8787/status"),
        ("http://localhost:8787/status", "/", "/proxy/8787/status"),
        ("http://127.0.0.1:8787", "/user/ada", "/user/ada/proxy/8787/"),
        (
            "http://[::1]:8787/individual-plots.json?a=1#x",
            "/",
            "/proxy/8787/individual-plots.json?a=1#x",
        ),
        ("http://0.0.0.0:8787/status", "/", "/proxy/8787/status"),
        ("http://nid001234:8787/status", "/user/ada/", "/user/ada/proxy/nid001234:8787/status"),
        ("https://example.org/docs", "/", "https://example.org/docs"),  # no port: unchanged
        ("tcp://127.0.0.1:8786", "/", "tcp://127.0.0.1:8786"),  # not a web page
        ("http://127.0.0.1:port/", "/", "http://127.0.0.1:port/"),  # nonsense: unchanged
    ],
)
def test_proxied_url(url, base, expected, no_jupyter_env):
    assert proxied_url(url, base_url=base) == expected


def test_proxied_url_outside_jupyter_is_the_url(no_jupyter_env):
    assert jupyter.jupyter_base_url() is None
    assert proxied_url("http://127.0.0.1:8787/status") == "http://127.0.0.1:8787/status"


def test_proxied_url_under_jupyterhub_and_under_the_tile(no_jupyter_env, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/bob/")
    assert proxied_url("http://127.0.0.1:8787/status") == "/user/bob/proxy/8787/status"
    # the tile's Panel process is told the base URL it was started with
    monkeypatch.setenv("DASHAPP_JUPYTER_BASE_URL", "/hub/user/carol/")
    assert proxied_url("http://127.0.0.1:8787/status") == "/hub/user/carol/proxy/8787/status"
    monkeypatch.setenv("DASHAPP_JUPYTER_BASE_URL", "/")
    assert proxied_url("http://127.0.0.1:8787/status") == "/proxy/8787/status"
