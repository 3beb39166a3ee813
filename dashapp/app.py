"""The composition root: the process-wide services, and the entry points that build the slicer page.

:func:`services` creates, wires and starts, once per process, what every session of a server
(or a notebook kernel) shares: the open-file handles (``HANDLES``), the decoded-chunk cache
(``CHUNK_CACHE``, sized from the settings), the overview pyramids (``PYRAMIDS``, built on the
Dask pane's cluster when one runs; what crashed builds left in the cache is cleaned at start),
the file watches (``WATCHES``), the cluster manager (imported when first asked for: it pulls in
Dask), malloc's return of freed memory, and the warm-up of datashader's kernels. No view starts
any of these as a side effect of being built.

A Panel script runs once per browser session, so the scripts (``apps/slicer.py`` in the
repository and :data:`SLICER_SCRIPT` inside the installed package) only call
:func:`serve_slicer_page`, which starts the services (the first time), reads the command line
and the page's URL query, and builds the page. ``from dashapp import Slicer`` (the notebook
entry) starts them too.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .routes import SLICER_SCRIPT

__all__ = ["SLICER_SCRIPT", "AppServices", "serve_slicer_page", "services"]

log = logging.getLogger(__name__)


@dataclass
class AppServices:
    """The services one process shares among its sessions (see the module).

    Attributes
    ----------
    handles, chunk_cache, pyramids, watches
        :data:`dashapp.data.HANDLES`, :data:`~dashapp.data.chunks.CHUNK_CACHE`,
        :data:`~dashapp.data.PYRAMIDS` and :data:`~dashapp.data.watch.WATCHES`.
    pid
        The process they were started in (a forked server process starts its own).
    server
        Whether the server-only parts were started (see :func:`services`).
    """

    handles: Any
    chunk_cache: Any
    pyramids: Any
    watches: Any
    pid: int
    server: bool = False

    @property
    def cluster(self) -> Any:
        """The Dask pane's :class:`~dashapp.cluster.ClusterManager` (imports Dask)."""
        from .cluster import MANAGER

        return MANAGER


_SERVICES: AppServices | None = None
_REAPING: set[int] = set()
_LOCK = threading.Lock()


def _cluster_client() -> Any:
    """The Dask pane's cluster client when a cluster runs (pyramids are built there)."""
    from .cluster import MANAGER

    if MANAGER.info().get("status") != "running":
        return None
    return MANAGER.client


def services(*, server: bool = True) -> AppServices:
    """The process's services, created, wired and started on the first call (see the module).

    Parameters
    ----------
    server
        True for a Panel server: also Panel's stranded-update fix, malloc's return of freed
        memory to the system (settings ``DASHAPP_MMAP_THRESHOLD_KB`` and
        ``DASHAPP_MALLOC_TRIM_S``) and the warm-up of datashader's kernels. A notebook
        kernel (``server=False``) leaves its allocator alone.
    """
    global _SERVICES
    with _LOCK:
        if _SERVICES is not None and _SERVICES.pid == os.getpid():
            if server and not _SERVICES.server:  # a notebook kernel that now serves
                _start_server_parts()
                _SERVICES.server = True
            return _SERVICES
        from .data import HANDLES, PYRAMIDS, warm_up
        from .data.chunks import CHUNK_CACHE, cache_budget
        from .data.watch import WATCHES

        CHUNK_CACHE.resize(cache_budget())  # with --num-procs N, each process has 1/N of it
        PYRAMIDS.client_provider = _cluster_client
        if server:
            _start_server_parts()

        def start_up() -> None:
            try:
                PYRAMIDS.clean()  # (off the event loop: the cache may sit on a slow filesystem)
            except OSError as exc:  # an unwritable cache: the builds will say so
                log.warning("could not clean the overview cache: %s", exc)
            if server:  # (10 s of CPU: a notebook compiles at its first zoom instead)
                warm_up()  # datashader's kernels compiled before the first zoom

        threading.Thread(target=start_up, name="dashapp-warm-up", daemon=True).start()
        _SERVICES = AppServices(HANDLES, CHUNK_CACHE, PYRAMIDS, WATCHES, os.getpid(), server)
        return _SERVICES


def _reap(pid: int) -> None:
    """Wait for child ``pid`` to end, so it does not stay ``<defunct>`` (in a thread)."""
    with contextlib.suppress(ChildProcessError):  # not our child (set by hand), or reaped
        os.waitpid(pid, 0)


def _start_server_parts() -> None:
    """What only a server starts (each part is idempotent)."""
    from . import settings
    from .data.alloc import return_freed_buffers, trim_freed_buffers
    from .views.transport import flush_stranded_updates

    pid = settings.current().announcer_pid  # `dashapp serve`'s ready-announcer (see cli)
    if pid is not None and pid not in _REAPING:
        _REAPING.add(pid)
        threading.Thread(target=_reap, args=(pid,), name="dashapp-reaper", daemon=True).start()

    flush_stranded_updates()  # every session's pictures reach its browser (see the module)
    return_freed_buffers()  # a long-running server gives freed chunks back (see the module)
    trim_freed_buffers()


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="slicer")
    parser.add_argument("--root", help="folder to browse (default: $DASHAPP_ROOT or the demo)")
    parser.add_argument("--capsule", help="open a capsule: its timeline, views and packed inputs")
    args, _ = parser.parse_known_args(argv)
    return args


