"""Exceptions raised by the data layer, with messages written for the scientist reading them.

Every error a user can cause (a path outside the root, a file that is not HDF5, a dataset of
strings) is a :class:`DashappError` subclass; views show ``str(error)`` as it is, so the message
says what happened and, where there is one, what to do about it.

The classes live in :mod:`dashapp.errors` (the project's one error family, which also holds the
cluster and sweep kinds); this module keeps the data layer's import path.
"""

from __future__ import annotations

from ..errors import (
    BrokenLink,
    DashappError,
    FileBusy,
    FilesystemTimeout,
    NoDataYet,
    NotFound,
    NotHDF5,
    NotRegularFile,
    OutsideRoot,
    Unsupported,
)

__all__ = [
    "BrokenLink",
    "DashappError",
    "FileBusy",
    "FilesystemTimeout",
    "NoDataYet",
    "NotFound",
    "NotHDF5",
    "NotRegularFile",
    "OutsideRoot",
    "Unsupported",
]
