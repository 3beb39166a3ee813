"""dashapp: see inside large HDF5 simulation output from a browser.

``from dashapp import Slicer`` gives the notebook/servable viewer. The UI is imported lazily so
that ``import dashapp.data`` (used by batch jobs and Dask workers) never pulls in panel or bokeh.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Slicer", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Slicer":
        from .views.slicer import Slicer

        return Slicer
    raise AttributeError(f"module 'dashapp' has no attribute {name!r}")
