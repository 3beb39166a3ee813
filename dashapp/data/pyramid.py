"""Multiscale pyramids of large 2-D/3-D datasets, in a sidecar cache, built in the background.

A slice of a 1024^3 gzip volume across its chunking decompresses 256 MB; a plot 800 pixels wide
cannot show more than 800 of its 1024 columns anyway. A pyramid stores the dataset again at
1/2, 1/4, 1/8, ... resolution, and a view reads the coarsest level that still gives at least one
data cell per screen pixel.

Levels of a 3-D dataset are reduced *in the plane of the slice only*: level ``k`` along axis
``a`` holds every slice of the source along ``a``, each the mean of 2^k x 2^k cells in its plane.
A slider step is thus always a different slice, exactly the one asked for, never an average of
neighbouring slices (an isotropic 2x2x2 pyramid, neuroglancer's, shows the same picture for
slices 2i and 2i+1). The price is storage: about the source's size (3 orientations x 1/4 + 1/16
+ ...), against 3/7 of it for isotropic levels. A 2-D dataset's levels are 2x2 means.

Storage (``$DASHAPP_CACHE/pyramids/<key>/``, never next to the user's data): for each level and
each axis, a float32 ``.npy`` array with that axis first, so that any slice of any level is one
contiguous block of the file: one ``pread``, no decompression, no h5py lock. A contiguous source
whose last axis would need the whole file read for one slice also gets a full-resolution copy
along that axis. ``meta.json`` records the source's size and mtime: a pyramid whose source
changed is rebuilt.

Builds run in a background thread, split into blocks; blocks run on a Dask cluster when a client
is given (the cluster of the app's Dask pane), else on local threads, and report progress. A
build holds a bounded amount of memory whatever the declared shape: blocks of ``BLOCK`` cells a
side, coarser levels computed in tiles of ``TILE`` cells a side, no list or row as long as a
dimension.

Disk: all pyramids of the cache share one budget (:func:`disk_budget`,
``$DASHAPP_PYRAMID_BUDGET_GB``, else a quarter of the cache filesystem's free space, at most
50 GB; decided once per process). A build's size is computed from the declared shape before it
starts; the least recently used pyramids are evicted to make room (never one read in the last
``IN_USE_SECONDS`` or being built), and a build that still does not fit is not started
(:class:`PyramidDeclined`, a sentence in the build status). Data that is mostly fill value
(few chunks written, virtual sources absent, nothing allocated) gets no pyramid. Temporary
folders of builds whose process died are removed when the manager starts and before each build.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from .. import settings
from .dataset import DatasetInfo
from .errors import DashappError
from .reduce import as_float32, halve

__all__ = [
    "PYRAMIDS",
    "BuildStatus",
    "Pyramid",
    "PyramidDeclined",
    "PyramidManager",
    "as_float32",
    "build_pyramid",
    "choose_level",
    "clean_stale",
    "disk_budget",
    "halve",
    "level_edges",
    "mostly_fill",
    "pyramid_dir",
    "pyramid_nbytes",
]

log = logging.getLogger(__name__)

PYRAMID_VERSION = 2  # 2: levels reduced in the slice plane only
#: Source cells per block edge of a build task (256^3 float32 = 64 MB).
BLOCK = 256
#: Levels computed from each block (block edge 256 -> 128, 64, 32); coarser ones afterwards.
LEVELS_PER_BLOCK = 3
#: Stop adding levels once every dimension is at most this many cells.
COARSEST = 64
#: Cells per tile edge when coarser levels are computed from a finer one (a tile is at most
#: ``TILE_BYTES`` of float32: a band of slices of TILE x TILE cells).
TILE = 1024
TILE_BYTES = 16 * 2**20
#: A dataset gets no pyramid when less than this fraction of it holds data (chunks written,
#: virtual sources present): the rest reads as the fill value.
MIN_WRITTEN = 0.25
#: A pyramid opened in the last this many seconds is in use: never evicted.
IN_USE_SECONDS = 120.0
#: ``meta.json``'s mtime is a pyramid's last use; it is touched at most this often.
TOUCH_SECONDS = 30.0
#: Default disk budget: this fraction of the cache filesystem's free space (plus what the
#: pyramids already take), at most BUDGET_CAP.
BUDGET_FRACTION = 0.25
BUDGET_CAP = 50 * 2**30


def _min_bytes() -> int:
    return int(settings.current().pyramid_min_mb * 2**20)


def cache_root() -> Path:
    """The sidecar cache folder: ``$DASHAPP_CACHE/pyramids`` or the user's cache dir."""
    return settings.cache_dir() / "pyramids"


