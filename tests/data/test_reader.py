"""Reading slices: equal to numpy on the full array, for every layout, filter, dtype and axis."""

from __future__ import annotations

import os
import time
import tracemalloc

import h5py
import hdf5plugin
import numpy as np
import pytest

from dashapp.data import (
    NotHDF5,
    SliceRequest,
    default_display_dims,
    describe,
    estimate_range,
    read_slice,
    to_real,
    warm_up,
)
from dashapp.data import reader as reader_mod

from ..fixtures import write_dataset

LAYOUTS = {
    "contiguous": {},
    "chunked": {"chunks": (4, 8, 8)},
    "gzip": {"chunks": (4, 8, 8), "compression": "gzip", "shuffle": True},
    "lzf": {"chunks": (3, 5, 7), "compression": "lzf"},
    "blosc-zstd": {"chunks": (4, 8, 8), **hdf5plugin.Blosc(cname="zstd", clevel=5)},
    "bitshuffle-lz4": {"chunks": (4, 8, 8), **hdf5plugin.Bitshuffle()},
    "fletcher32": {"chunks": (4, 8, 8), "fletcher32": True},
}

DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
          "float16", "float32", "float64", "complex64", "complex128"]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    warm_up(("mean", "max", "min", "first"))


def _volume(dtype: str, shape=(10, 12, 14)) -> np.ndarray:
    rng = np.random.default_rng(1)
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype.startswith("complex"):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -1000), min(info.max, 1000), shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _full(info, axis, index, **kw):
    display = default_display_dims(info.ndim, axis)
    indices = [0] * info.ndim
    indices[axis] = index
    return read_slice(
        info, SliceRequest("/v", display, tuple(indices), plot_size=(1000, 1000), **kw)
    )


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_every_layout_reads_exactly_the_numpy_slice(tmp_path, layout, axis):
    data = _volume("float32")
    info = write_dataset(tmp_path / "v.h5", data, **LAYOUTS[layout])
    index = 3
    image = _full(info, axis, index)
    expected = np.take(data, index, axis=axis)
    np.testing.assert_array_equal(image.values, expected)
    assert not image.downsampled
    assert image.values.shape == expected.shape


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_is_shown_as_real_numbers(tmp_path, dtype):
    data = _volume(dtype)
    info = write_dataset(tmp_path / "v.h5", data, chunks=(2, 6, 7), compression="gzip")
    image = _full(info, 1, 5)
    expected = to_real(np.take(data, 5, axis=1), "magnitude")
    np.testing.assert_allclose(image.values, expected, rtol=1e-6)
    if dtype in ("int32", "uint32", "int64", "uint64", "float64", "complex128"):
        assert image.values.dtype == np.float64  # wide integers stay exact in the hover readout
    else:
        assert image.values.dtype == np.float32


@pytest.mark.parametrize(
    ("part", "fn"),
    [("magnitude", np.abs), ("phase", np.angle), ("real", np.real), ("imag", np.imag)],
)
def test_complex_parts(tmp_path, part, fn):
    data = _volume("complex128")
    info = write_dataset(tmp_path / "c.h5", data)
    image = _full(info, 0, 2, part=part)
    np.testing.assert_allclose(image.values, fn(data[2]))


def test_transposed_display_and_four_dims(tmp_path):
    data = np.arange(2 * 3 * 4 * 5, dtype="f8").reshape(2, 3, 4, 5)
    info = write_dataset(tmp_path / "h.h5", data)
    # show dim 3 up the screen and dim 1 across, at iteration 1 and dim-2 index 2
    image = read_slice(info, SliceRequest("/v", (3, 1), (1, 0, 2, 0), plot_size=(100, 100)))
    np.testing.assert_array_equal(image.values, data[1, :, 2, :].T)


def test_zoomed_region_reads_only_that_region(tmp_path):
    data = _volume("float64", (4, 100, 120))
    path = tmp_path / "z.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("v", data=data)
        for dim, n in ((1, 100), (2, 120)):
            s = f.create_dataset(f"c{dim}", data=np.arange(n) * 2.0)  # cells 2 units wide
            s.make_scale()
            d.dims[dim].attach_scale(s)
    info = describe(path, "/v")
    req = SliceRequest(
        "/v", (1, 2), (1, 0, 0), x_range=(20.5, 40.2), y_range=(9.0, 30.0), plot_size=(500, 500)
    )
    image = read_slice(info, req)
    assert image.cols == (10, 21)  # cells 10..20 overlap x in [20.5, 40.2]
    assert image.rows == (5, 16)
    np.testing.assert_array_equal(image.values, data[1, 5:16, 10:21])
    assert image.x == (19.0, 41.0)


