"""Multiscale pyramids of large 2-D/3-D datasets, in a sidecar cache, built in the background.

A slice of a 1024^3 gzip volume across its chunking decompresses 256 MB; a plot 800 pixels wide
cannot show more than 800 of its 1024 columns anyway. A pyramid stores the dataset again at
1/2, 1/4, 1/8, ... resolution (each cell the mean of 2x2x2 cells below), and a view reads the
coarsest level that still gives at least one data cell per screen pixel.

Storage (``$DASHAPP_CACHE/pyramids/<key>/``, never next to the user's data): for each level and
each axis, a float32 ``.npy`` array with that axis first, so that any slice of any level is one
contiguous block of the file: one ``pread``, no decompression, no h5py lock. A contiguous source
whose last axis would need the whole file read for one slice also gets a full-resolution copy
along that axis. ``meta.json`` records the source's size and mtime: a pyramid whose source
changed is rebuilt.

Builds run in a background thread, split into blocks; blocks run on a Dask cluster when a client
is given (the cluster of the app's Dask pane), else on local threads, and report progress.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import DatasetInfo
from .errors import DashappError
from .files import h5_errors, open_file

__all__ = [
    "PYRAMIDS",
    "BuildStatus",
    "Pyramid",
    "PyramidManager",
    "build_pyramid",
    "choose_level",
    "level_edges",
    "pyramid_dir",
]

log = logging.getLogger(__name__)

PYRAMID_VERSION = 1
#: Source cells per block edge of a build task (256^3 float32 = 64 MB).
BLOCK = 256
#: Levels computed from each block (block edge 256 -> 128, 64, 32); coarser ones afterwards.
LEVELS_PER_BLOCK = 3
#: Stop adding levels once every dimension is at most this many cells.
COARSEST = 64


def _min_bytes() -> int:
    return int(float(os.environ.get("DASHAPP_PYRAMID_MIN_MB", "256")) * 2**20)


def cache_root() -> Path:
    """The sidecar cache folder: ``$DASHAPP_CACHE/pyramids`` or the user's cache dir."""
    cache = os.environ.get("DASHAPP_CACHE")
    if not cache:
        import platformdirs

        cache = platformdirs.user_cache_dir("dashapp")
    return Path(cache) / "pyramids"


def pyramid_dir(path: str | os.PathLike[str], dataset: str, root: Path | None = None) -> Path:
    """The sidecar folder of ``dataset`` in the file ``path``."""
    real = os.path.realpath(path)
    key = hashlib.sha1(f"{real}\0{dataset}".encode()).hexdigest()[:20]
    return (root or cache_root()) / key