def _query() -> dict[str, Any]:
    """The page's deep-link arguments, without the access token."""
    import panel as pn

    from .auth import TOKEN_ARG

    return {k: v for k, v in (pn.state.session_args or {}).items() if k != TOKEN_ARG}


_announced = False


def _let_in() -> bool:
    """May this session see the app? If not, serve the page that asks for the token.

    ``dashapp serve`` has already refused requests without the token (its auth module); this
    is the same check for ``panel serve apps/slicer.py`` run without one, where the page is
    the only place left to ask. A token that came in the URL is kept in a cookie for the
    next pages of this browser, and taken out of the address bar.
    """
    import panel as pn
    from bokeh.models import CustomJS

    from . import auth

    access = auth.session_access()
    doc = pn.state.curdoc
    request = getattr(getattr(doc, "session_context", None), "request", None)
    if access:
        arguments = getattr(request, "arguments", None) or {}
        if auth.TOKEN_ARG in arguments and access == auth.OWNER:
            token = auth.server_token()
            js = (
                f"document.cookie = {auth.cookie_name(token)!r} + '=' + {token!r}"
                " + '; path=/; SameSite=Lax';"
                "const u = new URL(window.location.href); u.searchParams.delete('token');"
                "window.history.replaceState(null, '', u.toString());"
            )
            doc.js_on_event("document_ready", CustomJS(code=js))
        return True
    global _announced
    if not _announced and request is not None:
        _announced = True
        headers = getattr(request, "headers", None) or {}
        host = headers.get("Host", "localhost:5006")
        path = getattr(request, "path", "/") or "/"
        auth.announce(f"http://{host}{path}?token={auth.server_token()}")
    kept = {k: v for k, v in (pn.state.session_args or {}).items() if k != auth.TOKEN_ARG and v}
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k, quote=True)}" '
        f'value="{html.escape(v[0].decode("utf-8", "replace"), quote=True)}">'
        for k, v in kept.items()
    )
    wrong = auth.TOKEN_ARG in (pn.state.session_args or {})
    pn.Column(
        "# dashapp",
        pn.pane.HTML(
            "<p>This server needs its access token. Open the link printed where the server "
            "was started (it ends in <code>?token=...</code>), or paste the token here. "
            "<code>dashapp serve</code> serves on this machine only, with the token.</p>"
            + ('<p style="color:#b00">That is not this server\'s token.</p>' if wrong else "")
            + f'<form method="get" class="dashapp-login">{hidden}'
            '<input type="password" name="token" placeholder="access token"> '
            '<button type="submit">Open</button></form>',
            sizing_mode="stretch_width",
        ),
    ).servable(title="dashapp · access token")
    return False


def serve_slicer_page(argv: list[str] | None = None) -> Any:
    """Build this session's slicer page and mark it servable (from a ``panel serve`` script).

    Returns the session's :class:`~dashapp.views.app.SlicerApp` (None if a capsule could not
    be opened and the page says why)."""
    import panel as pn

    from .views.app import SlicerApp, resolve_root

    services()  # the process's shared services, started by the first session
    args = _parse(sys.argv[1:] if argv is None else argv)
    pn.extension("tabulator", notifications=True)  # the cluster pane's tables
    if not _let_in():  # no token: a page asking for it, and nothing of the server's
        return None
    if args.capsule:
        from .provenance import CapsuleError, open_capsule

        try:
            capsule = open_capsule(args.capsule)
            # the packed inputs, or a --root the person serving chose: never the manifest's
            # root, which names any folder the capsule's author wrote there ("/" lists /etc)
            root = args.root or capsule.root
            if root is None:
                raise CapsuleError(
                    "This capsule's input files were not packed, and a capsule does not choose "
                    "what is served (its manifest names "
                    f"{capsule.manifest.get('root') or 'no folder'!s})."
                )
            root = resolve_root(root)
        except (CapsuleError, SystemExit) as exc:  # a page that says why, not a dead session
            from .views.text import TextAlert, as_markdown

            message = f"{exc} (Serve it with --root FOLDER for its data.)"  # quotes the capsule
            pn.Column(
                "# dashapp · capsule",
                TextAlert(as_markdown(message), alert_type="danger"),
            ).servable()
            return None
        app = SlicerApp(root, query=_query(), record=capsule.record, read_only=True)
        app.template(title=f"dashapp · capsule {Path(args.capsule).name}").servable()
        return app
    app = SlicerApp(resolve_root(args.root), query=_query())
    app.template().servable()
    return app