def pyramid_dir(path: str | os.PathLike[str], dataset: str, root: Path | None = None) -> Path:
    """The sidecar folder of ``dataset`` in the file ``path``."""
    real = os.path.realpath(path)
    key = hashlib.sha1(f"{real}\0{dataset}".encode()).hexdigest()[:20]
    return (root or cache_root()) / key


def _stamp(path: str | os.PathLike[str]) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def level_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes of levels 0, 1, 2, ... (halving, rounding up) until every dim is <= COARSEST.

    For a 3-D dataset the stored arrays keep the normal axis at full size: level ``k`` along
    axis ``a`` is ``(shape[a], *others of level_shapes(shape)[k])``.
    """
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
    """Where a pyramid build is: ``none``, ``queued``, ``building``, ``ready``, ``failed``,
    ``skipped`` (too small or not a 2-D/3-D real dataset) or ``declined`` (not built on purpose:
    mostly fill value, or no room in the disk budget), with progress 0-1 and a sentence."""

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

    #: Set on the pyramid :func:`build_pyramid` returns when another process built it.
    built_elsewhere = False

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
            self._headers[key] = _npy_header(path)
        return self._headers[key]

    def read(
        self, level: int, axis: int | None, index: int, rows: tuple[int, int], cols: tuple[int, int]
    ) -> np.ndarray:
        """Cells ``rows`` x ``cols`` (level coordinates) of slice ``index`` along ``axis``.

        ``index`` is the source's (full-resolution) slice index: levels are reduced in the
        slice plane only. The two remaining dims come in increasing order (transpose for a
        swapped display). For a 2-D dataset ``axis`` and ``index`` are ignored.
        """
        try:
            return self._read(level, axis, index, rows, cols)
        except FileNotFoundError:
            raise DashappError(
                "the overview levels of this dataset were removed from the cache (to make room "
                "in its disk budget); the next picture is read from the file"
            ) from None

    def _read(
        self, level: int, axis: int | None, index: int, rows: tuple[int, int], cols: tuple[int, int]
    ) -> np.ndarray:
        path = self._file(level, axis or 0)
        offset, shape = self._header(path)
        plane = shape[-2:]
        if self.ndim == 2:
            base = offset
        else:
            base = offset + index * plane[0] * plane[1] * 4
        r0, r1 = rows
        c0, c1 = cols
        width = plane[1]
        with open(path, "rb") as fh:
            if (c1 - c0) * 2 >= width or r1 - r0 <= 1:
                return _pread_rows(fh, path, base, r0, r1 - r0, (width,))[:, c0:c1]
            # A narrow window of wide rows: each row's part alone (a level row of a declared
            # 10^6-wide image is 2 MB; the rows of a zoomed-in view would be gigabytes).
            out = np.empty((r1 - r0, c1 - c0), np.float32)
            for i, r in enumerate(range(r0, r1)):
                out[i] = _pread_rows(fh, path, base + 4 * (r * width + c0), 0, 1, (c1 - c0,))[0]
            return out


def _npy_header(path: Path) -> tuple[int, tuple[int, ...]]:
    """Where a level file's (C-order float32) data starts, and its shape."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _fortran, _dtype = read(fh)
        return fh.tell(), shape


def _pread_rows(
    fh: Any, path: Path, offset: int, start: int, n: int, row: tuple[int, ...]
) -> np.ndarray:
    """Rows ``start .. start+n`` (each of shape ``row``, float32) of a level file whose data
    begin at byte ``offset``, read with ``pread`` (no memory map stays resident)."""
    row_bytes = math.prod(row) * 4
    raw = os.pread(fh.fileno(), n * row_bytes, offset + start * row_bytes)
    if len(raw) != n * row_bytes:
        raise DashappError(f"pyramid file {path.name} is incomplete; it will be rebuilt")
    return np.frombuffer(raw, dtype=np.float32).reshape(n, *row)


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
    return _fresh(pyramid_dir(path, dataset, root), path)


def _fresh(directory: Path, path: str | os.PathLike[str]) -> Pyramid | None:
    meta = _read_meta(directory)
    if meta is None or meta.version != PYRAMID_VERSION:
        return None
    try:
        if meta.stamp != _stamp(path):
            return None  # the source changed since: stale
    except OSError:
        return None
    _touch(directory)  # its last use, for the eviction of the least recently used
    return Pyramid(directory, meta)