def _stamp(path: str | os.PathLike[str]) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def level_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes of levels 0, 1, 2, ... (halving, rounding up) until every dim is <= COARSEST."""
    shapes = [tuple(shape)]
    while max(shapes[-1]) > COARSEST:
        shapes.append(tuple(-(-n // 2) for n in shapes[-1]))
    return shapes


def level_edges(edges: np.ndarray, level: int) -> np.ndarray:
    """Cell edges at ``level`` from the full-resolution edges (every 2**level-th, plus the end)."""
    step = 2**level
    out = edges[::step]
    if out[-1] != edges[-1]:
        out = np.append(out, edges[-1])
    return out


def choose_level(n_rows: int, n_cols: int, out: tuple[int, int], levels: int) -> int:
    """The coarsest level with at least as many cells as screen pixels ``out`` both ways."""
    level = 0
    while level + 1 < levels:
        k = level + 1
        if -(-n_rows // 2**k) >= out[0] and -(-n_cols // 2**k) >= out[1]:
            level = k
        else:
            break
    return level


@dataclass
class BuildStatus:
    """Where a pyramid build is: ``none``, ``queued``, ``building``, ``ready``, ``failed`` or
    ``skipped`` (too small or not a 2-D/3-D real dataset), with progress 0-1 and a sentence."""

    state: str = "none"
    progress: float = 0.0
    message: str = ""
    started: float = 0.0
    seconds: float = 0.0


@dataclass
class _Meta:
    version: int
    source: str
    dataset: str
    shape: list[int]
    stamp: list[int]
    levels: list[list[int]]
    #: axes with a stored orientation, per level ("all" for levels >= 1)
    full_res_axes: list[int] = field(default_factory=list)
    built_seconds: float = 0.0
    created: str = ""


class Pyramid:
    """A built, valid pyramid: read any slice region of any level."""

    def __init__(self, directory: Path, meta: _Meta) -> None:
        self.dir = directory
        self.meta = meta
        self.shapes = [tuple(s) for s in meta.levels]
        self._headers: dict[str, tuple[int, tuple[int, ...]]] = {}

    @property
    def levels(self) -> int:
        """Number of levels, counting full resolution as level 0."""
        return len(self.shapes)

    @property
    def ndim(self) -> int:
        """2 or 3."""
        return len(self.shapes[0])

    def has(self, level: int, axis: int) -> bool:
        """True when slices along ``axis`` at ``level`` come from the pyramid."""
        if level == 0:
            return axis in self.meta.full_res_axes
        return 0 < level < self.levels

    def _file(self, level: int, axis: int) -> Path:
        return self.dir / (f"L{level}.npy" if self.ndim == 2 else f"L{level}_a{axis}.npy")

    def _header(self, path: Path) -> tuple[int, tuple[int, ...]]:
        key = str(path)
        if key not in self._headers:
            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _fortran, _dtype = read(fh)
                self._headers[key] = (fh.tell(), shape)
        return self._headers[key]

    def read(
        self, level: int, axis: int | None, index: int, rows: tuple[int, int], cols: tuple[int, int]
    ) -> np.ndarray:
        """Cells ``rows`` x ``cols`` of slice ``index`` (level coordinates) along ``axis``.

        The two remaining dims come in increasing order (transpose for a swapped display).
        For a 2-D dataset ``axis`` and ``index`` are ignored.
        """
        path = self._file(level, axis or 0)
        offset, shape = self._header(path)
        plane = shape[-2:]
        if self.ndim == 2:
            base = offset
        else:
            base = offset + index * plane[0] * plane[1] * 4
        r0, r1 = rows
        c0, c1 = cols
        nbytes = (r1 - r0) * plane[1] * 4
        with open(path, "rb") as fh:
            raw = os.pread(fh.fileno(), nbytes, base + r0 * plane[1] * 4)
        if len(raw) != nbytes:
            raise DashappError(f"pyramid file {path.name} is incomplete; it will be rebuilt")
        block = np.frombuffer(raw, dtype=np.float32).reshape(r1 - r0, plane[1])
        return block[:, c0:c1]


def _read_meta(directory: Path) -> _Meta | None:
    try:
        data = json.loads((directory / "meta.json").read_text())
        return _Meta(**data)
    except (OSError, ValueError, TypeError):
        return None


def open_pyramid(
    path: str | os.PathLike[str], dataset: str, root: Path | None = None
) -> Pyramid | None:
    """The pyramid of ``dataset`` if one was built for the file as it is now, else None."""
    directory = pyramid_dir(path, dataset, root)
    meta = _read_meta(directory)
    if meta is None or meta.version != PYRAMID_VERSION:
        return None
    try:
        if meta.stamp != _stamp(path):
            return None  # the source changed since: stale
    except OSError:
        return None
    return Pyramid(directory, meta)


# ---------------------------------------------------------------------------- building
def _mean2(block: np.ndarray) -> np.ndarray:
    """NaN-aware mean over 2x2(x2) cells; odd edges are padded with NaN."""
    pad = [(0, n % 2) for n in block.shape]
    if any(p[1] for p in pad):
        block = np.pad(block, pad, constant_values=np.nan)
    shape = []
    for n in block.shape:
        shape += [n // 2, 2]
    blocks = block.reshape(shape)
    axes = tuple(range(1, 2 * block.ndim, 2))
    with np.errstate(invalid="ignore"), _quiet():
        return np.nanmean(blocks, axis=axes).astype(np.float32)


class _quiet:
    """Silence numpy's 'Mean of empty slice' for all-NaN blocks (they stay NaN)."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def _to_float(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "b":
        return values.astype(np.float32)
    return values.astype(np.float32, copy=False)