def test_decreasing_coordinates_are_drawn_increasing(tmp_path):
    data = np.arange(12, dtype="f4").reshape(3, 4)
    path = tmp_path / "dec.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("v", data=data)
        s = f.create_dataset("depth", data=[30.0, 20.0, 10.0])
        s.make_scale()
        d.dims[0].attach_scale(s)
    info = describe(path, "/v")
    image = read_slice(info, SliceRequest("/v", (0, 1), (0, 0), plot_size=(100, 100)))
    np.testing.assert_array_equal(image.values, data[::-1])
    assert image.y == (5.0, 35.0)


@pytest.mark.parametrize(("agg", "reduce"), [("mean", np.mean), ("max", np.max), ("min", np.min)])
def test_downsampling_aggregates_blocks_of_cells(tmp_path, agg, reduce):
    data = np.random.default_rng(3).random((1, 400, 600)).astype("f8")
    info = write_dataset(tmp_path / "big.h5", data, chunks=(1, 100, 100))
    req = SliceRequest("/v", (1, 2), (0, 0, 0), plot_size=(100, 150), agg=agg)
    image = read_slice(info, req)
    if agg == "mean":  # 4x4 means: level 2, reduced from the chunks as they are read
        assert (image.level, image.source, image.read_shape) == (2, "file", (100, 150))
    else:  # the other reductions need the cells: read at full resolution, then reduced
        assert image.downsampled
        assert image.level == 0
    assert image.values.shape == (100, 150)
    blocks = data[0].reshape(100, 4, 150, 4)
    np.testing.assert_allclose(image.values, reduce(reduce(blocks, axis=3), axis=1), rtol=1e-6)


def test_max_keeps_a_single_hot_cell_visible(tmp_path):
    data = np.zeros((1, 2000, 2000), "f4")
    data[0, 1234, 567] = 99.0
    info = write_dataset(tmp_path / "spike.h5", data, chunks=(1, 256, 256), compression="gzip")
    image = read_slice(info, SliceRequest("/v", (1, 2), (0, 0, 0), plot_size=(300, 300), agg="max"))
    assert image.values.max() == 99.0
    mean = read_slice(info, SliceRequest("/v", (1, 2), (0, 0, 0), plot_size=(300, 300)))
    assert 0 < mean.values.max() < 99.0


def test_uneven_cells_are_resampled_onto_screen_pixels(tmp_path):
    widths = np.r_[np.full(20, 10.0), 10 * 1.5 ** np.arange(1, 6)]
    centres = np.cumsum(widths) - widths / 2
    data = np.tile(np.arange(25, dtype="f4"), (6, 1))
    path = tmp_path / "mesh.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("v", data=data)
        s = f.create_dataset("x", data=centres)
        s.make_scale()
        d.dims[1].attach_scale(s)
    info = describe(path, "/v")
    image = read_slice(info, SliceRequest("/v", (0, 1), (0, 0), plot_size=(60, 400)))
    assert image.values.shape == (6, 400)  # rows uniform: native; columns resampled
    assert image.downsampled
    # the last (widest) cell covers more screen pixels than a core cell
    row = image.values[0]
    assert (row == 24).sum() > 3 * (row == 0).sum()


def test_special_values_are_reported(tmp_path):
    data = np.ones((3, 4, 4), "f4")
    data[0] = np.nan
    data[1] = 7.0
    data[2, 0, 0] = np.inf
    data[2, 1, 1] = -np.inf
    info = write_dataset(tmp_path / "s.h5", data)
    assert "no finite values" in _full(info, 0, 0).notes[0]
    const = _full(info, 0, 1)
    assert const.stats.constant
    assert "every value in this slice is 7" in const.notes[0]
    inf = _full(info, 0, 2)
    assert inf.stats.n_inf == 2
    assert (inf.stats.min, inf.stats.max) == (1.0, 1.0)


