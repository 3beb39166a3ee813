"""dashapp's state layer: param models of what the user is looking at (no widgets here)."""

from __future__ import annotations

from .browser import BrowserState
from .latest import LatestOnly
from .query import apply_query, parse_query, to_query
from .slice import CLIM_MODES, CMAPS, VIEW_PARAMS, SliceState, resolve_limits, suggest_scale

__all__ = [
    "CLIM_MODES",
    "CMAPS",
    "VIEW_PARAMS",
    "BrowserState",
    "LatestOnly",
    "SliceState",
    "apply_query",
    "parse_query",
    "resolve_limits",
    "suggest_scale",
    "to_query",
]