# ---------------------------------------------------------------------------- disk budget
class PyramidDeclined(DashappError):
    """A pyramid is not built on purpose (mostly fill value, or no room in the disk budget);
    the message says why. ``lasting`` is True when the answer holds until the file changes."""

    def __init__(self, message: str, lasting: bool = True) -> None:
        super().__init__(message)
        self.lasting = lasting


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _npy_bytes(shape: tuple[int, ...]) -> int:
    return 128 + 4 * math.prod(shape)  # (a float32 .npy header is 128 bytes for these shapes)


def pyramid_nbytes(shape: tuple[int, ...], full_axes: list[int] | tuple[int, ...] = ()) -> int:
    """Disk bytes of the pyramid of a dataset of ``shape``, from the declared shape alone: every
    level >= 1 in each slice orientation, plus full-resolution copies along ``full_axes``."""
    shape = tuple(int(n) for n in shape)
    total = 0
    for level, lshape in enumerate(level_shapes(shape)):
        if len(shape) == 2:
            total += _npy_bytes(lshape) if level else 0
            continue
        for axis in range(len(shape)) if level else full_axes:
            total += _npy_bytes((shape[axis], *[lshape[d] for d in range(3) if d != axis]))
    return total


_BUDGET: int | None = None


def disk_budget(root: Path | None = None) -> int:
    """Bytes all pyramids of the cache may take, decided once per process.

    ``$DASHAPP_PYRAMID_BUDGET_GB`` if set (0: no pyramids), else ``BUDGET_FRACTION`` of the
    cache filesystem's free space plus what the pyramids there already take, at most
    ``BUDGET_CAP``.
    """
    global _BUDGET
    if _BUDGET is not None:
        return _BUDGET
    root = root or cache_root()
    gb = settings.current().pyramid_budget_gb  # (not a number: None, with a warning)
    budget = None if gb is None else int(gb * 2**30)
    if budget is None:
        where = root
        while not where.exists() and where != where.parent:
            where = where.parent
        try:
            st = os.statvfs(where)
            free = st.f_bavail * st.f_frsize
        except OSError:
            free = 0
        budget = min(BUDGET_CAP, int(BUDGET_FRACTION * (free + _usage(root))))
    _BUDGET = budget
    return budget


def _tree_bytes(folder: Path) -> int:
    """Apparent size of the files in ``folder`` (level files are created at full size)."""
    total = 0
    try:
        with os.scandir(folder) as it:
            for entry in it:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    pass
    except OSError:
        pass
    return total


def _usage(root: Path) -> int:
    """Bytes taken in ``root`` by pyramids and by the builds under way (their full size)."""
    try:
        with os.scandir(root) as it:
            return sum(_tree_bytes(Path(e.path)) for e in it if e.is_dir(follow_symlinks=False))
    except OSError:
        return 0


@contextmanager
def _try_lock(lock_path: Path) -> Iterator[bool]:
    """Hold ``lock_path``'s flock if nobody does (yields True), without waiting; False when a
    live builder holds it or the filesystem has no flock (then nothing may be removed)."""
    try:
        fh = open(lock_path, "a")  # noqa: SIM115 (closed by the with below)
    except OSError:
        yield False
        return
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: a live holder; other OSError: no flock here
            yield False
            return
        if not _same_file(fh, lock_path):  # replaced meanwhile: someone else's now
            fcntl.flock(fh, fcntl.LOCK_UN)
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _unlink_lock(lock_path: Path) -> None:
    """Remove a lock file whose flock the caller holds (lockers check they locked the file
    that is still at that path, so removing it is safe)."""
    with suppress(OSError):
        lock_path.unlink()