def test_missing_virtual_sources_read_as_fill_value(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["d"] = np.full((4, 5), 3.0)
    layout = h5py.VirtualLayout((2, 4, 5), "f8")
    layout[0] = h5py.VirtualSource("a.h5", "d", (4, 5))
    layout[1] = h5py.VirtualSource("b.h5", "d", (4, 5))
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_virtual_dataset("v", layout, fillvalue=-1)
    info = describe(tmp_path / "v.h5", "/v", root=tmp_path)
    assert "1 of 2 virtual source files are missing" in info.notes[0]
    np.testing.assert_array_equal(_full(info, 0, 0).values, 3.0)
    np.testing.assert_array_equal(_full(info, 0, 1).values, -1.0)


def test_a_region_larger_than_the_budget_is_read_with_a_stride(tmp_path, monkeypatch):
    monkeypatch.setattr(reader_mod, "READ_BUDGET", 10_000)
    data = np.arange(400 * 400, dtype="f4").reshape(1, 400, 400)
    info = write_dataset(tmp_path / "b.h5", data)
    image = read_slice(info, SliceRequest("/v", (1, 2), (0, 0, 0), plot_size=(1000, 1000)))
    assert image.step == 4
    assert "every 4th cell" in image.notes[0]
    np.testing.assert_array_equal(image.values, data[0, ::4, ::4])


def test_reading_a_slice_never_loads_the_whole_dataset(tmp_path, monkeypatch):
    """A 64 MiB volume; each slice read must stay far below that in Python allocations."""
    from dashapp.data.chunks import CHUNK_CACHE

    monkeypatch.setattr(CHUNK_CACHE, "max_bytes", 2 * 2**20)
    CHUNK_CACHE.clear()
    path = tmp_path / "vol.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("v", shape=(256, 256, 256), dtype="f4", chunks=(32, 32, 32))
        for i in range(0, 256, 32):
            d[i : i + 32] = np.random.default_rng(i).random((32, 256, 256), dtype="f4")
    info = describe(path, "/v")
    for axis in (0, 1, 2):
        tracemalloc.start()
        image = _full(info, axis, 100)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert image.values.shape == (256, 256)
        assert peak < 8 * 2**20, f"axis {axis}: peak {peak / 2**20:.1f} MiB for a 64 MiB volume"


def test_unavailable_compression_filter_is_reported(tmp_path):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset(
            "v",
            shape=(4, 4),
            dtype="f4",
            chunks=(4, 4),
            compression=32099,
            allow_unknown_filter=True,
        )
        d.id.write_direct_chunk((0, 0), b"\x00" * 64)
    info = describe(path, "/v")
    with pytest.raises(NotHDF5, match="cannot be decoded"):
        read_slice(info, SliceRequest("/v", (0, 1), (0, 0)))


def test_estimate_range_is_exact_for_small_and_bounded_for_large(tmp_path):
    small = write_dataset(tmp_path / "s.h5", np.arange(1000, dtype="f4").reshape(10, 10, 10))
    r = estimate_range(small)
    assert (r.min, r.max, r.exact) == (0.0, 999.0, True)
    data = np.random.default_rng(0).random((64, 128, 128)).astype("f4")
    big = write_dataset(tmp_path / "b.h5", data, chunks=(16, 32, 32))
    r = estimate_range(big, budget=100_000)
    assert not r.exact
    assert r.sampled <= 100_000
    assert 0 <= r.min < 0.01
    assert 0.99 < r.max <= 1


def test_memory_stays_bounded_reading_a_volume_much_larger_than_the_cache(tmp_path, monkeypatch):
    from dashapp.data.chunks import CHUNK_CACHE

    monkeypatch.setattr(CHUNK_CACHE, "max_bytes", 1 * 2**20)
    CHUNK_CACHE.clear()
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset(
            "v", shape=(128, 256, 256), dtype="f4", chunks=(16, 64, 64), compression="gzip"
        )
        for i in range(0, 128, 16):
            d[i : i + 16] = np.random.default_rng(i).random((16, 256, 256), dtype="f4")
    info = describe(path, "/v")
    tracemalloc.start()
    for axis in (0, 1, 2):
        for index in range(0, info.shape[axis], 7):
            image = _full(info, axis, index)
            assert CHUNK_CACHE.nbytes <= CHUNK_CACHE.max_bytes
            assert image.values.size <= 256 * 256
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 12 * 2**20  # a 32 MiB volume through a 1 MiB cache, a slice at a time


def test_bytes_sent_are_bounded_by_the_plot_not_the_dataset(tmp_path):
    data = np.random.default_rng(0).random((2, 3000, 2000)).astype("f4")
    info = write_dataset(tmp_path / "wide.h5", data, chunks=(1, 500, 500))
    image = read_slice(info, SliceRequest("/v", (1, 2), (1, 0, 0), plot_size=(300, 200)))
    assert image.values.shape == (300, 200)
    assert image.values.nbytes == 300 * 200 * 4


def test_a_slow_read_does_not_stall_reads_of_other_datasets(tmp_path):
    """Chunks decode outside h5py's global lock: a small read finishes while a big one runs."""
    import threading

    from dashapp.data.chunks import CHUNK_CACHE

    CHUNK_CACHE.clear()
    rng = np.random.default_rng(0)
    big = tmp_path / "big.h5"
    with h5py.File(big, "w") as f:
        d = f.create_dataset(
            "v",
            shape=(32, 1024, 1024),
            dtype="f4",
            chunks=(32, 128, 128),
            compression="gzip",
            compression_opts=1,
        )
        for i in range(0, 1024, 256):
            d[:, i : i + 256] = rng.random((32, 256, 1024), dtype="f4")
    small = write_dataset(tmp_path / "small.h5", np.ones((4, 8, 8), "f4"))
    big_info = describe(big, "/v")
    order = []
    started = threading.Event()

    def slow():
        started.set()
        read_slice(big_info, SliceRequest("/v", (1, 2), (5, 0, 0), plot_size=(100, 100)))
        order.append("big")

    t = threading.Thread(target=slow)
    t.start()
    started.wait()
    time.sleep(0.05)  # the big read is decoding its 64 chunks (128 MiB of gzip)
    _full(small, 0, 1)
    order.append("small")
    t.join()
    assert order == ["small", "big"]


def test_scrubbing_with_prefetch_then_exiting_does_not_crash(tmp_path):
    """Prefetch threads and idle-handle closing must finish before HDF5 shuts down.

    Once seen: reading with prefetch, then exiting, aborted the interpreter ("ref-counted page
    nil", segmentation fault) on files written with HDF5's default (old) chunk index.
    """
    import subprocess
    import sys

    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("v", shape=(128, 128, 128), dtype="f4", chunks=(32, 32, 32))
        d[...] = np.random.default_rng(0).random((128, 128, 128), dtype="f4")
    code = (
        "from dashapp.data import describe, read_slice, SliceRequest\n"
        f"info = describe({str(path)!r}, '/v')\n"
        "for i in range(60):\n"
        "    read_slice(info, SliceRequest('/v', (1, 2), (i, 0, 0), plot_size=(128, 128)),"
        " prefetch=1)\n"
        "print('done')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "done" in out.stdout
    assert "ref-counted" not in out.stderr


def test_slices_too_big_for_the_chunk_cache_do_not_churn_it(tmp_path, monkeypatch):
    """A slice whose chunks fill more than half the cache is read without storing them (the
    next slice needs them all again: an LRU cycling through more than it holds never hits) and
    is not prefetched; a slice that fits is cached and read again from the cache."""
    from dashapp.data.chunks import CHUNK_CACHE, direct_reader

    monkeypatch.setattr(CHUNK_CACHE, "max_bytes", 1 * 2**20)
    CHUNK_CACHE.clear()
    path = tmp_path / "v.h5"
    data = np.random.default_rng(0).random((64, 256, 256), dtype="f4")
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=data, chunks=(16, 32, 32), compression="gzip")
    with h5py.File(path, "r", locking=False) as f:
        reader = direct_reader(path, f["v"])
    # one slice along axis 0 crosses 8 x 8 chunks of 64 KiB: 4 MiB, more than the cache
    np.testing.assert_array_equal(reader.read((5, slice(None), slice(None))), data[5])
    assert len(CHUNK_CACHE) == 0
    assert reader.prefetch((21, slice(None), slice(None))) == 0
    # a zoomed-in region, 2 x 2 chunks (256 KiB), is kept
    region = (5, slice(0, 64), slice(0, 64))
    np.testing.assert_array_equal(reader.read(region), data[region])
    assert len(CHUNK_CACHE) == 4
    hits = CHUNK_CACHE.hits
    np.testing.assert_array_equal(reader.read((6, slice(0, 64), slice(0, 64))), data[6, :64, :64])
    assert CHUNK_CACHE.hits == hits + 4
    assert reader.prefetch((21, slice(0, 64), slice(0, 64))) == 4


def _two_layers(path):
    """A gzip volume of two 16-slice chunk layers, 256 chunks (64 MiB decoded) each."""
    data = np.random.default_rng(3).random((32, 1024, 1024), dtype="f4")
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "v", data=data, chunks=(16, 64, 64), compression="gzip", compression_opts=1
        )
    return data


