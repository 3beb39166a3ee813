"""Entry points that build the slicer page: for ``panel serve`` scripts and the ``dashapp`` CLI.

A Panel script runs once per browser session, so the scripts (``apps/slicer.py`` in the
repository and :data:`SLICER_SCRIPT` inside the installed package) only call
:func:`serve_slicer_page`, which reads the command line and the page's URL query.
"""

from __future__ import annotations

import argparse
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
            pn.Column(
                "# dashapp · capsule",
                pn.pane.Alert(
                    f"{exc} (Serve it with --root FOLDER for its data.)", alert_type="danger"
                ),
            ).servable()
            return None
        app = SlicerApp(root, query=pn.state.session_args, record=capsule.record, read_only=True)
        app.template(title=f"dashapp · capsule {Path(args.capsule).name}").servable()
        return app
    app = SlicerApp(resolve_root(args.root), query=pn.state.session_args)
    app.template().servable()
    return app
