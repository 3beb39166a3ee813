"""dashapp: see inside large HDF5 simulation output from a browser.

``from dashapp import Slicer`` gives the notebook/servable viewer. The UI is imported lazily so
that ``import dashapp.data`` (used by batch jobs and Dask workers) never pulls in panel or bokeh.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["Slicer", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Slicer":
        from .app import services
        from .views.slicer import Slicer

        services(server=False)  # the notebook entry starts the process's shared services
        return Slicer
    raise AttributeError(f"module 'dashapp' has no attribute {name!r}")