def _read_block(path: str, dataset: str, sel: tuple[slice, ...]) -> np.ndarray:
    from .chunks import direct_reader

    with open_file(path) as f, h5_errors(path, dataset):
        ds = f[dataset]
        reader = direct_reader(path, ds)
        if reader is None:
            return _to_float(np.asarray(ds[sel]))
    return _to_float(reader.read(sel, cache=False))


def pyramid_block(
    path: str,
    dataset: str,
    origin: tuple[int, ...],
    size: tuple[int, ...],
    nlevels: int,
    keep_full: bool,
) -> tuple[tuple[int, ...], list[np.ndarray]]:
    """One build task: read a source block and reduce it ``nlevels`` times.

    Returns the block's origin and ``[level0 or None-like empty, level1, level2, ...]``. Runs in
    a local thread or on a Dask worker (it opens the file itself).
    """
    sel = tuple(slice(o, o + s) for o, s in zip(origin, size, strict=True))
    block = _read_block(path, dataset, sel)
    out = [block if keep_full else np.empty((0,) * block.ndim, np.float32)]
    for _ in range(nlevels):
        block = _mean2(block)
        out.append(block)
    return origin, out


def _orient(arr: np.ndarray, axis: int) -> np.ndarray:
    order = [axis] + [d for d in range(arr.ndim) if d != axis]
    return arr.transpose(order)


def _write(
    targets: dict[tuple[int, int], Path],
    level: int,
    origin: tuple[int, ...],
    block: np.ndarray,
    axes: list[int],
) -> None:
    for axis in axes:
        path = targets[(level, axis)]
        mm = np.lib.format.open_memmap(path, mode="r+")
        try:
            o = [origin[axis]] + [origin[d] for d in range(block.ndim) if d != axis]
            sub = _orient(block, axis)
            mm[tuple(slice(a, a + n) for a, n in zip(o, sub.shape, strict=True))] = sub
        finally:
            del mm  # unmap: written pages go to the page cache, not this process's memory


def full_res_axes_for(info: DatasetInfo) -> list[int]:
    """Axes along which a full-resolution copy is worth storing.

    A contiguous 3-D source slices fast along its first two axes (one block, or one row per
    plane) but along the last one every element of a slice sits in a different page of the
    file, so the whole file is read: store that orientation.
    """
    if info.ndim == 3 and info.chunks is None:
        return [2]
    return []