def _prefetches_done(timeout: float = 60) -> None:
    """Wait until every queued prefetch decode has run."""
    from dashapp.data.chunks import PREFETCHER

    deadline = time.monotonic() + timeout
    while PREFETCHER.pending() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_read_asked_for_after_a_prefetch_does_not_wait_for_the_whole_layer(tmp_path):
    """A prefetch of a layer (256 chunk decodes) must not sit ahead of a later read, of this
    dataset or another: the read's chunks are decoded while most of the prefetch still waits."""
    from dashapp.data.chunks import CHUNK_CACHE, direct_reader

    CHUNK_CACHE.clear()
    _two_layers(tmp_path / "big.h5")
    other = np.random.default_rng(4).random((16, 256, 256), dtype="f4")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("v", data=other, chunks=(16, 64, 64), compression="gzip")
    with h5py.File(tmp_path / "big.h5", "r", locking=False) as f:
        big = direct_reader(tmp_path / "big.h5", f["v"])
    with h5py.File(tmp_path / "other.h5", "r", locking=False) as f:
        small = direct_reader(tmp_path / "other.h5", f["v"])
    try:
        assert big.prefetch((0, slice(None), slice(None))) == 256
        np.testing.assert_array_equal(small.read((3, slice(None), slice(None))), other[3])
        still = len(big._prefetching)
        assert still > 128, f"the read waited until {256 - still} of 256 prefetches were done"
    finally:
        _prefetches_done()


