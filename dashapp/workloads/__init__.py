"""Batch workloads that run on a Dask cluster and write HDF5 a viewer can follow while they run.

``sweep``
    Many independent 1-D SimPEG inversions, one per station of a grid (the workload of the
    paper this project grew from), stitched into one 3-D conductivity model in HDF5 as each
    station completes.

Nothing here imports panel, bokeh or holoviews, and SimPEG is imported only inside the tasks
(on the Dask workers), so the app can import this module cheaply.
"""

from __future__ import annotations

from .sweep import (
    InvalidPlan,
    StationError,
    StationResult,
    SweepError,
    SweepPlan,
    SweepReport,
    invert_station,
    plan_sweep,
    run_sweep,
    synthetic_model,
)

__all__ = [
    "InvalidPlan",
    "StationError",
    "StationResult",
    "SweepError",
    "SweepPlan",
    "SweepReport",
    "invert_station",
    "plan_sweep",
    "run_sweep",
    "synthetic_model",
]
