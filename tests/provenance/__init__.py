"""Provenance tests, and the workspace they share: real HDF5 files, real views, every event kind.

:func:`make_workspace` drives the Python API the way the app will: a :class:`SliceState` on
real files gives the deep links (``to_query``) and view settings (``view()``) recorded.
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dashapp.data import SliceRequest, describe, read_slice
from dashapp.provenance import Record, ViewRecorder
from dashapp.state import SliceState, to_query

from ..fixtures import write_volume

#: Views the helper looks at: (axis, index, extra view settings).
VIEWS = [
    (2, 5, {"cmap": "kbc"}),
    (0, 12, {"cmap": "viridis", "reverse": True}),
    (1, 20, {"clim": "manual", "vmin": -1.0, "vmax": 3.5}),
]


def tiny_png(width: int = 3, height: int = 2) -> bytes:
    """A valid RGB PNG (what a plot export gives), built without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + bytes([200, 40, 10] * width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def slice_values(root: Path, query: dict[str, str]) -> np.ndarray:
    """The image the slicer reads for ``query`` (to compare a restored view with the original)."""
    state = SliceState(root=str(root))
    from dashapp.state import apply_query

    assert apply_query(state, query) == []
    info = describe(root / state.file, state.dataset, root=root)
    request = SliceRequest(
        dataset=state.dataset,
        display=tuple(state.display),
        indices=state.full_indices(),
        plot_size=(600, 800),
    )
    return read_slice(info, request, root=root).values


def make_workspace(base: Path, repo: Path | None = None) -> dict[str, Any]:
    """A workspace with every kind of event, recorded through the API.

    Returns ``record``, ``root`` (the served folder), ``model`` (the HDF5 file),
    ``queries`` (the deep links recorded as views, in order), ``snapshot_query``, ``png``
    and ``values`` (the slice image of each query).
    """
    root = base / "data"
    (root / "run").mkdir(parents=True)
    model = write_volume(root / "run" / "model.h5", shape=(20, 30, 40))
    record = Record(base / "workspace")
    record.session("start", session="s1")
    record.environment(repo)
    record.file_opened(model, root=root)

    state = SliceState(root=str(root))
    state.open("run/model.h5", "/model")
    recorder = ViewRecorder(record, delay=0.05)
    queries = []
    for axis, index, extra in VIEWS:
        state.apply_view(axis=axis, index=index, **extra)
        query = to_query(state)
        queries.append(query)
        recorder.update(query, state.view(), state.file)
        deadline = time.monotonic() + 10
        while recorder.pending and time.monotonic() < deadline:
            time.sleep(0.01)
    recorder.close()

    png = tiny_png()
    snapshot_query = to_query(state)
    record.snapshot(png, snapshot_query, state.view(), title="The manual-limits section")
    record.note(
        "Conductor at y=20 looks shallower than in the previous run.\nCheck iteration 8.",
        images=[png],
        file="run/model.h5",
    )

    out = root / "run" / "mean.h5"
    started = time.perf_counter()
    with h5py.File(model, "r", locking=False) as f, h5py.File(out, "w") as g:
        g["mean"] = f["model"][...].mean(axis=0)
    record.computation(
        "mean_over_z",
        {"axis": 0},
        [model],
        [out],
        time.perf_counter() - started,
        "ok",
        root=root,
    )
    record.cluster(
        "start",
        cls="dask_jobqueue.SLURMCluster",
        options={"cores": 2, "memory": "4GB", "walltime": "00:30:00"},
        job_script="#!/usr/bin/env bash\n#SBATCH -J dask-worker\nsrun dask worker\n",
    )
    record.cluster("scale", n=4, job_ids=["1001", "1002"])
    record.cluster("adapt", minimum=0, maximum=8)
    record.cluster("worker_lost", worker="tcp://10.0.0.5:4001", job_id="1002", reason="walltime")
    record.session("end", session="s1")
    assert record.flush(timeout=30)
    values = [slice_values(root, q) for q in queries]
    return {
        "record": record,
        "root": root,
        "model": model,
        "output": out,
        "queries": queries,
        "snapshot_query": snapshot_query,
        "png": png,
        "values": values,
    }