def clean_stale(root: Path | None = None) -> list[str]:
    """Remove temporary folders (``<key>.tmp-*``) of builds whose process died, and lock files
    with neither a pyramid nor a build; returns the names removed.

    A build holds the flock of ``<key>.lock`` while it writes ``<key>.tmp-<pid>-<thread>``; the
    kernel drops it when the builder dies. A folder whose lock is held (in this process or
    another) is left alone, as is everything on a filesystem without ``flock``.
    """
    root = root or cache_root()
    try:
        names = os.listdir(root)
    except OSError:
        return []
    tmps: dict[str, list[str]] = {}
    for name in names:
        if ".tmp-" in name and not name.startswith("."):
            tmps.setdefault(name.split(".tmp-", 1)[0], []).append(name)
    locks = {n[: -len(".lock")] for n in names if n.endswith(".lock") and not n.startswith(".")}
    removed: list[str] = []
    for key in sorted(set(tmps) | (locks - set(names))):
        lock_path = root / f"{key}.lock"
        with _try_lock(lock_path) as free:
            if not free:
                continue
            for name in tmps.get(key, []):
                shutil.rmtree(root / name, ignore_errors=True)
                removed.append(name)
                log.info("removed %s, left by a pyramid build that did not finish", name)
            if not (root / key).exists():
                _unlink_lock(lock_path)
                removed.append(lock_path.name)
    return removed


def _last_use(directory: Path) -> float:
    try:
        return (directory / "meta.json").stat().st_mtime
    except OSError:
        try:
            return directory.stat().st_mtime
        except OSError:
            return 0.0


def _touch(directory: Path) -> None:
    """Record a use of the pyramid in ``directory`` (meta.json's mtime; at most every
    ``TOUCH_SECONDS``; silently not where the cache is read-only)."""
    meta = directory / "meta.json"
    try:
        if time.time() - meta.stat().st_mtime > TOUCH_SECONDS:
            os.utime(meta)
    except OSError:
        pass


