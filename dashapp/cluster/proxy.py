"""The Dask dashboard, served through the app's own server at ``<prefix>/dask/...``.

The scheduler's dashboard listens on the machine that runs the server (``http://<host>:8787``);
a person who reaches the app through an SSH tunnel or JupyterLab's proxy cannot open that
address. These Tornado handlers pass requests (and the Bokeh websockets of the dashboard's
plots) on to the dashboard of the server's current cluster, so the pane's link is
``dask/status``, relative to the page, and works wherever the page does.

- Only the dashboard of the cluster :data:`dashapp.cluster.MANAGER` runs (or shows) is
  reached: the target comes from ``info()["dashboard_link"]``, never from the request.
- Every request is checked like the app's own pages (:func:`dashapp.auth.get_user`: the
  access token's cookie or header, or viewers when the server allows them); the token's
  cookie is not passed on.

Registered as a Panel server plugin: ``panel serve ... --plugins dashapp.cluster.proxy``
(``dashapp serve`` and the JupyterLab tile add it); :func:`routes` gives the patterns for
``extra_patterns`` of a server built in Python, and :func:`served` tells the pane whether
they are registered in this process.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.web import RequestHandler
from tornado.websocket import WebSocketClosedError, WebSocketHandler, websocket_connect

__all__ = ["PATH", "DashboardHandler", "DashboardSocket", "dashboard_base", "routes", "served"]

log = logging.getLogger(__name__)

#: Where the dashboard is served, under the server's prefix (the pane links ``dask/status``).
PATH = "dask"

_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "host", "cookie", "authorization", "content-length",
    "accept-encoding",
}  # fmt: skip
_NOT_BACK = {"connection", "keep-alive", "transfer-encoding", "content-length",
             "content-encoding", "server", "date", "set-cookie"}  # fmt: skip

_served = False


def served() -> bool:
    """True when this process's server was given :func:`routes` (the plugin was loaded)."""
    return _served


def routes() -> list[tuple[str, type, dict[str, Any]]]:
    """The Tornado patterns to add to the server (``extra_patterns``); marks them served."""
    global _served
    _served = True
    return [
        (rf"/{PATH}/(.*/ws)", DashboardSocket, {}),
        (rf"/{PATH}/?(.*)", DashboardHandler, {}),
    ]


def __getattr__(name: str) -> Any:
    # Panel's ``--plugins`` reads ``ROUTES``: computed when read, so that served() is true
    # only in a server that registered them.
    if name == "ROUTES":
        return routes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def dashboard_base(info: dict[str, Any] | None = None) -> str | None:
    """``http://host:port`` of the current cluster's dashboard, or None when there is none."""
    if info is None:
        from . import MANAGER

        info = MANAGER.info()
    link = info.get("dashboard_link") if info.get("status") == "running" else None
    if not link:
        return None
    parts = urlsplit(str(link))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _allowed(handler: RequestHandler) -> bool:
    from ..auth import get_user

    return get_user(handler) is not None


class DashboardHandler(RequestHandler):
    """Pages, scripts and JSON of the dashboard, fetched from it and sent back as they are."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST")

    async def get(self, path: str) -> None:
        await self._pass_on(path)

    async def head(self, path: str) -> None:
        await self._pass_on(path)

    async def post(self, path: str) -> None:
        await self._pass_on(path)

    def check_xsrf_cookie(self) -> None:
        """The dashboard's own forms carry no Tornado XSRF token (the access check applies)."""

    def _say(self, code: int, text: str) -> None:
        self.set_status(code)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text)

    async def _pass_on(self, path: str) -> None:
        if not _allowed(self):
            self._say(403, "This server asks for its access token: open the app's link first.")
            return
        base = dashboard_base()
        if base is None:
            self._say(404, "No Dask cluster is running: start one in the app's Dask cluster tab.")
            return
        query = f"?{self.request.query}" if self.request.query else ""
        headers = {k: v for k, v in self.request.headers.get_all() if k.lower() not in _HOP}
        request = HTTPRequest(
            f"{base}/{path}{query}",
            method=self.request.method,
            headers=headers,
            body=self.request.body if self.request.method == "POST" else None,
            follow_redirects=False,
            request_timeout=60,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as exc:
            self._say(502, f"The Dask dashboard at {base} did not answer ({exc}).")
            return
        if response.code == 599:  # tornado's "no answer"
            self._say(502, f"The Dask dashboard at {base} did not answer ({response.error}).")
            return
        self.set_status(response.code, response.reason)
        mine = self.request.path[: len(self.request.path) - len(path)]
        for key, value in response.headers.get_all():
            if key.lower() in _NOT_BACK:
                continue
            if key.lower() == "location" and value.startswith(base):
                value = mine.rstrip("/") + value[len(base) :]  # back through this server
            self.add_header(key, value)
        if response.code not in (204, 304) and self.request.method != "HEAD":
            self.write(response.body or b"")
        self.finish()


class DashboardSocket(WebSocketHandler):
    """The websocket of a dashboard plot (Bokeh's ``<app>/ws``), relayed both ways."""

    _upstream: Any = None

    async def get(self, path: str) -> None:
        if not _allowed(self):
            self.set_status(403)
            self.finish("This server asks for its access token.")
            return
        await super().get(path)

    def check_origin(self, origin: str) -> bool:
        """The origins the app's own websockets accept (``--allow-websocket-origin``)."""
        from bokeh.server.util import check_allowlist

        allowed = getattr(self.application, "websocket_origins", None)
        if not allowed:
            return super().check_origin(origin)
        return check_allowlist(urlsplit(origin).netloc.lower(), allowed)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        """Bokeh's client asks for ``bokeh`` (with its session token as a second entry)."""
        return subprotocols[0] if subprotocols else None

    async def open(self, path: str) -> None:
        base = dashboard_base()
        if base is None:
            self.close(1011, "no Dask cluster is running")
            return
        query = f"?{self.request.query}" if self.request.query else ""
        target = base.replace("http", "ws", 1) + f"/{path}{query}"
        asked = self.request.headers.get("Sec-WebSocket-Protocol", "")
        protocols = [p.strip() for p in asked.split(",") if p.strip()]
        try:
            self._upstream = await websocket_connect(
                HTTPRequest(target, headers={"Origin": base}, request_timeout=30),
                on_message_callback=self._from_dashboard,
                subprotocols=protocols or None,
                max_message_size=self.max_message_size,
            )
        except (OSError, HTTPClientError) as exc:
            log.info("dashboard websocket %s refused: %s", target, exc)
            self.close(1011, "the Dask dashboard did not answer")

    def _from_dashboard(self, message: str | bytes | None) -> None:
        if message is None:  # the dashboard closed its side
            self.close()
            return
        try:
            self.write_message(message, binary=isinstance(message, bytes))
        except WebSocketClosedError:
            self._close_upstream()

    async def on_message(self, message: str | bytes) -> None:
        if self._upstream is None:
            return
        try:
            await self._upstream.write_message(message, binary=isinstance(message, bytes))
        except WebSocketClosedError:
            self.close()

    def on_close(self) -> None:
        self._close_upstream()

    def _close_upstream(self) -> None:
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            upstream.close()
