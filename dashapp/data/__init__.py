"""dashapp's data layer: HDF5 in, arrays and plain records out (h5py, numpy, datashader only).

Nothing here imports panel, bokeh or holoviews; the state and view layers build on these
functions, and so can scripts and notebooks.
"""

from __future__ import annotations

from .chunks import reading_for, release_reads
from .dataset import Axis, DatasetInfo, check_viewable, describe, is_uniform
from .errors import (
    BrokenLink,
    DashappError,
    FileBusy,
    NoDataYet,
    NotFound,
    NotHDF5,
    OutsideRoot,
    Unsupported,
)
from .files import HANDLES, HandleCache, open_file
from .paths import (
    HDF5_EXTENSIONS,
    Entry,
    check_hdf5_signature,
    list_folder,
    relative_to_root,
    resolve,
)
from .pyramid import (
    PYRAMIDS,
    BuildStatus,
    Pyramid,
    PyramidDeclined,
    PyramidManager,
    build_pyramid,
    open_pyramid,
)
from .reader import (
    SliceImage,
    SliceRequest,
    SliceStats,
    ValueRange,
    estimate_range,
    read_slice,
    to_real,
    warm_up,
)
from .series import SeriesMember, series_members
from .slicing import AGGREGATIONS, COMPLEX_PARTS, default_axis, default_display_dims
from .tree import Node, read_tree

__all__ = [
    "AGGREGATIONS",
    "COMPLEX_PARTS",
    "HANDLES",
    "HDF5_EXTENSIONS",
    "PYRAMIDS",
    "Axis",
    "BrokenLink",
    "BuildStatus",
    "DashappError",
    "DatasetInfo",
    "Entry",
    "FileBusy",
    "HandleCache",
    "NoDataYet",
    "Node",
    "NotFound",
    "NotHDF5",
    "OutsideRoot",
    "Pyramid",
    "PyramidDeclined",
    "PyramidManager",
    "SeriesMember",
    "SliceImage",
    "SliceRequest",
    "SliceStats",
    "Unsupported",
    "ValueRange",
    "build_pyramid",
    "check_hdf5_signature",
    "check_viewable",
    "default_axis",
    "default_display_dims",
    "describe",
    "estimate_range",
    "is_uniform",
    "list_folder",
    "open_file",
    "open_pyramid",
    "read_slice",
    "read_tree",
    "reading_for",
    "relative_to_root",
    "release_reads",
    "resolve",
    "series_members",
    "to_real",
    "warm_up",
]