def test_a_newer_prefetch_of_a_dataset_replaces_its_older_waiting_one(tmp_path):
    """A user who jumped on does not need the old layer: its waiting decodes are dropped."""
    from dashapp.data.chunks import CHUNK_CACHE, direct_reader

    CHUNK_CACHE.clear()
    data = _two_layers(tmp_path / "big.h5")
    with h5py.File(tmp_path / "big.h5", "r", locking=False) as f:
        reader = direct_reader(tmp_path / "big.h5", f["v"])
    reader.prefetch((0, slice(None), slice(None)))
    reader.prefetch((16, slice(None), slice(None)))
    _prefetches_done()
    assert not reader._prefetching
    layers = [
        sum(
            reader._chunk_key((z, y, x)) in CHUNK_CACHE
            for y in range(0, 1024, 64)
            for x in range(0, 1024, 64)
        )
        for z in (0, 16)
    ]
    assert layers[1] == 256
    assert layers[0] <= 8, f"{layers[0]} chunks of the replaced layer were still decoded"
    # what was prefetched is what the file holds
    np.testing.assert_array_equal(reader.read((20, slice(None), slice(None))), data[20])


def test_a_bulk_read_steps_aside_while_a_users_read_runs(tmp_path, monkeypatch):
    """A pyramid build's reads (``cache=False``) decode nothing new while a user's read runs,
    resume when it ends, and are slowed, not stopped, by reads that never end."""
    import threading

    from dashapp.data.chunks import FOREGROUND, direct_reader

    data = np.random.default_rng(5).random((64, 64, 64)).astype("f4")
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("v", data=data, chunks=(16, 16, 16), compression="gzip")
    with h5py.File(tmp_path / "v.h5", "r", locking=False) as f:
        reader = direct_reader(tmp_path / "v.h5", f["v"])
    box = slice(0, 32)
    got: list[np.ndarray] = []

    def bulk() -> None:
        got.append(reader.read((box, box, box), cache=False))

    waited = FOREGROUND.waited
    with FOREGROUND.reading():  # a user's slice read in progress
        thread = threading.Thread(target=bulk)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the bulk read decoded while a user's read ran"
        # the user's own reads are not held up
        np.testing.assert_array_equal(reader.read((3, slice(None), slice(None))), data[3])
    thread.join(10)
    assert not thread.is_alive()
    np.testing.assert_array_equal(got[0], data[box, box, box])
    assert FOREGROUND.waited - waited >= 0.4
    # a user who never stops reading slows a build down, but cannot stop it: 8 chunks
    monkeypatch.setattr(FOREGROUND, "max_wait", 0.05)
    got.clear()
    with FOREGROUND.reading():
        t0 = time.perf_counter()
        thread = threading.Thread(target=bulk)
        thread.start()
        thread.join(10)
        assert not thread.is_alive()
        assert time.perf_counter() - t0 >= 8 * 0.05 * 0.9
    np.testing.assert_array_equal(got[0], data[box, box, box])


