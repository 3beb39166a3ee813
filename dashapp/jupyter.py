"""JupyterLab integration: the "HDF5 Slicer" launcher tile, and links through the Jupyter proxy.

Installing dashapp registers :func:`setup_slicer` as a ``jupyter_serverproxy_servers`` entry
point. jupyter-server-proxy then shows an "HDF5 Slicer" tile in the JupyterLab launcher; the first
request to ``<base_url>dashapp/`` starts ``panel serve`` on the packaged slicer script
(:data:`dashapp.routes.SLICER_SCRIPT`) and proxies HTTP and websockets to it, behind the Jupyter
server's own authentication:

- Panel listens on a unix socket in a private temporary folder (mode 0700), so no other user of a
  shared login or compute node can reach it around the proxy (on systems without unix sockets it
  falls back to TCP on 127.0.0.1 only).
- ``absolute_url`` is on and Panel runs with ``--prefix <base_url>dashapp``: Panel sees the same
  paths as the browser, so its page, static resources and websocket URL all carry the prefix.
  ``--index slicer`` serves the app at the prefix itself too, so ``<base_url>dashapp/?file=...``
  and ``<base_url>dashapp/slicer?file=...`` (the route of every way of serving it) are deep
  links; old ``<base_url>dashapp/slicer_app?...`` links redirect (:mod:`dashapp.routes`).
- ``--allow-websocket-origin=*``: the browser's origin is the Jupyter server's public host, which
  the Panel process cannot know (JupyterHub, Binder, an SSH tunnel). The Jupyter server checks the
  origin of every websocket before it is proxied.
- The access token (:mod:`dashapp.auth`): the Jupyter server makes one when it loads this
  configuration and gives it to the Panel process in its environment; the proxy adds
  ``Authorization: token ...`` to every request and websocket it forwards. So the Panel
  process refuses anything that does not come through the proxy (a local user on the TCP
  fallback), the browser never needs the token, and the tile's user is the server's owner.

The folder the tile browses is ``$DASHAPP_ROOT`` if set, else the Jupyter server's root folder
(what JupyterLab's file browser shows), else the built-in demo workspace.

:func:`proxied_url` turns a local service's URL (a Dask dashboard on ``127.0.0.1:8787``) into
its address through the proxy, so links work from the user's browser.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import settings
from .auth import AUTH_MODULE, new_token
from .routes import PLUGIN, ROUTE, SLICER_SCRIPT
from .settings import BASE_URL_ENV, TOKEN_ENV

__all__ = [
    "ICON",
    "NAME",
    "START_TIMEOUT",
    "TITLE",
    "jupyter_base_url",
    "proxied_url",
    "setup_slicer",
    "slicer_command",
    "slicer_root",
]

#: The server's name: its URL is ``<base_url>dashapp/``.
NAME = "dashapp"
#: The launcher tile's title.
TITLE = "HDF5 Slicer"
#: The launcher tile's icon (shipped in the package).
ICON = Path(__file__).with_name("assets") / "dashapp.svg"
#: Seconds the proxy waits for Panel to answer. A cold start imports Panel, Bokeh, HoloViews and
#: h5py and may write the demo workspace first: 6–21 s on a busy 2-core machine, more on a login
#: node or from a Python environment on a parallel file system.
START_TIMEOUT = 180.0

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""}


def _use_unix_socket() -> bool:
    return hasattr(socket, "AF_UNIX") and os.name == "posix"


def _jupyter_root_dir() -> str | None:
    """The running Jupyter server's root folder, or None outside a Jupyter server."""
    try:
        from jupyter_server.serverapp import ServerApp
    except ImportError:  # pragma: no cover - jupyter_server is a dependency of the proxy
        return None
    if not ServerApp.initialized():
        return None
    root = getattr(ServerApp.instance(), "root_dir", None)
    return str(root) if root else None


def slicer_root() -> str | None:
    """The folder the tile's slicer browses.

    Returns
    -------
    str or None
        ``$DASHAPP_ROOT`` if set, else the Jupyter server's root folder, else None (the app then
        writes and shows the built-in demo workspace).
    """
    chosen = settings.current().root
    if chosen:  # the app reports a folder that does not exist
        return str(chosen)
    root = _jupyter_root_dir()
    if root and Path(root).expanduser().is_dir():
        return str(Path(root).expanduser().resolve())
    return None


def _escape(text: str) -> str:
    # jupyter-server-proxy applies str.format to every argument of the command.
    return text.replace("{", "{{").replace("}", "}}")


