"""Who may use a served dashapp: the server's access token, and the owner of a session.

A dashapp server reads files with the permissions of the person who started it, and its
cluster form writes batch scripts that run on the cluster. So a served dashapp asks for a
secret, as Jupyter does: a random **access token**, printed with the server's URL
(``http://localhost:5006/?token=...``). The browser that opened that URL gets a cookie and
keeps working (links inside the app, shared view links opened in it); anyone else gets a page
asking for the token, and no session.

- ``dashapp serve`` passes this file to ``panel serve --auth-module``: Bokeh then asks
  :func:`get_user` about every page, session and websocket request, and refuses those without
  the token (a redirect to :data:`login_url`, a 403 for a websocket). With ``--allow-viewers``
  the operator lets in anyone who reaches the port, as a *viewer*.
- ``panel serve apps/slicer.py`` without ``--auth-module`` cannot refuse the websocket, so the
  page itself (:func:`dashapp.app.serve_slicer_page`) asks for the token and shows no data
  without it (:func:`session_access`).
- The **owner** of the server is whoever presents the token (cookie, ``?token=``, or an
  ``Authorization: token ...`` header, which the JupyterLab tile's proxy adds), or a user
  named in ``$DASHAPP_OWNERS`` when Panel's own login (``--basic-auth``, OAuth) is used.
  Only the owner may set what reaches a shell on the cluster (job directives, prologue, ...).

The token is ``$DASHAPP_TOKEN`` when set (``dashapp serve`` sets a new one for each run),
else the one kept in the user's token file (:func:`token_file`, created mode 0600).

This file is loaded twice: imported as ``dashapp.auth``, and by Bokeh as an auth module from
its path (:data:`AUTH_MODULE`); so it imports absolutely and keeps no state of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import html
import os
import secrets
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tornado.web import RequestHandler

# (absolute imports: Bokeh loads this file by its path, as --auth-module, outside the package)
from dashapp import settings
from dashapp.settings import ALLOW_VIEWERS_ENV, TOKEN_ENV

__all__ = [
    "ALLOW_VIEWERS_ENV",
    "AUTH_MODULE",
    "OWNER",
    "OWNERS_ENV",
    "TOKEN_ARG",
    "TOKEN_ENV",
    "VIEWER",
    "LoginHandler",
    "access_of",
    "announce",
    "cookie_name",
    "get_user",
    "login_page",
    "login_url",
    "new_token",
    "presented_token",
    "server_token",
    "session_access",
    "strip_token",
    "token_file",
    "token_matches",
    "viewers_allowed",
]

#: This file: what ``panel serve --auth-module`` takes.
AUTH_MODULE = Path(__file__).resolve()
#: (``TOKEN_ENV``, the server's access token, and ``ALLOW_VIEWERS_ENV``, 1 to let in people
#: without the token as viewers, come from :mod:`dashapp.settings`.)
#: Comma-separated user names (from Panel's ``--basic-auth`` or OAuth) who are owners too.
OWNERS_ENV = "DASHAPP_OWNERS"
#: The two kinds of access a session can have.
OWNER, VIEWER = "owner", "viewer"
#: The query argument that carries the token in a URL.
TOKEN_ARG = "token"

#: Bokeh auth-module hook: where a request without the token is sent (under the prefix).
login_url = "/login"


def new_token() -> str:
    """A new random access token (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def token_file() -> Path:
    """The user's token file: ``$DASHAPP_CACHE/token``, or ``~/.cache/dashapp/token``."""
    return settings.cache_dir() / "token"


def _file_token() -> str:
    path = token_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(new_token() + "\n")
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):  # readable by others: not a secret
        os.chmod(path, 0o600)
    token = path.read_text().strip()
    if len(token) < 16:  # emptied or truncated by hand: start again
        path.unlink()
        return _file_token()
    return token


def server_token() -> str:
    """The server's access token: ``$DASHAPP_TOKEN``, else the user's token file's."""
    return settings.current().token or _file_token()


def cookie_name(token: str | None = None) -> str:
    """The cookie that carries the token: named after it, so servers do not overwrite it."""
    digest = hashlib.sha256((token or server_token()).encode()).hexdigest()[:12]
    return f"dashapp-{digest}"


def token_matches(candidate: str | None, token: str | None = None) -> bool:
    """True when ``candidate`` is the server's token (compared in constant time)."""
    if not candidate:
        return False
    token = token or server_token()
    return hmac.compare_digest(candidate.encode(), token.encode())


def _first(value: Any) -> str | None:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def presented_token(
    headers: Mapping[str, Any] | None = None,
    cookies: Mapping[str, Any] | None = None,
    arguments: Mapping[str, Any] | None = None,
    token: str | None = None,
) -> str | None:
    """The token a request presents: ``Authorization: token T``, the cookie, or ``?token=T``.

    Returns the first candidate that matches the server's token, else the first one given
    (or None), so callers can tell a wrong token from none.
    """
    token = token or server_token()
    found: list[str] = []
    for key, value in (headers or {}).items():
        text = _first(value) or ""
        if key.lower() == "authorization" and text.lower().startswith("token "):
            found.append(text[6:].strip())
    cookie = _first((cookies or {}).get(cookie_name(token)))
    if cookie:
        found.append(cookie)
    arg = _first((arguments or {}).get(TOKEN_ARG))
    if arg:
        found.append(arg)
    for candidate in found:
        if token_matches(candidate, token):
            return candidate
    return found[0] if found else None


