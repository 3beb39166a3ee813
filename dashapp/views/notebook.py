"""Showing dashapp views in Jupyter: offline, without asking the user to load anything first."""

from __future__ import annotations

import panel as pn

__all__ = ["ensure_notebook_extension"]


def ensure_notebook_extension() -> None:
    """Load Panel's notebook extension with inline resources if nothing loaded it yet.

    HPC compute nodes often have no internet: Panel's default notebook resources come from a CDN
    and the output then stays silently empty. Inline resources put BokehJS and Panel's JS in the
    notebook itself. A user who already ran ``pn.extension(...)`` keeps their choice.
    """
    from panel.config import panel_extension

    if panel_extension._loaded:
        return
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - no IPython: nothing to display into
        return
    if get_ipython() is None:
        return
    pn.config.inline = True
    pn.extension("tabulator")  # the cluster pane's tables
