"""Fuzz the data layer with generated HDF5 files: only the project's own errors, memory bounded.

Hypothesis writes files with random shapes (absurd declared ones included: 10^9 cells on a side,
10^15 in all), dtypes (integers, floats, complex, bool, strings, compound, enum), layouts
(contiguous, chunked with 1-cell to 4 GB chunks), filters (gzip, lzf, shuffle,
fletcher32, Blosc and LZ4 from hdf5plugin), fill values, partly written data, and soft, external,
broken links and virtual datasets whose sources are missing. Each goes through what the slicer
calls: ``read_tree``, ``describe``, ``check_viewable``, ``read_slice`` (whole, zoomed, max) and
``estimate_range``. Any exception other than a :class:`DashappError` fails, and so does a step
whose Python/numpy allocations (tracemalloc) pass :data:`BUDGET`. The process's address space is
limited while it runs, so a regression fails here rather than exhausting the machine.

``DASHAPP_FUZZ_EXAMPLES`` sets the number of files (default 40, about 30 s); the count tried is
printed at the end.
"""

from __future__ import annotations

import contextlib
import os
import resource
import tracemalloc
import uuid
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashapp.data import chunks, describe, read_tree
from dashapp.data.dataset import check_viewable
from dashapp.data.errors import DashappError
from dashapp.data.reader import SliceRequest, estimate_range, read_slice, warm_up
from dashapp.data.slicing import default_axis, default_display_dims

EXAMPLES = int(os.environ.get("DASHAPP_FUZZ_EXAMPLES", "40"))
#: The read budget while fuzzing (READ_MEMORY), and what any step may allocate.
BUDGET = 256 * 2**20
TRIED: list[int] = [0, 0]  # files, datasets

SIZES = st.one_of(
    st.integers(0, 40), st.sampled_from([1, 2, 63, 64, 65, 1000, 10**5, 10**6, 10**9])
)
#: Numbers of dims, weighted to what the slicer shows (2 to 4).
NDIMS = st.sampled_from([0, 1, 2, 2, 2, 3, 3, 3, 4])
DTYPES = st.sampled_from(
    [
        *("i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16", "?"),
        *("S5", "str", "compound", "enum"),
    ]
)
NUMERIC = st.sampled_from(["f4", "i2", "u1", "f8", "c8", "?"])
FILTERS = st.sampled_from(
    ["none", "gzip", "lzf", "shuffle+gzip", "fletcher32", "shuffle", "blosc", "lz4"]
)


def _dtype(name: str) -> np.dtype:
    if name == "str":
        return h5py.string_dtype()
    if name == "compound":
        return np.dtype([("a", "f4"), ("b", "i2")])
    if name == "enum":
        return h5py.enum_dtype({"LOW": 0, "HIGH": 1}, basetype="u1")
    return np.dtype(name)


