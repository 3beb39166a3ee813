"""Small HDF5 files used by the data, state, view and browser tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def write_dataset(path: Path, data: np.ndarray, **layout):
    """``data`` written as dataset ``/v`` of a new file (``layout``: chunks, compression, ...),
    and its description."""
    from dashapp.data import describe

    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=data, **layout)
    return describe(path, "/v")


def write_volume(path: Path, shape=(20, 30, 40), dtype="f4", name="model", scales=True) -> Path:
    """A smooth 3-D volume (distinct values along every axis) with metre dimension scales."""
    z, y, x = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij")
    data = (np.sin(6 * x) + np.cos(4 * y) + 3 * z).astype(dtype)
    with h5py.File(path, "a") as f:
        d = f.create_dataset(name, data=data, chunks=True, compression="gzip")
        d.attrs["units"] = "S/m"
        if scales:
            for dim, key in enumerate("zyx"):
                if key not in f:
                    s = f.create_dataset(key, data=np.arange(shape[dim]) * 10.0 + 5.0)
                    s.attrs["units"] = "m"
                    s.make_scale(key)
                d.dims[dim].attach_scale(f[key])
                d.dims[dim].label = key
    return path


def write_history(path: Path, iterations=4, shape=(6, 8, 10)) -> Path:
    """A 4-D (iteration, z, y, x) model history."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "a") as f:
        f.create_dataset("history", data=rng.random((iterations, *shape)).astype("f4"))
    return path
