"""The cluster's errors, members of dashapp's one error family (:mod:`dashapp.errors`).

Re-exported here for the cluster code and its callers: views catch
:class:`~dashapp.errors.DashappError` and show its message as it is, so a refused ``sbatch``,
a lost server process and a request that cannot be done read the same way as a file that is
not HDF5.
"""

from __future__ import annotations

from ..errors import ClusterError, ClusterTimeout, OwnerGone, OwnerTimeout, SlurmError

__all__ = ["ClusterError", "ClusterTimeout", "OwnerGone", "OwnerTimeout", "SlurmError"]