@contextmanager
def _budget_lock(root: Path) -> Iterator[None]:
    """One process at a time checks the budget and reserves its build's room."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".budget.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
            locked = True
        except OSError:
            locked = False
        try:
            yield
        finally:
            if locked:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _make_room(root: Path, need: int, exclude: str) -> None:
    """Evict least recently used pyramids of ``root`` until ``need`` more bytes fit in the
    budget; raise :class:`PyramidDeclined` (evicting nothing) when they cannot.

    Call with :func:`_budget_lock` held. ``exclude`` is the pyramid being built. Never evicted:
    a pyramid used in the last ``IN_USE_SECONDS`` or whose build lock is held.
    """
    budget = disk_budget(root)
    clean_stale(root)
    hint = "set DASHAPP_PYRAMID_BUDGET_GB to change it"
    if need > budget:
        raise PyramidDeclined(
            f"no overview levels: they would take {_human(need)} of disk, more than the "
            f"{_human(budget)} budget for overview levels ({hint}); slices are read from the file"
        )
    used = _usage(root)
    if used + need <= budget:
        return
    now = time.time()
    candidates = []
    with os.scandir(root) as it:
        for entry in it:
            name = entry.name
            if not entry.is_dir(follow_symlinks=False) or ".tmp-" in name or name == exclude:
                continue
            last = _last_use(Path(entry.path))
            if now - last > IN_USE_SECONDS:
                candidates.append((last, name, _tree_bytes(Path(entry.path))))
    candidates.sort()
    if used - sum(c[2] for c in candidates) + need > budget:
        raise PyramidDeclined(
            f"no overview levels for now: they would take {_human(need)} and the "
            f"{_human(budget)} budget for overview levels is held by levels in use or being "
            f"built ({hint}); slices are read from the file",
            lasting=False,
        )
    for _last, name, size in candidates:
        lock_path = root / f"{name}.lock"
        with _try_lock(lock_path) as free:
            if not free:
                continue
            shutil.rmtree(root / name, ignore_errors=True)
            _unlink_lock(lock_path)
        log.info("evicted the overview levels %s (%s) to make room", name, _human(size))
        used -= size
        if used + need <= budget:
            return
    raise PyramidDeclined(
        f"no overview levels for now: the {_human(budget)} budget for overview levels is held "
        f"by levels in use or being built ({hint}); slices are read from the file",
        lasting=False,
    )


# ---------------------------------------------------------------------------- mostly fill
def mostly_fill(info: DatasetInfo) -> str | None:
    """Why ``info``'s dataset is not worth a pyramid because it is mostly fill value, or None.

    Looks at storage only (never at values): a chunked dataset with fewer than ``MIN_WRITTEN``
    of its chunks written, a virtual dataset whose present source files map fewer than
    ``MIN_WRITTEN`` of its cells, a contiguous dataset with no storage allocated.
    """
    import h5py

    from .resolve import open_dataset

    # walked hop by hop (resolve.py), as the build's reads are
    with open_dataset(info.file, info.path) as ds:
        dcpl = ds.id.get_create_plist()
        layout = dcpl.get_layout()
        total = math.prod(int(n) for n in ds.shape)
        if total == 0:
            return None
        if layout == h5py.h5d.VIRTUAL:
            return _virtual_fill(ds, total)
        if layout == h5py.h5d.CHUNKED and ds.chunks:
            need = math.prod(-(-int(n) // int(c)) for n, c in zip(ds.shape, ds.chunks, strict=True))
            written = ds.id.get_num_chunks()
            if written < MIN_WRITTEN * need:
                return (
                    "no overview levels: this dataset is mostly fill value (chunks written: "
                    f"{written:,} of {need:,}); slices are read from the file"
                )
            return None
        unallocated = (
            layout == h5py.h5d.CONTIGUOUS
            and dcpl.get_external_count() == 0
            and ds.id.get_offset() is None
        )
        if unallocated:
            return (
                "no overview levels: nothing of this dataset is written yet (no storage "
                "allocated: it is all fill value); slices are read from the file"
            )
    return None


def _virtual_fill(ds: Any, total: int) -> str | None:
    # where HDF5 itself looks for a source: HDF5_VDS_PREFIX, the file's folder, the cwd
    from .resolve import virtual_source_file

    vds_file = Path(os.path.realpath(ds.file.filename))
    present = 0
    files: set[str] = set()
    missing: set[str] = set()
    for src in ds.virtual_sources():
        name = src.file_name
        if "%b" in name:  # a printf-like pattern of many files (unlimited mappings): can't tell
            return None
        files.add(name)
        if name != "." and virtual_source_file(ds.name, vds_file, name, None) is None:
            missing.add(name)
            continue
        try:
            present += src.vspace.get_select_npoints()
        except Exception:  # (an unlimited selection: count it as present)
            return None
    if present >= MIN_WRITTEN * total:
        return None
    if len(missing) == len(files):
        what = f"none of its {len(files):,} source files is here"
    else:
        what = f"{len(missing):,} of its {len(files):,} source files are missing"
    return (
        f"no overview levels: this virtual dataset is mostly fill value ({what}); "
        "slices are read from the file"
    )


# ---------------------------------------------------------------------------- building
@contextmanager
def _build_lock(
    directory: Path, cancel: threading.Event | None, on_wait: Callable[[], None] | None
) -> Iterator[bool]:
    """Hold the build lock of the pyramid in ``directory``; yields True if it had to wait.

    One pyramid, one builder, across processes: the app served with ``--num-procs``, a
    notebook and ``panel serve`` of the same person, or two users with one shared cache.
    Whoever comes second waits (``on_wait`` is called once) and then finds the pyramid built.
    An ``flock`` on ``<directory>.lock``: released by the kernel if its holder dies. On a
    filesystem without ``flock`` the build goes ahead unlocked.
    """
    lock_path = directory.with_name(directory.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    stop = cancel if cancel is not None else threading.Event()  # (never set: a plain wait)
    waited = False
    while True:
        fh = open(lock_path, "a")  # noqa: SIM115 (closed on every path below)
        locked = True
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            if stop.wait(0.5):
                raise DashappError("pyramid build cancelled") from None
            continue
        except OSError as exc:  # no flock here (some network filesystems)
            log.info("no build lock for %s (%s): building unlocked", directory, exc)
            locked = False
        if locked and not _same_file(fh, lock_path):
            fh.close()  # removed (clean_stale, an eviction) while we waited: lock the new one
            continue
        break
    with fh:
        try:
            yield waited
        finally:
            if locked:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _same_file(fh: Any, path: Path) -> bool:
    try:
        return os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
    except OSError:
        return False


def plane_dims(ndim: int, axis: int) -> tuple[int, ...]:
    """The dims a level reduces for slices along ``axis``: the slice's plane (2-D: both)."""
    return tuple(d for d in range(ndim) if d != axis) if ndim == 3 else tuple(range(ndim))


def _read_block(path: str, dataset: str, sel: tuple[slice, ...]) -> np.ndarray:
    from .chunks import direct_reader
    from .resolve import open_dataset

    # walked hop by hop (resolve.py), not f[dataset]: HDF5 would follow links by itself
    with open_dataset(path, dataset) as ds:
        reader = direct_reader(ds.file.filename, ds)  # the file holding it (external links)
        if reader is None:
            return as_float32(np.asarray(ds[sel]))
    return as_float32(reader.read(sel, cache=False))