@st.composite
def dataset_specs(draw):
    ndim = draw(NDIMS)
    shape = tuple(draw(SIZES) for _ in range(ndim))
    if int(np.prod(shape, dtype=np.float64)) > 10**15:
        shape = tuple(min(n, 1000) for n in shape)
    dtype = draw(st.one_of(NUMERIC, DTYPES))
    numeric = dtype not in ("S5", "str", "compound", "enum")
    layout = draw(st.sampled_from(["contiguous", "chunked", "chunked"]))
    spec = {"shape": shape, "dtype": dtype, "layout": layout, "filter": "none"}
    if layout == "chunked" and ndim and 0 not in shape:
        spec["chunks"] = tuple(
            draw(st.sampled_from([1, 2, 8, 64, n, max(1, n // 3)])) for n in shape
        )
        spec["filter"] = draw(FILTERS) if numeric else draw(st.sampled_from(["none", "gzip"]))
        spec["maxshape"] = draw(st.booleans())
    if numeric and draw(st.booleans()):
        spec["fill"] = draw(st.sampled_from([0, 1, 7, -3, 255, float("nan"), float("inf")]))
    if ndim and 0 not in shape and draw(st.booleans()):
        start = tuple(draw(st.integers(0, n - 1)) for n in shape)
        spec["write"] = tuple(
            (s, min(n, s + draw(st.integers(1, 40)))) for s, n in zip(start, shape, strict=True)
        )
    spec["extras"] = draw(st.sets(st.sampled_from(["soft", "broken", "external", "vds"])))
    return spec


def _create(f: h5py.File, spec: dict) -> None:
    dtype = _dtype(spec["dtype"])
    kw: dict = {}
    if "chunks" in spec:
        ch = list(spec["chunks"])
        while np.prod(ch, dtype=np.float64) * dtype.itemsize >= 2**32 - 1:  # HDF5's chunk limit
            ch[int(np.argmax(ch))] //= 2
        kw["chunks"] = tuple(ch)
        if spec.get("maxshape"):
            kw["maxshape"] = (None, *spec["shape"][1:])
        filt = spec["filter"]
        if "shuffle" in filt:
            kw["shuffle"] = True
        if "gzip" in filt:
            kw["compression"] = "gzip"
        if filt == "lzf":
            kw["compression"] = "lzf"
        if filt == "fletcher32":
            kw["fletcher32"] = True
        if filt == "blosc":
            kw.update(hdf5plugin.Blosc(cname="lz4"))
        if filt == "lz4":
            kw.update(hdf5plugin.LZ4())
    if "fill" in spec:
        value = spec["fill"]
        if dtype.kind in "iub":
            value = np.array(value if np.isfinite(value) else 1).astype(dtype)
        kw["fillvalue"] = value
    ds = f.create_dataset("x", shape=spec["shape"], dtype=dtype, **kw)
    if (
        "write" in spec
        and _written_bytes(spec["write"], kw.get("chunks"), spec["shape"], dtype) > 2**25
    ):
        # HDF5 writes a whole contiguous dataset (its fill value) or whole chunks on the first
        # write: a declared 10^12 cells would fill the disk. (78 GB did, once.)
        return
    if "write" in spec:
        box = tuple(slice(a, b) for a, b in spec["write"])
        shape = tuple(b - a for a, b in spec["write"])
        values = np.random.default_rng(0).normal(size=shape) * 100
        if dtype.kind in "OSU" or dtype.fields or dtype.kind == "b":
            values = np.zeros(shape, dtype=dtype) if dtype.kind != "O" else None
        if values is not None:
            with contextlib.suppress(TypeError, ValueError):
                ds[box] = values.astype(dtype) if dtype.fields is None else values


def _written_bytes(box, chunks, shape, dtype) -> float:
    """Bytes HDF5 stores (and compresses in memory) to write ``box``."""
    if chunks is None:
        return float(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    n = np.prod([(b - 1) // c - a // c + 1 for (a, b), c in zip(box, chunks, strict=True)])
    return float(n) * float(np.prod(chunks, dtype=np.float64)) * dtype.itemsize


def _extras(root: Path, path: Path, f: h5py.File, spec: dict) -> None:
    extras = spec["extras"]
    if "soft" in extras:
        f["soft"] = h5py.SoftLink("/x")
    if "broken" in extras:
        f["broken"] = h5py.SoftLink("/nowhere")
    if "external" in extras:
        f["ext_missing"] = h5py.ExternalLink("missing.h5", "/x")
        f["ext_self"] = h5py.ExternalLink(path.name, "/x")
    if "vds" in extras and 0 < len(spec["shape"]) <= 3:
        shape = spec["shape"]
        layout = h5py.VirtualLayout(shape=shape, dtype="f4")
        layout[...] = h5py.VirtualSource(str(root / "absent.h5"), "data", shape=shape)
        f.create_virtual_dataset("vds", layout, fillvalue=-1)


def _step(fn):
    """``fn()``; a DashappError is an answer (None); returns its value and allocation peak."""
    tracemalloc.start()
    try:
        return fn()
    except DashappError:
        return None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < BUDGET, f"a step allocated {peak / 2**20:.0f} MB"


def _drive(root: Path, path: Path, name: str) -> None:
    info = _step(lambda: describe(path, name, root=root))
    if info is None or _step(lambda: check_viewable(info) or True) is None:
        return
    display = default_display_dims(info.ndim, default_axis(info.ndim))
    middle = tuple(n // 2 for n in info.shape)
    whole = SliceRequest(name, display, middle, plot_size=(120, 160))
    zoom = SliceRequest(name, display, middle, x_range=(0.2, 9.7), y_range=(-3, 2.5))
    for request in (whole, zoom, SliceRequest(name, display, (0,) * info.ndim, agg="max")):
        _step(lambda r=request: read_slice(info, r, root))
    _step(lambda: estimate_range(info, root=root))


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory):
    warm_up(("mean", "max"))  # numba's compilation is not a read's memory
    yield tmp_path_factory.mktemp("fuzz")
    print(f"\nfuzz: tried {TRIED[0]} generated files, {TRIED[1]} datasets and links")


@pytest.fixture
def limited(monkeypatch):
    """READ_MEMORY at :data:`BUDGET` and this process's address space at what it uses now
    plus 4 GB, for the test's duration (a read of a declared 4 GB would fail, not swap)."""
    monkeypatch.setattr(chunks, "READ_MEMORY", BUDGET, raising=False)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as fh:
        used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (used + 4 * 2**30, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(spec=dataset_specs())
def test_generated_files_give_only_dashapp_errors_within_the_budget(fuzz_root, limited, spec):
    folder = fuzz_root / uuid.uuid4().hex[:8]
    folder.mkdir()
    path = folder / "f.h5"
    try:
        with h5py.File(path, "w") as f:
            _create(f, spec)
            _extras(folder, path, f, spec)
    except (ValueError, TypeError, OSError):  # a combination HDF5 itself refuses to write
        return
    TRIED[0] += 1
    _step(lambda: read_tree(path, root=folder))
    with h5py.File(path, "r", locking=False) as f:  # (the data layer holds it so)
        names = ["/" + n for n in f]
    for name in names:
        TRIED[1] += 1
        _drive(folder, path, name)
