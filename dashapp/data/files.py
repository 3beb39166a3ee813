"""Opening HDF5 files: clear errors for bad files and one small, mtime-aware handle cache.

Opening a file costs a few system calls and throws away HDF5's chunk cache, so scrubbing through
slices re-uses handles from :data:`HANDLES`. A handle is reopened when the file's size or mtime
changes (a writer appended, the file was replaced), and closed only once no reader is using it.
No UI object ever owns a handle: callers borrow one for the duration of an operation.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py

# Registers Blosc, LZ4, Zstd, Bitshuffle, ... filters with HDF5 before any file opens.
import hdf5plugin  # noqa: F401

from .errors import DashappError, FileBusy, NotFound, NotHDF5
from .paths import check_hdf5_signature, check_regular_file, open_regular

__all__ = ["HANDLES", "HandleCache", "h5_errors", "open_file", "swmr_writer_active", "writer_pid"]

#: HDF5 raw-data chunk cache per open file. Scrubbing re-reads neighbouring chunks, so it pays
#: to keep a few dozen decompressed chunks; the cache holds at most ``max_files`` of these.
CHUNK_CACHE_BYTES = 64 * 1024 * 1024


@contextlib.contextmanager
def h5_errors(path: str | os.PathLike[str], what: str = "") -> Iterator[None]:
    """Translate the errors h5py raises for damaged or busy files into dashapp errors.

    h5py reports a truncated file, a lock held by a writer and a corrupted B-tree as bare
    ``OSError``/``RuntimeError``/``KeyError`` with HDF5's wording; the scientist gets a sentence
    naming the file and what to do.
    """
    name = Path(path).name
    where = f" ({what})" if what else ""
    try:
        yield
    except DashappError:
        raise
    except BlockingIOError as exc:
        raise FileBusy(
            f"{name} is locked by a program that has it open for writing. It can be read once the "
            "writer closes it (or writes it in SWMR mode)."
        ) from exc
    except OSError as exc:
        msg = str(exc)
        if "unable to lock file" in msg or "already open for write" in msg:
            raise FileBusy(
                f"{name} is locked by a program that has it open for writing. It can be read once "
                "the writer closes it (or writes it in SWMR mode)."
            ) from exc
        if "truncated file" in msg:
            raise NotHDF5(
                f"{name} is truncated: it is shorter than its header says ({_eof_detail(msg)}). "
                "It may still be being written, or a copy was interrupted."
            ) from exc
        if "file signature not found" in msg:
            raise NotHDF5(f"{name} is not an HDF5 file (no HDF5 signature).") from exc
        if "required filter" in msg or "can't open directory" in msg or "filter" in msg.lower():
            raise NotHDF5(f"{name}: data cannot be decoded{where}: {_first_line(msg)}") from exc
        raise NotHDF5(
            f"{name} cannot be read{where}: it looks damaged ({_first_line(msg)})."
        ) from exc
    except (RuntimeError, ValueError, KeyError) as exc:
        raise NotHDF5(
            f"{name} cannot be read{where}: it looks damaged ({_first_line(exc)})."
        ) from exc


def _first_line(exc: object) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _eof_detail(msg: str) -> str:
    # "truncated file: eof = 3000, sblock->base_addr = 0, stored_eof = 322048"
    try:
        eof = int(msg.split("eof = ")[1].split(",")[0])
        stored = int(msg.split("stored_eof = ")[1].split(")")[0].split(",")[0])
        return f"{eof:,} bytes on disk, {stored:,} expected"
    except (IndexError, ValueError):
        return "size mismatch"


def writer_pid(path: str | os.PathLike[str]) -> int | None:
    """The process holding an exclusive (write) lock on ``path``, from ``/proc/locks``.

    Reading ``/proc/locks`` takes no lock itself, so asking never gets in a writer's way. Only
    locks taken on this machine are visible (not those of writers on other nodes of a parallel
    filesystem, where HDF5 locking is usually disabled anyway).
    """
    try:
        st = os.stat(path)
        with open("/proc/locks") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 10044 fe:00:2146388 0 EOF"; "->" marks a waiting request
        if len(parts) >= 6 and parts[1] != "->" and parts[3] == "WRITE" and parts[5] == key:
            pid = int(parts[4]) if parts[4].isdigit() else -1
            if pid != os.getpid():
                return pid
    return None


def swmr_writer_active(path: str | os.PathLike[str]) -> bool:
    """True while a SWMR writer has the file open (its superblock says so).

    Superblocks of version 2 and 3 (``libver="latest"`` files) carry status flags at byte 11:
    bit 0 "open for writing", bit 2 "open for SWMR writing". A SWMR reader can follow such a
    writer by refreshing datasets; any other writer's changes need the file reopened.
    """
    from .paths import _HDF5_SIGNATURE, _SIGNATURE_OFFSETS

    try:
        with open_regular(path) as fh:
            for offset in _SIGNATURE_OFFSETS:
                fh.seek(offset)
                head = fh.read(12)
                if len(head) < 12:
                    return False
                if head[:8] == _HDF5_SIGNATURE:
                    return head[8] >= 2 and bool(head[11] & 0x04)
    except (OSError, DashappError):
        return False
    return False


def _busy(path: Path, pid: int | None) -> FileBusy:
    who = f" (process {pid})" if pid and pid > 0 else ""
    return FileBusy(
        f"{path.name} is being written by another program{who} that has it open for writing. "
        "It can be read once the writer closes it, or while it writes in SWMR mode."
    )


def _flag_mismatch(msg: str) -> bool:
    # "file locking flag values don't match", "file locking 'ignore disabled locks' flag values
    # don't match", "SWMR read access flag not the same for file that is already open"
    return "flag" in msg and ("match" in msg or "not the same" in msg)


def _open(path: Path) -> h5py.File:
    check_hdf5_signature(path)
    pid = writer_pid(path)
    if pid is not None:
        raise _busy(path, pid)
    # locking=False: a viewer must never stop a simulation from opening its own output for
    # writing, which a shared HDF5 lock held by a long-lived read handle would do. In a notebook
    # kernel the user's own h5py.File calls use HDF5's default locking, and HDF5 refuses two
    # opens of one file with different locking flags in one process, so match the default there.
    opts = {"rdcc_nbytes": CHUNK_CACHE_BYTES, "rdcc_nslots": 10007}
    lockings: list[bool | str | None] = [False, None, True, "best-effort"]
    if "ipykernel" in sys.modules:
        lockings = [None, False, True, "best-effort"]
    attempts = [{"swmr": swmr, "locking": lock} for lock in lockings for swmr in (True, False)]
    with h5_errors(path):
        for i, attempt in enumerate(attempts):
            try:
                return h5py.File(path, "r", **attempt, **opts)
            except OSError as exc:
                msg = str(exc)
                if "already open for write" in msg or "not already open for SWMR" in msg:
                    raise _busy(path, None) from exc
                # Retry only what another open of this file in this process explains: its SWMR
                # flag ("SWMR read access flag not the same") or its locking flag.
                if i == len(attempts) - 1 or not _flag_mismatch(msg):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class _Handle:
    file: h5py.File
    stamp: tuple[int, int, int]
    users: int = 0
    stale: bool = False
    last_used: float = field(default_factory=time.monotonic)
    #: Objects refreshed since the file last changed (a SWMR reader refreshes each once).
    refreshed: set[str] = field(default_factory=set)


def _stamp(path: Path) -> tuple[int, int, int]:
    # Refuses pipes and devices before anything opens them (an open would wait for a writer).
    try:
        st = check_regular_file(path)
    except NotFound as exc:
        raise NotFound(f"{path.name} no longer exists.") from exc
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class HandleCache:
    """A small LRU of open read-only h5py files, reopened when the file changes on disk.

    Parameters
    ----------
    max_files
        Handles kept open at once. Each holds up to :data:`CHUNK_CACHE_BYTES` of chunk cache per
        dataset read, so this bounds the server's memory for cached chunks.
    idle_seconds
        A handle nobody borrowed for this long is closed, so that other code in the same process
        (a notebook writing the file the slicer shows) can open the file for writing.
    """

    def __init__(self, max_files: int = 8, idle_seconds: float = 5.0) -> None:
        self.max_files = max_files
        self.idle_seconds = idle_seconds
        self._handles: OrderedDict[Path, _Handle] = OrderedDict()
        self._lock = threading.Lock()
        self._janitor: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def open(self, path: str | os.PathLike[str]) -> Iterator[h5py.File]:
        """Borrow an open file for the duration of a ``with`` block."""
        real = Path(os.path.realpath(path))
        stamp = _stamp(real)
        with self._lock:
            handle = self._handles.get(real)
            if handle is not None and handle.stamp != stamp:
                if (
                    handle.stamp[2] == stamp[2]
                    and stamp[0] >= handle.stamp[0]  # SWMR writers only append
                    and handle.file.swmr_mode
                    and not handle.stale
                    and swmr_writer_active(real)
                ):
                    # The same file, written to (a SWMR writer appends): keep the handle;
                    # datasets are refreshed as they are next looked up (refresh_once).
                    handle.stamp = stamp
                    handle.refreshed = set()
                else:  # replaced, or written by a writer that closed it: reopen
                    self._retire(real, handle)
                    handle = None
            if handle is not None:
                self._handles.move_to_end(real)
                handle.users += 1
        if handle is None:
            handle = _Handle(_open(real), stamp, users=1)
            with self._lock:
                old = self._handles.pop(real, None)
                if old is not None:
                    old.stale = True
                    self._close_if_unused(old)
                self._handles[real] = handle
                while len(self._handles) > self.max_files:
                    victim_path, victim = next(iter(self._handles.items()))
                    self._retire(victim_path, victim)
        self._start_janitor()
        try:
            with h5_errors(real):
                yield handle.file
        finally:
            with self._lock:
                handle.users -= 1
                handle.last_used = time.monotonic()
                self._close_if_unused(handle)

    def close_idle(self) -> int:
        """Close handles unused for ``idle_seconds``; returns how many were closed."""
        now = time.monotonic()
        closed = 0
        with self._lock:
            for path, handle in list(self._handles.items()):
                if handle.users == 0 and now - handle.last_used >= self.idle_seconds:
                    self._retire(path, handle)
                    closed += 1
        return closed

    def _start_janitor(self) -> None:
        if self._janitor is not None and self._janitor.is_alive():
            return
        self._janitor = threading.Thread(target=self._sweep, name="dashapp-handles", daemon=True)
        self._janitor.start()

    def shutdown(self) -> None:
        """Close every handle and stop the janitor (at interpreter exit, before HDF5 goes).

        A daemon thread still calling into HDF5 while Python finalises crashes the process
        ("ref-counted page nil", then a segmentation fault).
        """
        self._closed = True
        self.clear()

    def _sweep(self) -> None:
        while not self._closed:
            time.sleep(max(self.idle_seconds / 4, 0.05))
            if self._closed:
                return
            self.close_idle()
            with self._lock:
                if not self._handles:
                    self._janitor = None
                    return

    def forget(self, path: str | os.PathLike[str]) -> None:
        """Close the handle of ``path`` (once unused) so the next read reopens the file."""
        real = Path(os.path.realpath(path))
        with self._lock:
            handle = self._handles.get(real)
            if handle is not None:
                self._retire(real, handle)

    def clear(self) -> None:
        """Close every handle that is not in use and forget the others."""
        with self._lock:
            for path, handle in list(self._handles.items()):
                self._retire(path, handle)

    def __len__(self) -> int:
        return len(self._handles)

    def _retire(self, path: Path, handle: _Handle) -> None:
        self._handles.pop(path, None)
        handle.stale = True
        self._close_if_unused(handle)

    @staticmethod
    def _close_if_unused(handle: _Handle) -> None:
        if handle.stale and handle.users == 0:
            with contextlib.suppress(Exception):
                handle.file.close()


#: Serialises HDF5 object refreshes with chunk-index lookups: H5Drefresh reloads a dataset's
#: metadata under other open identifiers of the same dataset, which HDF5 does not survive when
#: another thread uses one at the same time ("ref-counted page nil").
H5_OBJECT_LOCK = threading.RLock()


def refresh_once(obj) -> None:
    """Refresh a dataset of a file a SWMR writer appended to, once per change of the file."""
    f = obj.file
    if not f.swmr_mode:
        return
    real = Path(os.path.realpath(f.filename))
    handle = HANDLES._handles.get(real)
    if handle is None or obj.name in handle.refreshed:
        return
    if not swmr_writer_active(real):
        handle.refreshed.add(obj.name)  # nothing appends to it: its metadata is current
        return
    with H5_OBJECT_LOCK:
        obj.refresh()
        handle.refreshed.add(obj.name)


#: The process-wide handle cache used by the data layer's readers.
HANDLES = HandleCache()
atexit.register(HANDLES.shutdown)


def open_file(path: str | os.PathLike[str]) -> contextlib.AbstractContextManager[h5py.File]:
    """Borrow a read-only handle on ``path`` from the shared cache.

    Raises :class:`NotHDF5` (with the reason) for files that are not HDF5, truncated or damaged,
    :class:`FileBusy` for files locked by a writer and :class:`NotFound` for missing files.
    """
    return HANDLES.open(path)
