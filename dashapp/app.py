"""Entry points that build the slicer page: for ``panel serve`` scripts and the ``dashapp`` CLI.

A Panel script runs once per browser session, so the scripts (``apps/slicer.py`` in the
repository and :data:`SLICER_SCRIPT` inside the installed package) only call
:func:`serve_slicer_page`, which reads the command line and the page's URL query.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path
from typing import Any

__all__ = ["SLICER_SCRIPT", "serve_slicer_page"]

#: The slicer script inside the installed package (what ``dashapp serve`` and the JupyterLab
#: launcher tile hand to ``panel serve``; the repository's ``apps/slicer.py`` is the same).
SLICER_SCRIPT = Path(__file__).with_name("slicer_app.py")


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

    from .data.alloc import return_freed_buffers, trim_freed_buffers
    from .data.chunks import CHUNK_CACHE, cache_budget
    from .views.app import SlicerApp, resolve_root
    from .views.transport import flush_stranded_updates

    flush_stranded_updates()  # every session's pictures reach its browser (see the module)
    return_freed_buffers()  # a long-running server gives freed chunks back (see the module)
    trim_freed_buffers()
    CHUNK_CACHE.resize(cache_budget())  # with --num-procs N, each process has 1/N of it
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
