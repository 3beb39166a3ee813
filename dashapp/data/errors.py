"""Exceptions raised by the data layer, with messages written for the scientist reading them.

Every error a user can cause (a path outside the root, a file that is not HDF5, a dataset of
strings) is a :class:`DashappError` subclass; views show ``str(error)`` as it is, so the message
says what happened and, where there is one, what to do about it.
"""

from __future__ import annotations

__all__ = [
    "BrokenLink",
    "DashappError",
    "FileBusy",
    "FilesystemTimeout",
    "NotFound",
    "NotHDF5",
    "NotRegularFile",
    "OutsideRoot",
    "Unsupported",
]


class DashappError(Exception):
    """Base class of every error dashapp reports to a user."""


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


class BrokenLink(NotFound):
    """A soft or external link points at something that does not exist."""


class NotRegularFile(NotHDF5):
    """A path is a named pipe, socket or device: opening it could wait forever, so it is not."""


class FilesystemTimeout(DashappError, TimeoutError):
    """The filesystem did not answer in time (a hung or overloaded network mount)."""
