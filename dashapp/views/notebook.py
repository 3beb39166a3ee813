"""Showing dashapp views in Jupyter: offline, without asking the user to load anything first."""

from __future__ import annotations

import panel as pn

__all__ = ["ensure_notebook_extension"]


def ensure_notebook_extension(*extensions: str) -> None:
    """Load Panel's notebook extension with inline resources if nothing loaded it yet.

    HPC compute nodes often have no internet: Panel's default notebook resources come from a CDN
    and the output then stays silently empty. Inline resources put BokehJS and Panel's JS in the
    notebook itself. A user who already ran ``pn.extension(...)`` keeps their choice.

    ``extensions`` names Panel extensions the calling view needs (the cluster pane's tables need
    ``"tabulator"``); they are loaded only by the views that need them, so a notebook showing only
    the slicer carries no third-party loader. (Panel's loader for Tabulator keeps a CDN path for
    the classic Notebook's RequireJS; JupyterLab and Notebook 7 use the inlined copy.)
    """
    from panel.config import panel_extension

    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - no IPython: nothing to display into
        return
    if get_ipython() is None:
        return
    if not panel_extension._loaded:
        pn.config.inline = True
        pn.extension(*extensions)
        return
    missing = [e for e in extensions if e not in panel_extension._loaded_extensions]
    if missing:
        pn.extension(*missing)
