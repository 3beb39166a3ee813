"""Dask clusters for dashapp, without any UI: the manager a cluster pane or a notebook drives.

- :class:`ClusterManager` (one per process: :data:`MANAGER`) starts, scales, adapts, watches
  and stops one cluster, and describes it as a JSON-safe dict (``info()``), with what went
  wrong on the batch system in words.
- Cluster kinds are Dask configuration (``dashapp.clusters``: name -> class path), with the
  form's initial values from :func:`defaults`; see ``dashapp.yaml`` in this package.
- Its errors (:class:`ClusterError`, :class:`ClusterTimeout`, ``slurm.SlurmError``) are
  :class:`~dashapp.errors.DashappError` kinds, shown to the person as they are.
- :class:`SLURMBulkCluster`: one Slurm job running N workers (``srun``), for sites that count
  jobs.

Importing this package loads Dask and distributed, never panel, bokeh or holoviews.
"""

from __future__ import annotations

from .config import cluster_kinds, defaults, lifetime_args, parse_walltime
from .errors import ClusterError, ClusterTimeout
from .manager import MANAGER, STATUSES, ClusterManager
from .requests import VIEWER_OPTIONS, viewer_refusal


def __getattr__(name: str) -> object:
    # dask-jobqueue is imported only when the bulk class is asked for.
    if name == "SLURMBulkCluster":
        from .bulk import SLURMBulkCluster

        return SLURMBulkCluster
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MANAGER",
    "STATUSES",
    "VIEWER_OPTIONS",
    "ClusterError",
    "ClusterManager",
    "ClusterTimeout",
    "SLURMBulkCluster",
    "cluster_kinds",
    "defaults",
    "lifetime_args",
    "parse_walltime",
    "viewer_refusal",
]
