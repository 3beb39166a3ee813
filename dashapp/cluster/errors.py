"""The cluster's errors: members of dashapp's one error family (:class:`DashappError`).

Views catch :class:`~dashapp.data.errors.DashappError` and show its message as it is, so a
refused ``sbatch``, a lost server process and a request that cannot be done read the same way
as a file that is not HDF5.
"""

from __future__ import annotations

from ..data.errors import DashappError

__all__ = ["ClusterError", "ClusterTimeout"]


class ClusterError(DashappError, RuntimeError):
    """A cluster request that cannot be done; the message says why, for the person asking."""


class ClusterTimeout(ClusterError, TimeoutError):
    """Workers (or the server process running the cluster) did not arrive in time."""