def _scrub_round_robin(readers, datas, rounds, owners=True):
    """Each reader steps through slices 0..15 of its first chunk layer in turn, as sessions
    dragging sliders at once; returns the cache misses of each round after the first."""
    from dashapp.data.chunks import CHUNK_CACHE, reading_for

    misses = []
    for r in range(rounds):
        before = CHUNK_CACHE.misses
        for i, (reader, data) in enumerate(zip(readers, datas, strict=True)):
            index = r % 16
            with reading_for(i if owners else None):
                got = reader.read((index, slice(None), slice(None)))
            np.testing.assert_array_equal(got, data[index])
        misses.append(CHUNK_CACHE.misses - before)
    return misses[1:]


@pytest.mark.parametrize("owners", [True, False], ids=["sessions", "anonymous"])
def test_sessions_needing_more_than_the_cache_do_not_thrash_it(tmp_path, monkeypatch, owners):
    """Six sessions scrub six gzip volumes at once, each inside a chunk layer of 1 MiB, with a
    4 MiB cache. A plain LRU evicts each layer just before its session steps again: every read
    misses every chunk (the anonymous control). Each session claiming its layer, four layers
    stay cached and only the two that did not fit are decoded again."""
    from dashapp.data.chunks import CHUNK_CACHE, direct_reader

    monkeypatch.setattr(CHUNK_CACHE, "max_bytes", 4 * 2**20)
    CHUNK_CACHE.clear()
    readers, datas = [], []
    for i in range(6):
        path = tmp_path / f"s{i}.h5"
        data = np.random.default_rng(10 + i).random((32, 128, 128), dtype="f4")
        with h5py.File(path, "w") as f:  # a layer: 4 x 4 chunks of 64 KiB
            f.create_dataset("v", data=data, chunks=(16, 32, 32), compression="gzip")
        with h5py.File(path, "r", locking=False) as f:
            readers.append(direct_reader(path, f["v"]))
        datas.append(data)
    misses = _scrub_round_robin(readers, datas, rounds=8, owners=owners)
    if owners:
        assert max(misses) <= 2 * 16, f"misses per round of six reads: {misses}"
    else:
        assert min(misses) == 6 * 16, f"misses per round of six reads: {misses}"
    CHUNK_CACHE.clear()


@pytest.mark.parametrize(
    "opts", [{}, {"fletcher32": True}, {"dtype": ">i2"}], ids=["plain", "fletcher32", "big-endian"]
)
def test_unfiltered_chunks_are_read_in_part_and_left_to_the_page_cache(tmp_path, opts):
    """A slice across the first axis of unfiltered chunks reads only its own bytes of each
    chunk (and caches nothing: the OS holds these pages); a slice along it reads and caches
    whole chunks. Edge chunks, strides and never-written chunks read as numpy does."""
    from dashapp.data.chunks import CHUNK_CACHE, direct_reader

    CHUNK_CACHE.clear()
    dtype = opts.pop("dtype", "f4")
    data = (np.random.default_rng(7).random((40, 44, 36)) * 1000).astype(dtype)
    data[:, 24:, :] = -7  # never written below: the fill value
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("v", shape=data.shape, dtype=dtype, chunks=(16, 8, 8),
                              fillvalue=-7, **opts)  # fmt: skip
        ds[:, :24, :] = data[:, :24, :]
    with h5py.File(path, "r", locking=False) as f:
        reader = direct_reader(path, f["v"])
        assert f["v"].id.get_num_chunks() < 3 * 6 * 5  # some chunks were never written
    assert reader.raw
    selections = [
        (3, slice(None), slice(None)),
        (39, slice(None), slice(None)),  # the last, partial chunk layer
        (17, slice(5, 30, 3), slice(1, None, 2)),
        (slice(2, 9), 20, slice(None)),
    ]
    for sel in selections[:3]:
        np.testing.assert_array_equal(reader.read(sel), data[sel])
    assert len(CHUNK_CACHE) == 0, "chunks read in part were cached"
    np.testing.assert_array_equal(reader.read(selections[3]), data[selections[3]])
    np.testing.assert_array_equal(reader.read((slice(None), 3, slice(None))), data[:, 3, :])
    assert len(CHUNK_CACHE) > 0  # across the chunks' first axis: read whole, kept