def viewers_allowed() -> bool:
    """True when the operator lets people without the token in, as viewers."""
    return settings.current().allow_viewers


def _owners() -> set[str]:
    return set(settings.current().owners)


def access_of(
    headers: Mapping[str, Any] | None = None,
    cookies: Mapping[str, Any] | None = None,
    arguments: Mapping[str, Any] | None = None,
    user: str | None = None,
) -> str | None:
    """What a request may do: :data:`OWNER`, :data:`VIEWER`, or None (show the login page).

    Parameters
    ----------
    headers, cookies, arguments
        The request's (Bokeh's request proxy or Tornado's request).
    user
        The user Panel's own login reported (``--basic-auth``, OAuth), if any.
    """
    token = server_token()
    if token_matches(presented_token(headers, cookies, arguments, token), token):
        return OWNER
    if user and user in _owners():
        return OWNER
    if user or viewers_allowed():
        return VIEWER
    return None


def session_access() -> str:
    """What the current Panel session may do: :data:`OWNER` outside a server (a notebook).

    In a server session, the access of the request that made it (:func:`access_of`), with
    Panel's logged-in user (``pn.state.user``); ``""`` when it may not see anything.
    """
    import panel as pn

    doc = pn.state.curdoc
    context = getattr(doc, "session_context", None) if doc is not None else None
    if context is None:
        return OWNER  # a notebook, a script: the person running Python
    request = getattr(context, "request", None)
    if request is None:  # a server session without its request: trust nothing
        return ""
    user = None
    if pn.config.basic_auth or pn.config.oauth_provider:  # else Panel's user is a cookie's say
        with contextlib.suppress(Exception):
            user = pn.state.user
    if user == "guest":  # Panel's guest endpoints: not logged in
        user = None
    return (
        access_of(
            getattr(request, "headers", None),
            getattr(request, "cookies", None),
            getattr(request, "arguments", None),
            user=user if isinstance(user, str) else None,
        )
        or ""
    )


def strip_token(url: str) -> str:
    """``url`` without its ``token`` query argument (what the browser is sent back to)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != TOKEN_ARG]
    return urlunsplit(parts._replace(query=urlencode(query, safe="/,")))


def _local_path(url: str | None) -> str:
    """A path on this server to go back to; anything else (another site) becomes ``/``."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return "/"
    return url


# ------------------------------------------------------------------ Bokeh auth-module hooks
def get_user(request_handler: RequestHandler) -> str | None:
    """Bokeh auth-module hook: :data:`OWNER` or :data:`VIEWER`, None to refuse the request.

    A page request that brings the token in its URL is refused too: Bokeh sends it to the
    login handler, which sets the cookie and sends the browser back without the token.
    """
    request = request_handler.request
    token = server_token()
    cookies = {k: v.value for k, v in request.cookies.items()}
    by_url = presented_token(None, None, request.query_arguments, token)
    if token_matches(presented_token(request.headers, cookies, None, token), token):
        return OWNER
    websocket = request.headers.get("Upgrade", "").lower() == "websocket"
    if token_matches(by_url, token):  # a websocket cannot be redirected: let it in
        return OWNER if websocket else None  # a page: to the login handler, for the cookie
    if viewers_allowed():
        return VIEWER
    return None


class LoginHandler(RequestHandler):
    """The page asking for the token; with the right one, the cookie and the way back."""

    def get(self) -> None:
        target = _local_path(self.get_argument("next", "/"))
        given = self.get_argument(TOKEN_ARG, None)
        if given is None:
            given = dict(parse_qsl(urlsplit(target).query)).get(TOKEN_ARG)
        self._answer(target, given)

    def post(self) -> None:
        self._answer(_local_path(self.get_argument("next", "/")), self.get_argument(TOKEN_ARG, ""))

    def check_xsrf_cookie(self) -> None:
        """The form carries the token itself: a forged post can only log its sender in."""

    def _answer(self, target: str, given: str | None) -> None:
        token = server_token()
        if token_matches(given, token):
            self.set_cookie(
                cookie_name(token),
                token,
                path="/",
                httponly=True,
                samesite="Lax",
                secure=self.request.protocol == "https",
            )
            self.redirect(strip_token(target))
            return
        self.set_status(401)
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(login_page(strip_token(target), wrong=bool(given)))


def login_page(target: str, wrong: bool = False) -> str:
    """The token page's HTML (no data of the server, no script)."""
    problem = (
        '<p class="wrong">That is not this server\'s token.</p>' if wrong else ""
    )  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dashapp · access token</title>
<style>body{{font-family:sans-serif;max-width:36em;margin:4em auto;line-height:1.4}}
input{{font-size:1em;padding:.3em;width:100%}}.wrong{{color:#b00}}</style></head>
<body><h1>dashapp</h1>
<p>This server needs its access token. Open the link that <code>dashapp serve</code> printed
when it started (it ends in <code>?token=...</code>), or paste the token here.</p>{problem}
<form method="post" action="" class="dashapp-login">
<input type="hidden" name="next" value="{html.escape(target, quote=True)}">
<input type="password" name="{TOKEN_ARG}" placeholder="access token" autofocus>
<p><button type="submit">Open</button></p></form></body></html>"""


def announce(url: str, stream: Any = None) -> None:
    """Print the URL with the token (what the server's owner opens)."""
    print(f"dashapp: open {url}", file=stream or sys.stderr, flush=True)
