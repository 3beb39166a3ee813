"""The visualizations a dataset can be shown with (the shape of H5Web's vis-packs registry).

Each entry says which datasets it supports and builds its drawing for a view; a view offers
the entries that support the dataset and starts with the first. New kinds of visualization
(a line plot for 1-D data, a table, ...) are new entries here, not new branches in a view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..data import DatasetInfo
from ..state import SliceState

__all__ = ["VISUALIZATIONS", "Visualization", "supported"]


@dataclass(frozen=True)
class Visualization:
    """One way of drawing a dataset."""

    #: Shown to the user, e.g. "Heatmap".
    name: str
    #: True when this visualization can draw the dataset.
    supports: Callable[[DatasetInfo], bool]
    #: Makes the drawing for a view: ``build(state)``, an object with ``plot``,
    #: ``pixels()``, ``prepare(...)`` and ``connect(feed)`` (see :class:`~.heatmap.Heatmap`).
    build: Callable[[SliceState], Any]


def _heatmap_supports(info: DatasetInfo) -> bool:
    return info.ndim >= 2 and info.kind in ("int", "uint", "float", "bool", "complex")


def _heatmap(state: SliceState) -> Any:
    from .heatmap import Heatmap

    return Heatmap(state)


#: Every visualization, in order of preference.
VISUALIZATIONS: tuple[Visualization, ...] = (
    Visualization(name="Heatmap", supports=_heatmap_supports, build=_heatmap),
)


def supported(info: DatasetInfo | None) -> list[Visualization]:
    """The visualizations that can draw ``info`` (the first is the default); all without one."""
    if info is None:
        return list(VISUALIZATIONS)
    return [v for v in VISUALIZATIONS if v.supports(info)]
