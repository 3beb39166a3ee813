"""Pyramids: levels equal the numpy computation on the full array, for every layout; stale
pyramids are rebuilt; slices read from a level equal that level's slice."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from dashapp.data import SliceRequest, describe, read_slice
from dashapp.data import pyramid as pyr
from dashapp.data.pyramid import PyramidManager, build_pyramid, choose_level, open_pyramid

from ..fixtures import write_dataset

LAYOUTS = {
    "contiguous": {},
    "chunked": {"chunks": (16, 16, 16)},
    "gzip": {"chunks": (16, 16, 16), "compression": "gzip", "shuffle": True},
    "lzf": {"chunks": (10, 12, 14), "compression": "lzf"},  # read through h5py
}


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch, tmp_path):
    """Small blocks and levels so that a test volume has several blocks and levels."""
    monkeypatch.setattr(pyr, "BLOCK", 32)
    monkeypatch.setattr(pyr, "COARSEST", 8)
    monkeypatch.setenv("DASHAPP_CACHE", str(tmp_path / "cache"))


def reference_level(data: np.ndarray, level: int, axis: int | None = None) -> np.ndarray:
    """Level ``level`` computed on the whole array with numpy (NaN-padded 2x means).

    For slices along ``axis`` of a volume only the slice plane is reduced: the result keeps
    every slice along ``axis``. Without ``axis`` all dims are reduced (a 2-D image).
    """
    out = data.astype(np.float32)
    dims = [d for d in range(out.ndim) if d != axis]
    for _ in range(level):
        out = np.pad(
            out, [(0, n % 2 if d in dims else 0) for d, n in enumerate(out.shape)],
            constant_values=np.nan,
        )  # fmt: skip
        shape, axes = [], []
        for d, n in enumerate(out.shape):
            if d in dims:
                shape += [n // 2, 2]
                axes.append(len(shape) - 1)
            else:
                shape.append(n)
        with np.errstate(invalid="ignore"), _nowarn():
            out = np.nanmean(out.reshape(shape), axis=tuple(axes)).astype(np.float32)
    return out


class _nowarn:
    def __enter__(self):
        import warnings

        self.c = warnings.catch_warnings()
        self.c.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *a):
        self.c.__exit__(*a)


def _volume(shape=(70, 54, 90)):
    z, y, x = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij")
    data = (np.sin(7 * x) * np.cos(5 * y) + z).astype("f4")
    data[3, 4, 5] = np.nan
    return data


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_levels_equal_numpy_on_the_full_array(tmp_path, layout):
    data = _volume()
    path = tmp_path / "v.h5"
    info = write_dataset(path, data, **LAYOUTS[layout])
    progress = []
    pyramid = build_pyramid(info, progress=progress.append)
    assert progress[-1] == 1.0
    assert pyramid.shapes == [(70, 54, 90), (35, 27, 45), (18, 14, 23), (9, 7, 12), (5, 4, 6)]
    for level in range(1, pyramid.levels):
        for axis in range(3):
            ref = reference_level(data, level, axis)
            assert ref.shape[axis] == data.shape[axis]  # every slice kept
            others = [d for d in range(3) if d != axis]
            for index in (0, 1, ref.shape[axis] // 2, ref.shape[axis] - 1):
                n_rows, n_cols = ref.shape[others[0]], ref.shape[others[1]]
                got = pyramid.read(level, axis, index, (0, n_rows), (0, n_cols))
                np.testing.assert_allclose(got, np.take(ref, index, axis=axis), rtol=1e-6)
    # a contiguous source gets a full-resolution copy along its last axis
    assert pyramid.has(0, 2) == (layout == "contiguous")


def test_two_dimensional_dataset(tmp_path):
    data = np.arange(100 * 130, dtype="i4").reshape(100, 130)
    path = tmp_path / "img.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("img", data=data, chunks=(32, 32), compression="gzip")
    info = describe(path, "/img")
    pyramid = build_pyramid(info)
    ref = reference_level(data, 2)
    np.testing.assert_allclose(pyramid.read(2, None, 0, (0, ref.shape[0]), (0, ref.shape[1])), ref)


def test_slices_read_through_the_pyramid_match_the_level(tmp_path):
    data = _volume((64, 64, 64))
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("v", data=data, chunks=(16, 16, 16), compression="gzip")
        s = f.create_dataset("x", data=np.arange(64) * 10.0 + 5.0)
        s.make_scale()
        d.dims[2].attach_scale(s)
    info = describe(path, "/v")
    pyramid = build_pyramid(info)
    # a 20 x 20 pixel view of a 64 x 64 slice: level 1 (32 cells) is the coarsest with >= 20
    req = SliceRequest("/v", (1, 2), (40, 0, 0), plot_size=(20, 20))
    image = read_slice(info, req, pyramid=pyramid)
    assert (image.level, image.source, image.read_shape) == (1, "pyramid", (32, 32))
    direct = read_slice(info, req)
    # no pyramid: the same level, reduced from the file's chunks as they are read
    assert (direct.level, direct.source, direct.read_shape) == (1, "file", (32, 32))
    np.testing.assert_allclose(direct.values, image.values, rtol=1e-6, atol=1e-7)
    assert image.x == direct.x == (0.0, 640.0)
    # the next slice is that slice, not the same average of two slices
    req41 = SliceRequest("/v", (1, 2), (41, 0, 0), plot_size=(20, 20))
    image41 = read_slice(info, req41, pyramid=pyramid)
    assert image41.level == 1
    np.testing.assert_allclose(
        pyramid.read(1, 0, 41, (0, 32), (0, 32)), reference_level(data, 1, axis=0)[41], rtol=1e-6
    )
    assert np.nanmax(np.abs(image41.values - read_slice(info, req41).values)) < 0.05
    assert not np.allclose(image41.values, image.values)
    # max/min/first need every cell: full resolution
    assert (
        read_slice(
            info,
            SliceRequest("/v", (1, 2), (40, 0, 0), plot_size=(20, 20), agg="max"),
            pyramid=pyramid,
        ).level
        == 0
    )


@pytest.mark.parametrize(
    ("rows", "cols", "out", "levels", "level"),
    [(1024, 1024, (600, 800), 5, 0), (1024, 1024, (466, 466), 5, 1), (1024, 1024, (100, 100), 5, 3),
     (1024, 1024, (10, 10), 5, 4), (64, 1024, (64, 500), 5, 0), (2048, 2048, (500, 500), 6, 2)],
)  # fmt: skip
def test_choose_level(rows, cols, out, levels, level):
    assert choose_level(rows, cols, out, levels) == level


def test_a_changed_source_makes_the_pyramid_stale_and_it_is_rebuilt(tmp_path):
    path = tmp_path / "v.h5"
    info = write_dataset(path, _volume(), chunks=(16, 16, 16))
    manager = PyramidManager(min_bytes=0)
    assert manager.ensure(info).state in ("queued", "building", "ready")
    assert manager.wait(info).state == "ready"
    assert open_pyramid(path, "/v") is not None
    time.sleep(0.01)
    subprocess.run([sys.executable, "-c",
                    f"import h5py; f = h5py.File({str(path)!r}, 'a'); f['v'][0:2] = 7; f.close()"],
                   check=True)  # fmt: skip
    info = describe(path, "/v")
    assert open_pyramid(path, "/v") is None  # stale
    assert manager.status(info).state == "none"
    manager.ensure(info)
    assert manager.wait(info).state == "ready"
    level1 = open_pyramid(path, "/v").read(1, 0, 0, (0, 27), (0, 45))
    np.testing.assert_allclose(level1, 7.0)


def test_a_build_finishing_while_its_status_is_read_is_ready_not_stale(tmp_path, monkeypatch):
    """status() looks on disk, then reads the build's state: a build that lands in between
    (rename, then state "ready") was once reported stale ("none"), and wait() returned it."""
    path = tmp_path / "v.h5"
    info = write_dataset(path, _volume(), chunks=(16, 16, 16))
    manager = PyramidManager(min_bytes=0)
    manager.ensure(info)
    assert manager.wait(info).state == "ready"
    real = pyr.open_pyramid
    looks = []

    def landing_just_after_the_first_look(*args):
        looks.append(args)
        return None if len(looks) == 1 else real(*args)

    monkeypatch.setattr(pyr, "open_pyramid", landing_just_after_the_first_look)
    assert manager.status(info).state == "ready"
    assert len(looks) == 2
    # and a pyramid really gone stale still says so
    subprocess.run([sys.executable, "-c",
                    f"import h5py; f = h5py.File({str(path)!r}, 'a'); f['v'][0:2] = 7; f.close()"],
                   check=True)  # fmt: skip
    monkeypatch.setattr(pyr, "open_pyramid", real)
    assert manager.status(describe(path, "/v")).state == "none"


def test_small_datasets_are_not_worth_a_pyramid(tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["v"] = np.zeros((10, 10, 10), "f4")
        f["c"] = np.zeros((10, 10, 10), "c8")
    manager = PyramidManager(min_bytes=1 << 20)
    assert manager.ensure(describe(path, "/v")).state == "skipped"
    assert not PyramidManager(min_bytes=0).wanted(describe(path, "/c"))  # complex: read directly


def test_sidecar_lives_in_the_cache_not_next_to_the_data(tmp_path):
    path = tmp_path / "data" / "v.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=_volume(), chunks=(16, 16, 16))
    pyramid = build_pyramid(describe(path, "/v"))
    assert os.listdir(path.parent) == ["v.h5"]
    assert str(pyramid.dir).startswith(str(tmp_path / "cache"))


def test_build_on_a_dask_cluster(tmp_path):
    """Blocks run on the cluster's worker processes; the server process writes the levels."""
    from distributed import Client, LocalCluster

    data = _volume((64, 48, 40))
    path = tmp_path / "v.h5"
    info = write_dataset(path, data, chunks=(16, 16, 16), compression="gzip")
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        pyramid = build_pyramid(info, client=client)
        ran_on = client.run(lambda: os.getpid())
    assert set(ran_on.values()).isdisjoint({os.getpid()})
    ref = reference_level(data, 2, axis=1)
    got = pyramid.read(2, 1, 5, (0, ref.shape[0]), (0, ref.shape[2]))
    np.testing.assert_allclose(got, ref[:, 5, :], rtol=1e-6)


