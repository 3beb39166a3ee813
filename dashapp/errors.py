"""The project's one error family: every error dashapp reports to a person is a ``DashappError``.

A view catches ``DashappError`` (not ``Exception``) where it expects a failure, and shows
``str(error)`` as it is, so each message says what happened and, where there is one, what to
do about it. The kinds also keep the built-in class they refine (``NotFound`` is a
``LookupError``, ``ClusterTimeout`` a ``TimeoutError``), so code catching the built-in still
catches them.

This module imports nothing of dashapp: every layer may import it. The data layer's kinds are
re-exported by :mod:`dashapp.data.errors` (their historical import path).
"""

from __future__ import annotations

__all__ = [
    "BrokenLink",
    "ClusterError",
    "ClusterTimeout",
    "DashappError",
    "FileBusy",
    "FilesystemTimeout",
    "InvalidPlan",
    "NoDataYet",
    "NotFound",
    "NotHDF5",
    "NotRegularFile",
    "OutsideRoot",
    "OwnerGone",
    "OwnerTimeout",
    "SlurmError",
    "StationError",
    "SweepError",
    "Unsupported",
]


class DashappError(Exception):
    """Base class of every error dashapp reports to a user."""


# ------------------------------------------------------------------------------ data


class NotFound(DashappError, LookupError):
    """A file, folder or object inside a file does not exist."""


class OutsideRoot(DashappError, PermissionError):
    """A path resolves outside the directory the server was asked to show."""


class NotHDF5(DashappError, ValueError):
    """A file is not a readable HDF5 file (HDF4, netCDF-3, empty, truncated, corrupted)."""


class FileBusy(DashappError, OSError):
    """A file is locked by a program writing it; it can be read once the writer closes it."""


class Unsupported(DashappError, TypeError):
    """An object exists but cannot be shown as an image (strings, compound, 1-D, missing filter)."""


class NoDataYet(Unsupported):
    """A dataset its writer is growing has no slice yet: a wait, not a fault (said as such)."""


class BrokenLink(NotFound):
    """A soft or external link points at something that does not exist."""


class NotRegularFile(NotHDF5):
    """A path is a named pipe, socket or device: opening it could wait forever, so it is not."""


class FilesystemTimeout(DashappError, TimeoutError):
    """The filesystem did not answer in time (a hung or overloaded network mount)."""


# --------------------------------------------------------------------------- cluster


class ClusterError(DashappError):
    """A cluster request that cannot be done (bad options, none running, already running).

    (Not also a ``RuntimeError``: :class:`ClusterTimeout` is a ``TimeoutError``, and an
    exception with two built-in bases of different layouts cannot be unpickled by tblib,
    which Dask uses to send errors between processes.)
    """


class ClusterTimeout(ClusterError, TimeoutError):
    """A cluster operation did not finish in the time it was given (workers, scaling)."""


class SlurmError(ClusterError):
    """A Slurm command failed, is missing, or did not answer."""


class OwnerGone(ClusterError):
    """The sibling server process that ran the shared cluster has ended."""


class OwnerTimeout(ClusterTimeout):
    """The sibling server process that runs the shared cluster did not answer in time."""


# ----------------------------------------------------------------------------- sweep


class SweepError(DashappError, RuntimeError):
    """A parameter sweep could not be planned, run or written."""


class InvalidPlan(SweepError, ValueError):
    """A sweep plan's settings are out of range (an empty grid, a non-positive thickness)."""


class StationError(SweepError):
    """One station's inversion failed (the sweep records it and goes on with the others)."""