def build_pyramid(
    info: DatasetInfo,
    directory: Path | None = None,
    client: Any = None,
    progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
) -> Pyramid:
    """Build the pyramid of a 2-D or 3-D real dataset; returns it when complete.

    Parameters
    ----------
    info
        The dataset (:func:`dashapp.data.describe`).
    directory
        Where to store it (default: :func:`pyramid_dir`).
    client
        A ``distributed.Client``: blocks run on its cluster. Without one, on local threads.
    progress
        Called with the fraction done (0-1) as blocks complete.
    cancel
        Set it to stop the build (raises :class:`DashappError`).
    """
    if info.ndim not in (2, 3) or info.kind not in ("bool", "int", "uint", "float"):
        raise DashappError(f"{info.path}: pyramids are built for 2-D and 3-D real datasets only")
    t0 = time.perf_counter()
    directory = directory or pyramid_dir(info.file, info.path)
    stamp = _stamp(info.file)
    shapes = level_shapes(info.shape)
    nlevels = len(shapes) - 1
    full_axes = full_res_axes_for(info)
    axes_all = list(range(info.ndim)) if info.ndim == 3 else [0]
    tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        targets: dict[tuple[int, int], Path] = {}
        for level, shape in enumerate(shapes):
            axes = full_axes if level == 0 else axes_all
            for axis in axes:
                name = f"L{level}.npy" if info.ndim == 2 else f"L{level}_a{axis}.npy"
                oriented = (shape[axis], *[shape[d] for d in range(info.ndim) if d != axis])
                path = tmp / name
                np.lib.format.open_memmap(
                    path, mode="w+", dtype=np.float32, shape=oriented if info.ndim == 3 else shape
                )
                targets[(level, axis)] = path
        first = min(nlevels, LEVELS_PER_BLOCK)
        grid = [range(0, n, BLOCK) for n in info.shape]
        origins = list(product(*grid))
        sizes = [
            tuple(min(BLOCK, n - o) for o, n in zip(org, info.shape, strict=True))
            for org in origins
        ]
        args = [
            (info.file, info.path, org, size, first, bool(full_axes))
            for org, size in zip(origins, sizes, strict=True)
        ]
        done = 0

        def consume(result: tuple[tuple[int, ...], list[np.ndarray]]) -> None:
            nonlocal done
            origin, blocks = result
            if full_axes:
                _write(targets, 0, origin, blocks[0], full_axes)
            for level in range(1, first + 1):
                lo = tuple(o // 2**level for o in origin)
                _write(targets, level, lo, blocks[level], axes_all)
            done += 1
            if progress:
                progress(0.95 * done / len(args))

        if client is not None:
            from distributed import as_completed as dask_completed

            futures = [client.submit(pyramid_block, *a, pure=False) for a in args]
            for fut in dask_completed(futures):
                if cancel is not None and cancel.is_set():
                    client.cancel(futures)
                    raise DashappError("pyramid build cancelled")
                consume(fut.result())
        else:
            with ThreadPoolExecutor(
                max_workers=workers or 2, thread_name_prefix="dashapp-pyramid"
            ) as pool:
                futures = [pool.submit(pyramid_block, *a) for a in args]
                try:
                    for fut in as_completed(futures):
                        if cancel is not None and cancel.is_set():
                            raise DashappError("pyramid build cancelled")
                        consume(fut.result())
                finally:
                    for fut in futures:
                        fut.cancel()
        # Coarser levels from the last one computed per block (small: fits in memory).
        if nlevels > first:
            # the axis-0 orientation is the dataset's own order
            level_arr = np.load(targets[(first, 0)])
            for level in range(first + 1, nlevels + 1):
                level_arr = _mean2(level_arr)
                origin = (0,) * info.ndim
                _write(targets, level, origin, level_arr, axes_all)
        meta = _Meta(
            version=PYRAMID_VERSION,
            source=os.path.realpath(info.file),
            dataset=info.path,
            shape=list(info.shape),
            stamp=stamp,
            levels=[list(s) for s in shapes],
            full_res_axes=full_axes,
            built_seconds=round(time.perf_counter() - t0, 2),
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        (tmp / "meta.json").write_text(json.dumps(asdict(meta), indent=1))
        if _stamp(info.file) != stamp:
            raise DashappError(f"{Path(info.file).name} changed while its pyramid was built")
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress:
        progress(1.0)
    return Pyramid(directory, meta)


class PyramidManager:
    """Builds pyramids in the background, one at a time, and hands out the ready ones.

    Parameters
    ----------
    min_bytes
        Datasets smaller than this are read directly (default ``$DASHAPP_PYRAMID_MIN_MB``, 256).
    client_provider
        Returns a ``distributed.Client`` to build on (the Dask pane's cluster) or None.
    """

    def __init__(
        self, min_bytes: int | None = None, client_provider: Callable[[], Any] | None = None
    ) -> None:
        self.min_bytes = _min_bytes() if min_bytes is None else min_bytes
        self.client_provider = client_provider
        self._status: dict[tuple[str, str], BuildStatus] = {}
        self._lock = threading.Lock()
        self._queue: list[tuple[tuple[str, str], DatasetInfo]] = []
        self._worker: threading.Thread | None = None
        self._cancel: dict[tuple[str, str], threading.Event] = {}

    @staticmethod
    def _key(info: DatasetInfo) -> tuple[str, str]:
        return (os.path.realpath(info.file), info.path)

    def wanted(self, info: DatasetInfo) -> bool:
        """True if ``info`` is big enough, 2-D/3-D and real-valued."""
        return (
            info.ndim in (2, 3)
            and info.kind in ("bool", "int", "uint", "float")
            and info.nbytes >= self.min_bytes
        )

    def get(self, info: DatasetInfo) -> Pyramid | None:
        """The ready pyramid of ``info``, or None."""
        pyr = open_pyramid(info.file, info.path)
        if pyr is not None:
            with self._lock:
                st = self._status.setdefault(self._key(info), BuildStatus())
                if st.state != "ready":
                    st.state, st.progress = "ready", 1.0
        return pyr

    def status(self, info: DatasetInfo) -> BuildStatus:
        """The build state of ``info``'s pyramid."""
        if self.get(info) is not None:
            return self._status[self._key(info)]
        with self._lock:
            st = self._status.get(self._key(info))
            if st is not None and st.state == "ready":  # stale now: the file changed
                st.state, st.progress = "none", 0.0
            return st or BuildStatus(state="none" if self.wanted(info) else "skipped")

    def ensure(self, info: DatasetInfo) -> BuildStatus:
        """Queue a build of ``info``'s pyramid if it is wanted and not ready or running."""
        if not self.wanted(info):
            return BuildStatus(state="skipped", message="small enough to read directly")
        if self.get(info) is not None:
            return self.status(info)
        key = self._key(info)
        with self._lock:
            st = self._status.get(key)
            if st is not None and st.state in ("queued", "building"):
                return st
            st = BuildStatus(state="queued", message="waiting for another build")
            self._status[key] = st
            self._queue.append((key, info))
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._run, name="dashapp-pyramids", daemon=True
                )
                self._worker.start()
        return st

    def cancel(self, info: DatasetInfo) -> None:
        """Stop a queued or running build."""
        key = self._key(info)
        with self._lock:
            self._queue = [(k, i) for k, i in self._queue if k != key]
            if key in self._cancel:
                self._cancel[key].set()
            st = self._status.get(key)
            if st is not None and st.state == "queued":
                st.state, st.message = "none", "cancelled"

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._worker = None
                    return
                key, info = self._queue.pop(0)
                st = self._status[key]
                st.state, st.progress, st.started = "building", 0.0, time.time()
                st.message = "building"
                cancel = self._cancel[key] = threading.Event()
            client = None
            if self.client_provider is not None:
                try:
                    client = self.client_provider()
                except Exception:  # no cluster: build locally
                    client = None
            where = "on the Dask cluster" if client is not None else "on this server"

            def report(fraction: float, st: BuildStatus = st, where: str = where) -> None:
                st.progress = fraction
                st.message = f"building overview levels {where}: {fraction:.0%}"

            try:
                build_pyramid(info, client=client, progress=report, cancel=cancel)
                st.state, st.progress = "ready", 1.0
                st.seconds = time.time() - st.started
                st.message = f"overview levels ready (built {where} in {st.seconds:.0f} s)"
            except Exception as exc:
                st.state = "failed"
                st.message = f"overview levels could not be built: {exc}"
                log.warning("pyramid build of %s:%s failed: %s", *key, exc)
            finally:
                with self._lock:
                    self._cancel.pop(key, None)

    def wait(self, info: DatasetInfo, timeout: float = 600) -> BuildStatus:
        """Block until ``info``'s build is no longer queued or running (scripts, tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status(info)
            if st.state not in ("queued", "building"):
                return st
            time.sleep(0.05)
        raise TimeoutError(f"pyramid of {info.path} not built in {timeout} s")


#: The process-wide pyramid manager.
PYRAMIDS = PyramidManager()