def test_a_truncated_file_read_in_part_says_so(tmp_path):
    from dashapp.data.chunks import direct_reader

    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=np.ones((32, 64, 64), "f4"), chunks=(16, 16, 16))
    with h5py.File(path, "r", locking=False) as f:
        reader = direct_reader(path, f["v"])
    reader.read((30, slice(None), slice(None)))  # where its chunks are is known now
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(OSError, match="cut short"):
        reader.read((31, slice(None), slice(None)))


def test_the_next_layer_is_prefetched_from_the_half_of_the_layer_nearest_it(tmp_path):
    """Moving forward at slice 2 of a 16-slice layer prefetches nothing (a hand turning back
    inside the layer would have its neighbour decoded for nothing); at slice 10 it prefetches
    the next layer; moving back at slice 5, the layer before."""
    from dashapp.data.chunks import CHUNK_CACHE, direct_reader

    CHUNK_CACHE.clear()
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=np.random.default_rng(2).random((48, 64, 64), dtype="f4"),
                         chunks=(16, 32, 32), compression="gzip")  # fmt: skip
    info = describe(path, "/v")
    with h5py.File(path, "r", locking=False) as f:
        reader = direct_reader(path, f["v"])

    def layer_cached(z: int) -> int:
        return sum(reader._chunk_key((z, y, x)) in CHUNK_CACHE for y in (0, 32) for x in (0, 32))

    def step(index: int, direction: int) -> None:
        read_slice(info, SliceRequest("/v", (1, 2), (index, 0, 0)), prefetch=direction)
        _prefetches_done()

    step(18, +1)
    assert (layer_cached(16), layer_cached(32)) == (4, 0)
    step(26, +1)
    assert layer_cached(32) == 4
    step(21, -1)
    assert layer_cached(0) == 4


def test_a_prefetch_does_not_evict_what_sessions_are_looking_at(tmp_path, monkeypatch):
    """With the cache full of chunks two sessions are scrubbing through, a prefetch is not
    even decoded; once one session has closed, it is."""
    from dashapp.data.chunks import CHUNK_CACHE, direct_reader, reading_for, release_reads

    monkeypatch.setattr(CHUNK_CACHE, "max_bytes", 2 * 2**20)
    CHUNK_CACHE.clear()
    data = _two_layers(tmp_path / "big.h5")
    with h5py.File(tmp_path / "big.h5", "r", locking=False) as f:
        reader = direct_reader(tmp_path / "big.h5", f["v"])
    box = (slice(0, 128), slice(0, 128))  # 4 chunks of 256 KiB: 1 MiB
    for owner, z in ((1, 2), (2, 18)):
        with reading_for(owner):
            np.testing.assert_array_equal(reader.read((z, *box)), data[z, :128, :128])
    assert CHUNK_CACHE.room() == 0
    guess = (2, slice(128, 256), slice(0, 128))
    assert reader.prefetch(guess) == 0
    release_reads(2)
    assert reader.prefetch(guess) == 4
    _prefetches_done()
    with reading_for(1):  # the session still there was not touched
        hits = CHUNK_CACHE.hits
        reader.read((3, *box))
        assert CHUNK_CACHE.hits == hits + 4
    CHUNK_CACHE.clear()


def _bytes_read() -> int:
    """Bytes this process has read through read/pread so far (the kernel's count)."""
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


def test_a_plane_across_the_rows_of_a_contiguous_volume_reads_only_its_rows(tmp_path):
    """A plane along axis 1 of a contiguous (8, 1024, 1024) float32 volume is 8 rows of 4 KB,
    4 MB apart: reading the span between them (28 MB, it fits a read piece) would read the
    volume to show 32 KB."""
    from dashapp.data.chunks import direct_reader

    path = tmp_path / "c.h5"
    data = np.arange(8 * 1024 * 1024, dtype="f4").reshape(8, 1024, 1024)
    with h5py.File(path, "w") as f:
        f["v"] = data
    with h5py.File(path, "r", locking=False) as f:
        reader = direct_reader(path, f["v"])
        assert reader is not None
        before = _bytes_read()
        plane = reader.read((slice(None), 5, slice(None)))
        read = _bytes_read() - before
    np.testing.assert_array_equal(plane, data[:, 5, :])
    assert read < 1 << 20, read  # the 8 rows (32 KB), not 28 MB