def test_a_build_holds_a_few_blocks_in_memory_not_all_of_them(tmp_path):
    """Finished blocks are written and dropped as the build goes: memory does not grow with
    the volume (a build that kept every block's levels until the end was killed for it on a
    2048 x 2048 x 1920 volume)."""
    import tracemalloc

    data = np.random.default_rng(0).random((256, 128, 128), dtype=np.float32)
    path = tmp_path / "v.h5"
    info = write_dataset(path, data, chunks=(32, 32, 32), compression="gzip")
    del data
    # every block's levels, for the three slice directions: about the volume's size again
    all_levels = 3 * sum(256 * 128 * 128 * 4 / 4**k for k in range(1, pyr.LEVELS_PER_BLOCK + 1))
    tracemalloc.start()
    try:
        build_pyramid(info, workers=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < all_levels / 4, (peak, all_levels)


_HOLDER = """
import sys
from dashapp.data import describe
from dashapp.data import pyramid as pyr
pyr.BLOCK, pyr.COARSEST = 32, 8
info = describe(sys.argv[1], "/v")
directory = pyr.pyramid_dir(info.file, info.path)
with pyr._build_lock(directory, None, None):
    print("locked", flush=True)
    if sys.stdin.readline().strip() == "build":
        pyr._build(info, directory, None, None, None, None)
"""


def _other_process_holds_the_build_lock(path):
    """A second process (as a second server process or a notebook would be) that has taken
    the build lock of ``path``'s pyramid; it builds when told "build"."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "locked"
    return child


def _counting_builds(monkeypatch):
    calls = []
    build = pyr._build
    monkeypatch.setattr(pyr, "_build", lambda *a: calls.append(a[0].path) or build(*a))
    return calls


def _wait_for_message(manager, info, text, timeout=20):
    deadline = time.monotonic() + timeout
    while text not in manager.status(info).message:
        assert time.monotonic() < deadline, manager.status(info)
        time.sleep(0.05)
    return manager.status(info)


def test_two_processes_build_one_pyramid_the_second_waits_for_the_first(tmp_path, monkeypatch):
    data = _volume()
    path = tmp_path / "v.h5"
    info = write_dataset(path, data, chunks=(16, 16, 16), compression="gzip")
    builds = _counting_builds(monkeypatch)
    child = _other_process_holds_the_build_lock(path)
    try:
        manager = PyramidManager(min_bytes=0)
        manager.ensure(info)
        st = _wait_for_message(manager, info, "another process is building")
        assert st.state == "building"
        child.stdin.write("build\n")
        child.stdin.flush()
        assert child.wait(120) == 0
    finally:
        child.kill()
    assert manager.wait(info).state == "ready"  # (as soon as the levels are on disk)
    # The waiting build thread notices within its 0.5 s poll and says who built them.
    _wait_for_message(manager, info, "built by another process")
    assert builds == []  # this process built nothing
    ref = reference_level(data, 1, axis=0)
    got = open_pyramid(path, "/v").read(1, 0, 9, (0, ref.shape[1]), (0, ref.shape[2]))
    np.testing.assert_allclose(got, ref[9], rtol=1e-6)


def test_a_builder_that_dies_holding_the_lock_does_not_block_the_build(tmp_path, monkeypatch):
    path = tmp_path / "v.h5"
    info = write_dataset(path, _volume(), chunks=(16, 16, 16))
    builds = _counting_builds(monkeypatch)
    child = _other_process_holds_the_build_lock(path)
    manager = PyramidManager(min_bytes=0)
    manager.ensure(info)
    _wait_for_message(manager, info, "another process is building")
    child.kill()  # the kernel releases its flock
    child.wait(10)
    assert manager.wait(info).state == "ready"
    _wait_for_message(manager, info, "built on this server")
    assert builds == ["/v"]


# ---------------------------------------------------------------- levels reduced from chunks
CHUNK_LEVEL_LAYOUTS = {
    "gzip": {"chunks": (16, 16, 16), "compression": "gzip", "shuffle": True},
    "chunked": {"chunks": (16, 32, 16)},
    "lzf": {"chunks": (16, 16, 16), "compression": "lzf"},  # through h5py, reduced in memory
}


@pytest.mark.parametrize("layout", list(CHUNK_LEVEL_LAYOUTS))
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_slice_read_at_a_level_from_the_chunks_equals_numpy(tmp_path, layout, axis, monkeypatch):
    """Before any pyramid: the cells of a level, reduced chunk by chunk, equal numpy's means
    over the whole array (to float32 rounding: a plain mean where a chunk has no NaN), at the
    odd edges (70 x 54 x 90 is no multiple of the chunks), with a NaN, in a zoomed region and
    along every axis."""
    from dashapp.data import reader as reader_mod

    # through h5py, the full-resolution cells are read in bands: 37 cells' worth at a time here
    monkeypatch.setattr(reader_mod, "REDUCE_BAND_CELLS", 37 * 100)
    data = _volume()
    path = tmp_path / "v.h5"
    info = write_dataset(path, data, **CHUNK_LEVEL_LAYOUTS[layout])
    display = tuple(d for d in range(3) if d != axis)
    index = 3 if axis == 0 else 4  # the slice with the NaN
    indices = tuple(index if d == axis else 0 for d in range(3))
    n_rows, n_cols = (data.shape[d] for d in display)
    # the whole slice on a screen of a quarter of its cells: level 2 (4 x 4 cells a pixel)
    req = SliceRequest("/v", display, indices, plot_size=(-(-n_rows // 4), -(-n_cols // 4)))
    image = read_slice(info, req)
    assert (image.level, image.source) == (2, "file")
    want = np.take(reference_level(data, 2, axis=axis), index, axis=axis)
    assert image.read_shape == want.shape
    np.testing.assert_allclose(image.values, want, rtol=1e-6, atol=1e-7)
    assert np.isnan(image.values).sum() == 0  # the NaN cell is averaged with its finite peers
    # a zoomed region of it, at level 1: cells 10..50 along the columns
    cols = info.axes[display[1]].edges()
    sub = SliceRequest(
        "/v", display, indices, x_range=(cols[10], cols[50]), plot_size=(n_rows // 2, 20)
    )
    zoomed = read_slice(info, sub)
    assert zoomed.level == 1
    level1 = np.take(reference_level(data, 1, axis=axis), index, axis=axis)
    np.testing.assert_allclose(zoomed.values, level1[:, 5:25], rtol=1e-6, atol=1e-7)


def test_chunk_levels_read_through_the_reader_equal_the_built_pyramid(tmp_path):
    """DirectReader.read at a level (strided, integer indices) gives the pyramid's own cells."""
    from dashapp.data.chunks import direct_reader, reducible_levels

    data = _volume((64, 48, 80))
    path = tmp_path / "v.h5"
    info = write_dataset(path, data, chunks=(16, 16, 16), compression="gzip")
    pyramid = build_pyramid(info)
    with h5py.File(path, "r", locking=False) as f:
        reader = direct_reader(path, f["v"])
    assert reducible_levels((16, 16, 16), (1, 2)) == 4
    assert reducible_levels((16, 16, 16), (1, 2), smallest=4) == 2
    assert reducible_levels((16, 16, 16), ()) == 0
    for level in (1, 2):
        for axis in (0, 1, 2):
            dims = tuple(d for d in range(3) if d != axis)
            shape = reader.level_shape(level, dims)
            sel = [slice(1, shape[d], 2) if d in dims else 7 for d in range(3)]
            got = reader.read(tuple(sel), level=level, dims=dims)
            a, b = (shape[d] for d in dims)
            stored = pyramid.read(level, axis, 7, (0, a), (0, b))
            np.testing.assert_allclose(got, stored[1::2, 1::2], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="cannot be reduced to level 5"):
        reader.read((0, slice(None), slice(None)), level=5, dims=(1, 2))


def test_a_chunk_layer_too_big_for_the_cache_stays_cached_once_reduced(tmp_path, monkeypatch):
    """A slice whose decoded chunks outgrow the cache is not kept at full resolution, but its
    level-1 cells are: the next slice of the same chunk layer decodes nothing, nor does the
    same layer at a coarser level."""
    from dashapp.data import chunks as chunks_mod

    data = np.random.default_rng(0).random((32, 256, 256)).astype("f4")
    path = tmp_path / "v.h5"
    info = write_dataset(path, data, chunks=(32, 32, 32), compression="gzip")
    # 64 chunks of 128 KiB = 8 MiB a layer: more than half of a 10 MiB cache; 2 MiB at level 1
    monkeypatch.setattr(chunks_mod, "CHUNK_CACHE", chunks_mod.ChunkCache(10 * 2**20))
    cache = chunks_mod.CHUNK_CACHE
    decodes = []
    real_decode = chunks_mod.DirectReader._decode

    def counted(self, offset):
        decodes.append(offset)
        return real_decode(self, offset)

    monkeypatch.setattr(chunks_mod.DirectReader, "_decode", counted)

    def show(z: int, plot: int):
        req = SliceRequest("/v", (1, 2), (z, 0, 0), plot_size=(plot, plot))
        return read_slice(info, req)

    full = [show(z, 256) for z in (0, 1)]  # full resolution: nothing kept
    assert [im.level for im in full] == [0, 0]
    assert (len(decodes), len(cache)) == (128, 0)
    np.testing.assert_array_equal(full[1].values, data[1])
    decodes.clear()
    first = show(0, 128)  # a 128-pixel screen: level 1
    assert first.level == 1
    assert (len(decodes), len(cache)) == (64, 64)
    assert cache.nbytes == 2 * 2**20
    decodes.clear()
    for z in range(1, 32):
        image = show(z, 128)
        want = reference_level(data, 1, axis=0)[z]
        np.testing.assert_allclose(image.values, want, rtol=1e-6, atol=1e-7)
    assert decodes == []
    # a smaller screen (a resized window): level 2, reduced from the level-1 chunks held
    coarser = show(5, 64)
    assert coarser.level == 2
    assert decodes == []
    want = reference_level(data, 2, axis=0)[5]
    np.testing.assert_allclose(coarser.values, want, rtol=1e-6, atol=1e-7)