def slicer_command(
    base_url: str, port: int = 0, unix_socket: str = "", root: str | None = None
) -> list[str]:
    """The ``panel serve`` command of the tile's slicer.

    Parameters
    ----------
    base_url
        The Jupyter server's base URL (``/`` or ``/user/<name>/``).
    port
        TCP port on 127.0.0.1 (used when ``unix_socket`` is empty).
    unix_socket
        Path of the unix socket Panel listens on.
    root
        Folder to browse (default: :func:`slicer_root`).

    Returns
    -------
    list of str
        The command, its arguments formatted for jupyter-server-proxy (braces doubled).
    """
    prefix = "/" + f"{base_url.strip('/')}/{NAME}".strip("/")
    cmd = [sys.executable, "-m", "panel", "serve", str(SLICER_SCRIPT)]
    if unix_socket:
        cmd += ["--unix-socket", unix_socket]
    else:
        cmd += ["--address", "127.0.0.1", "--port", str(port)]
    cmd += [
        "--prefix", prefix,
        "--index", ROUTE,
        "--plugins", PLUGIN,  # old <prefix>/slicer_app links redirect to <prefix>/slicer
        "--allow-websocket-origin", "*",
        "--auth-module", str(AUTH_MODULE),  # the proxy brings the token (setup_slicer)
        "--plugins", "dashapp.cluster.proxy",  # the Dask dashboard at <prefix>/dask/
    ]  # fmt: skip
    root = root or slicer_root()
    if root:
        cmd += ["--args", "--root", root]
    return [_escape(c) for c in cmd]


def _command(port: int, unix_socket: str, base_url: str) -> list[str]:
    return slicer_command(base_url, port=port, unix_socket=unix_socket)


def setup_slicer() -> dict[str, Any]:
    """The jupyter-server-proxy configuration of the slicer (the entry point's target).

    Returns
    -------
    dict
        ``command``, ``timeout``, ``absolute_url``, ``unix_socket``, ``environment`` (with a
        new access token), ``request_headers_override`` (the proxy presents the token),
        ``new_browser_tab`` and ``launcher_entry`` for a ``ServerProcess``.
    """
    command: Callable[..., list[str]] = _command
    token = new_token()  # once per Jupyter server; URL-safe, so no braces for the proxy
    return {
        "command": command,
        "timeout": START_TIMEOUT,
        "absolute_url": True,
        "unix_socket": _use_unix_socket(),
        "environment": {
            BASE_URL_ENV: "{base_url}",
            "PYTHONUNBUFFERED": "1",
            TOKEN_ENV: token,
            "BOKEH_SECRET_KEY": new_token() + new_token(),  # session ids signed (see auth)
            "BOKEH_SIGN_SESSIONS": "yes",
        },
        "request_headers_override": {"Authorization": f"token {token}"},
        "new_browser_tab": False,
        "launcher_entry": {
            "enabled": True,
            "title": TITLE,
            "icon_path": str(ICON),
            "category": "Notebook",
        },
    }


def jupyter_base_url() -> str | None:
    """The base URL of the Jupyter server this process runs under, if it can tell.

    Returns
    -------
    str or None
        From ``$DASHAPP_JUPYTER_BASE_URL`` (set for the tile's Panel process) or
        ``$JUPYTERHUB_SERVICE_PREFIX`` (set by JupyterHub for the user's server and its kernels),
        with a trailing slash; None when neither is set.
    """
    return settings.current().jupyter_base_url


def proxied_url(url: str, base_url: str | None = None) -> str:
    """The address of a service on this machine through jupyter-server-proxy.

    A Dask dashboard at ``http://127.0.0.1:8787/status`` is not reachable from the user's browser
    when Jupyter runs on a compute node or in a container; jupyter-server-proxy serves it at
    ``<base_url>proxy/8787/status``, behind the Jupyter login.

    Parameters
    ----------
    url
        The service's URL, e.g. ``http://127.0.0.1:8787/status``.
    base_url
        The Jupyter server's base URL; default: :func:`jupyter_base_url`. When there is none
        (not under Jupyter), ``url`` is returned unchanged.

    Returns
    -------
    str
        ``<base_url>proxy/<port><path>`` for a local host; ``<base_url>proxy/<host>:<port><path>``
        for another host (which the server's ``ServerProxy.host_allowlist`` must allow); ``url``
        itself when not under Jupyter or when it names no port.

    Examples
    --------
    >>> proxied_url("http://127.0.0.1:8787/status", base_url="/user/ada/")
    '/user/ada/proxy/8787/status'
    """
    base = base_url if base_url is not None else jupyter_base_url()
    if base is None:
        return url
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return url
    if parts.scheme not in ("http", "https") or port is None:
        return url
    host = parts.hostname or ""
    target = str(port) if host in _LOCAL_HOSTS else f"{host}:{port}"
    base = "/" + base.strip("/") + "/" if base.strip("/") else "/"
    out = f"{base}proxy/{target}{parts.path or '/'}"
    if parts.query:
        out += "?" + parts.query
    if parts.fragment:
        out += "#" + parts.fragment
    return out