def pyramid_block(
    path: str,
    dataset: str,
    origin: tuple[int, ...],
    size: tuple[int, ...],
    nlevels: int,
    keep_full: bool,
    axes: tuple[int, ...] = (0,),
) -> tuple[tuple[int, ...], np.ndarray | None, dict[int, list[np.ndarray]]]:
    """One build task: read a source block and reduce it ``nlevels`` times for each axis.

    Returns the block's origin, the block itself if ``keep_full`` (else None), and for each of
    ``axes`` the levels 1..nlevels reduced in that axis' slice plane. Runs in a local thread or
    on a Dask worker (it opens the file itself).
    """
    sel = tuple(slice(o, o + s) for o, s in zip(origin, size, strict=True))
    block = _read_block(path, dataset, sel)
    levels: dict[int, list[np.ndarray]] = {}
    for axis in axes:
        dims = plane_dims(block.ndim, axis)
        reduced, out = block, []
        for _ in range(nlevels):
            reduced = halve(reduced, dims)
            out.append(reduced)
        levels[axis] = out
    return origin, (block if keep_full else None), levels


def _orient(arr: np.ndarray, axis: int) -> np.ndarray:
    order = [axis] + [d for d in range(arr.ndim) if d != axis]
    return arr.transpose(order)


def _level_origin(origin: tuple[int, ...], level: int, axis: int) -> tuple[int, ...]:
    """Where a source block's cells land in level ``level`` along ``axis`` (dataset order)."""
    dims = plane_dims(len(origin), axis)
    return tuple(o // 2**level if d in dims else o for d, o in enumerate(origin))


def _write(
    targets: dict[tuple[int, int], Path],
    level: int,
    origin: tuple[int, ...],
    block: np.ndarray,
    axes: list[int],
) -> None:
    """Write ``block`` (dataset order, its first cell at ``origin``) into each axis' array."""
    for axis in axes:
        path = targets[(level, axis)]
        mm = np.lib.format.open_memmap(path, mode="r+")
        try:
            o = [origin[axis]] + [origin[d] for d in range(block.ndim) if d != axis]
            sub = _orient(block, axis)
            mm[tuple(slice(a, a + n) for a, n in zip(o, sub.shape, strict=True))] = sub
        finally:
            del mm  # unmap: written pages go to the page cache, not this process's memory


def _coarser_levels(
    targets: dict[tuple[int, int], Path], first: int, nlevels: int, axis: int, ndim: int
) -> None:
    """Levels ``first+1 .. nlevels`` along ``axis`` from level ``first``, a tile at a time.

    Level ``first`` of a big dataset does not fit in memory (4096^3 -> 4 GB per axis; a declared
    10^6 x 10^6 image, 60 GB), nor does one of its rows or planes: tiles of ``TILE`` x ``TILE``
    cells in the slice plane (and as many slices as fit in ``TILE_BYTES``) are reduced up to
    log2(TILE) levels each; further levels are computed the same way from the last one. Tile
    origins are multiples of ``TILE``, so every tile but the last along a dim halves evenly and
    the cells equal those of the whole array reduced at once.

    Tiles are copied out of a read-only memory map that is unmapped at once: the pages of a
    mapped file stay in the server's resident memory while it is mapped.
    """
    dims = plane_dims(ndim, 0)  # the stored arrays are oriented: the normal axis comes first
    src = first
    while src < nlevels:
        steps = min(nlevels - src, max(1, int(math.log2(TILE))))
        _offset, shape = _npy_header(targets[(src, axis)])
        tile = [min(TILE, n) if d in dims else n for d, n in enumerate(shape)]
        if ndim == 3:
            tile[0] = max(1, min(shape[0], TILE_BYTES // (4 * tile[1] * tile[2])))
        for origin, size in _blocks(tuple(shape), tuple(tile)):
            box = tuple(slice(o, o + n) for o, n in zip(origin, size, strict=True))
            mm = np.load(targets[(src, axis)], mmap_mode="r")
            try:
                arr = np.array(mm[box], dtype=np.float32)
            finally:
                del mm
            for step in range(1, steps + 1):
                arr = halve(arr, dims)
                at = tuple(o // 2**step if d in dims else o for d, o in enumerate(origin))
                _write_at(targets[(src + step, axis)], at, arr)
        src += steps


def _write_at(path: Path, origin: tuple[int, ...], block: np.ndarray) -> None:
    """Write ``block`` (already in the file's axis order) at ``origin`` of a level file."""
    mm = np.lib.format.open_memmap(path, mode="r+")
    try:
        mm[tuple(slice(o, o + n) for o, n in zip(origin, block.shape, strict=True))] = block
    finally:
        del mm  # unmap: written pages go to the page cache, not this process's memory


def _blocks(
    shape: tuple[int, ...], block: int | tuple[int, ...]
) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Origin and size of each block of ``shape`` (C order), generated one at a time.

    ``block`` is the block's edge, the same along every dim or one per dim.
    """
    shape = tuple(int(n) for n in shape)
    if not shape or min(shape) <= 0:
        return
    edges = (block,) * len(shape) if isinstance(block, int) else tuple(block)
    origin = [0] * len(shape)
    while True:
        yield (
            tuple(origin),
            tuple(min(b, n - o) for o, n, b in zip(origin, shape, edges, strict=True)),
        )
        for d in reversed(range(len(shape))):
            origin[d] += edges[d]
            if origin[d] < shape[d]:
                break
            origin[d] = 0
        else:
            return


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
    on_wait: Callable[[], None] | None = None,
) -> Pyramid:
    """Build the pyramid of a 2-D or 3-D real dataset; returns it when complete.

    If another process is building the same pyramid, waits for it (calling ``on_wait``) and
    returns its result, building only if that one failed.

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
    on_wait
        Called if the build waits for another process's build of the same pyramid.

    Raises
    ------
    PyramidDeclined
        The dataset is mostly fill value (:func:`mostly_fill`), or its levels do not fit in the
        disk budget (:func:`disk_budget`) even after evicting the least recently used pyramids.
    """
    if info.ndim not in (2, 3) or info.kind not in ("bool", "int", "uint", "float"):
        raise DashappError(f"{info.path}: pyramids are built for 2-D and 3-D real datasets only")
    reason = mostly_fill(info)
    if reason is not None:
        raise PyramidDeclined(reason)
    directory = directory or pyramid_dir(info.file, info.path)
    with _build_lock(directory, cancel, on_wait) as waited:
        built = _fresh(directory, info.file) if waited else None
        if built is not None:
            built.built_elsewhere = True
            if progress:
                progress(1.0)
            return built
        return _build(info, directory, client, progress, cancel, workers)


def _build(
    info: DatasetInfo,
    directory: Path,
    client: Any,
    progress: Callable[[float], None] | None,
    cancel: threading.Event | None,
    workers: int | None,
) -> Pyramid:
    t0 = time.perf_counter()
    stamp = _stamp(info.file)
    shapes = level_shapes(info.shape)
    nlevels = len(shapes) - 1
    full_axes = full_res_axes_for(info)
    axes_all = list(range(info.ndim)) if info.ndim == 3 else [0]
    tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    root = directory.parent
    with _budget_lock(root):
        # (the old levels are stale or about to be replaced: their room is this build's)
        shutil.rmtree(directory, ignore_errors=True)
        _make_room(root, pyramid_nbytes(info.shape, full_axes), exclude=directory.name)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            # Created at full size: the room is reserved (counted by every process's budget).
            targets: dict[tuple[int, int], Path] = {}
            for level, shape in enumerate(shapes):
                axes = full_axes if level == 0 else axes_all
                for axis in axes:
                    name = f"L{level}.npy" if info.ndim == 2 else f"L{level}_a{axis}.npy"
                    # the normal axis stays at full size: levels reduce the slice plane only
                    oriented = (
                        info.shape[axis],
                        *[shape[d] for d in range(info.ndim) if d != axis],
                    )
                    path = tmp / name
                    np.lib.format.open_memmap(
                        path,
                        mode="w+",
                        dtype=np.float32,
                        shape=oriented if info.ndim == 3 else shape,
                    )
                    targets[(level, axis)] = path
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    try:
        first = min(nlevels, LEVELS_PER_BLOCK)
        # Generated as consumed: a list of every block of a declared 10^6 x 10^6 dataset
        # would itself take gigabytes.
        n_blocks = math.prod(-(-n // BLOCK) for n in info.shape)
        args = (
            (info.file, info.path, org, size, first, bool(full_axes), tuple(axes_all))
            for org, size in _blocks(info.shape, BLOCK)
        )
        done = 0

        def consume(result: tuple[tuple[int, ...], Any, dict[int, list[np.ndarray]]]) -> None:
            nonlocal done
            origin, full, levels = result
            if full is not None:
                _write(targets, 0, origin, full, full_axes)
            for axis, blocks in levels.items():
                for level, block in enumerate(blocks, start=1):
                    _write(targets, level, _level_origin(origin, level, axis), block, [axis])
            done += 1
            if progress:
                progress(0.95 * done / max(1, n_blocks))

        # A bounded window of blocks in flight: each finished block is written and dropped
        # before the next is submitted. (Submitting every block at once kept every result
        # alive in its future until the end: ~64 MB per 256^3 block, 30 GB for a 2048^2 x 1920
        # volume, and the server was killed for it.)
        pending = args
        if client is not None:
            from distributed import as_completed as dask_completed

            window = max(2, 2 * sum(client.nthreads().values()))
            first_batch = [
                client.submit(pyramid_block, *a, pure=False) for a in islice(pending, window)
            ]
            completed = dask_completed(first_batch)
            del first_batch
            for fut in completed:
                if cancel is not None and cancel.is_set():
                    client.cancel(list(completed.futures))
                    raise DashappError("pyramid build cancelled")
                consume(fut.result())
                fut.release()
                for a in islice(pending, 1):
                    completed.add(client.submit(pyramid_block, *a, pure=False))
        else:
            nthreads = workers or 2
            with ThreadPoolExecutor(
                max_workers=nthreads, thread_name_prefix="dashapp-pyramid"
            ) as pool:
                inflight = {pool.submit(pyramid_block, *a) for a in islice(pending, 2 * nthreads)}
                try:
                    while inflight:
                        finished, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                        for fut in finished:
                            if cancel is not None and cancel.is_set():
                                raise DashappError("pyramid build cancelled")
                            consume(fut.result())
                        del finished, fut
                        inflight |= {
                            pool.submit(pyramid_block, *a)
                            for a in islice(pending, 2 * nthreads - len(inflight))
                        }
                finally:
                    for f in inflight:
                        f.cancel()
        # Coarser levels from the last one computed per block, per axis.
        if nlevels > first:
            for axis in axes_all:
                _coarser_levels(targets, first, nlevels, axis, info.ndim)
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
        #: Declined for the file as it was (its size and mtime): not tried again until it changes.
        self._declined: dict[tuple[str, str], list[int]] = {}
        self._cleaned = False

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
                if st.state != "ready":  # (found on disk: maybe another process built it)
                    st.state, st.progress, st.message = "ready", 1.0, "overview levels ready"
        return pyr

    def status(self, info: DatasetInfo) -> BuildStatus:
        """The build state of ``info``'s pyramid."""
        if self.get(info) is not None:
            return self._status[self._key(info)]
        with self._lock:
            st = self._status.get(self._key(info))
            # "ready" but not on disk when looked at above: the file changed since (stale), or
            # the build finished just after the look (the state is set after the rename).
            if (
                st is not None
                and st.state == "ready"
                and open_pyramid(info.file, info.path) is None
            ):
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
            if st is not None and st.state == "declined" and key in self._declined:
                try:
                    if self._declined[key] == _stamp(info.file):
                        return st
                except OSError:
                    pass
                del self._declined[key]
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

    def clean(self) -> list[str]:
        """Remove what builds whose process died left in the cache (:func:`clean_stale`);
        done once when the manager's worker first starts, and before each build."""
        self._cleaned = True
        return clean_stale(cache_root())

    def _run(self) -> None:
        if not self._cleaned:
            try:
                self.clean()
            except OSError as exc:  # (an unwritable cache: the builds will say so)
                log.warning("could not clean the pyramid cache: %s", exc)
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

            def waiting(st: BuildStatus = st) -> None:
                st.message = "another process is building these overview levels: waiting for it"

            try:
                pyramid = build_pyramid(
                    info, client=client, progress=report, cancel=cancel, on_wait=waiting
                )
                st.state, st.progress = "ready", 1.0
                st.seconds = time.time() - st.started
                how = "by another process" if pyramid.built_elsewhere else where
                st.message = f"overview levels ready (built {how} in {st.seconds:.0f} s)"
            except PyramidDeclined as exc:
                st.state, st.progress, st.message = "declined", 0.0, str(exc)
                if exc.lasting:
                    with self._lock, suppress(OSError):
                        self._declined[key] = _stamp(info.file)
                log.info("no pyramid for %s:%s: %s", *key, exc)
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
