"""dashapp's views: Panel Viewers built on the state layer."""

from __future__ import annotations

from .slicer import Slicer

__all__ = ["Slicer"]
