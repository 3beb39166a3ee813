"""Reading HDF5 regions without h5py's global lock: raw chunk bytes, decoded in threads, cached.

h5py serialises every call behind one process-wide lock, and HDF5 decompresses chunks while
holding it: one user's 1-second read of a gzip slice would stall every other session of the
server. For the common storage layouts this module bypasses that:

- **chunked** datasets with no filter, or gzip (deflate) with optional shuffle and fletcher32:
  the chunk's file offset and size come from HDF5's chunk index (a quick locked lookup), the bytes
  from ``os.pread``, and ``zlib`` (which releases the GIL) decodes them in a thread pool, so a
  slice's chunks decompress on every core at once;
- **contiguous** datasets: the data's file offset from HDF5, then plain positioned reads.

Decoded chunks go to :data:`CHUNK_CACHE`, an LRU bounded in bytes, so scrubbing through a
64-slice-thick chunk layer decompresses it once; each reader (:func:`reading_for`) claims the
chunks of its latest read, so many sessions needing more than the cache do not evict each
other's layers (see :class:`ChunkCache`); :meth:`DirectReader.prefetch` warms the next layer
in the direction the user is moving, into the room the claims leave. Unfiltered chunks of
which a read needs a small span (a plane across a chunk's first axis) are read in part and not
cached: the OS page cache holds their bytes.

A read can also ask for an overview **level**: each chunk is decoded, reduced by 2x2 means in
the slice plane ``level`` times (the same cells as :mod:`.pyramid`'s levels) and cached reduced.
A 2048^2 slice of 64^3 chunks is 1 GB of decoded chunks, more than the cache holds, but 256 MB
at level 1: scrubbing through that chunk layer before any pyramid exists then decodes it once.

Bulk reads (``cache=False``: pyramid builds) step aside for reads someone is waiting for: while
any cached read runs in this process, a bulk read submits no new decode (:data:`FOREGROUND`).

Any other layout (virtual, external, compact, other
filters such as Blosc or LZF, non-numeric types) returns ``None`` from :func:`direct_reader` and
callers fall back to h5py.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import zlib
from collections import Counter, OrderedDict, deque
from collections.abc import Hashable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import h5py
import numpy as np

from .. import settings
from .errors import Unsupported
from .files import H5_OBJECT_LOCK, h5_errors, open_file
from .reduce import as_float32, halve

__all__ = [
    "CHUNK_CACHE",
    "FOREGROUND",
    "READ_MEMORY",
    "ChunkCache",
    "DirectReader",
    "Foreground",
    "cache_budget",
    "direct_reader",
    "max_chunks_per_read",
    "max_decode_bytes",
    "piece_bytes",
    "reading_for",
    "reducible_levels",
    "release_reads",
    "server_processes",
    "too_big_chunk",
]

_DEFLATE, _SHUFFLE, _FLETCHER32 = 1, 2, 3
_SUPPORTED_FILTERS = {_DEFLATE, _SHUFFLE, _FLETCHER32}

#: An unfiltered chunk is read in part when the span of bytes a read needs from it is at most
#: this fraction of it (else it is read whole, and cached).
PART_FRACTION = 1 / 8


def _memory_setting() -> int:
    return int(settings.current().read_memory_mb * 2**20)  # (at least 16 MB)


#: The memory one read of the data layer may hold at once, in bytes: ``DASHAPP_READ_MEMORY_MB``
#: (default 1024). Whatever a file declares (10^12 cells, one 4 GB chunk, a fill value
#: everywhere) a slice read, a range estimate or a level reduction keeps within it:
#:
#: - a picture reads at most :data:`.reader.READ_BUDGET` cells (with a stride beyond) and
#:   crosses at most :func:`max_chunks_per_read` chunks;
#: - unfiltered data (contiguous, or chunks of any size) is read by positioned reads of at
#:   most :func:`piece_bytes` each;
#: - a compressed chunk is decoded whole (no codec can do less), so chunks decoding to more
#:   than :func:`max_decode_bytes` are refused with a sentence, and fewer are decoded at once
#:   the larger they are;
#: - chunks never written cost nothing: their cells are the fill value, placed directly.
READ_MEMORY = _memory_setting()


def piece_bytes() -> int:
    """The longest positioned read of unfiltered bytes: 1/16 of :data:`READ_MEMORY`."""
    return max(2**16, READ_MEMORY // 16)


def max_decode_bytes() -> int:
    """The largest compressed chunk decoded (its decoded size): 1/6 of :data:`READ_MEMORY`
    (a decode holds the compressed bytes, the decoded ones and an unshuffled copy)."""
    return READ_MEMORY // 6


def max_chunks_per_read() -> int:
    """The most chunks one read may cross (each costs bookkeeping here and in HDF5, about
    4 KB in HDF5's own hyperslab reads): :data:`READ_MEMORY` / 16 KB."""
    return max(1024, READ_MEMORY // 2**14)


def too_big_chunk(ds: h5py.Dataset) -> str:
    """Why ``ds``'s chunks cannot be read within :data:`READ_MEMORY` (compressed chunks decode
    whole), or "" if they can."""
    if ds.chunks is None:
        return ""
    plist = ds.id.get_create_plist()
    if plist.get_nfilters() == 0:
        return ""
    codes = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
    nbytes = math.prod(ds.chunks) * ds.dtype.itemsize
    if codes <= {_FLETCHER32} or nbytes <= max_decode_bytes():
        return ""
    shape = " × ".join(str(n) for n in ds.chunks)
    return (
        f"{ds.name} is stored in compressed chunks of {shape} cells ({nbytes / 2**20:,.0f} MB "
        f"each, decoded); a chunk is decoded whole, and this server reads at most "
        f"{max_decode_bytes() / 2**20:,.0f} MB at once (DASHAPP_READ_MEMORY_MB). Rewrite the "
        "data with smaller chunks (e.g. h5repack -l CHUNK=...)."
    )


def server_processes(argv: list[str] | None = None) -> int:
    """How many processes serve this app: N of ``panel serve --num-procs N`` in one of its
    children (0 means one per core, as Tornado does), else 1."""
    try:
        from tornado.process import task_id
    except ImportError:  # pragma: no cover - tornado comes with bokeh
        return 1
    if task_id() is None:
        return 1
    # (sys.argv is the app's own --args while a session's script runs; orig_argv is not)
    args = list(sys.orig_argv if argv is None else argv)
    n = None
    for i, arg in enumerate(args):
        if arg == "--num-procs" and i + 1 < len(args):
            n = args[i + 1]
        elif arg.startswith("--num-procs="):
            n = arg.split("=", 1)[1]
    try:
        count = int(n) if n is not None else 1
    except ValueError:
        count = 1
    return count if count > 0 else (os.cpu_count() or 1)


def cache_budget() -> int:
    """The chunk cache of this process: ``DASHAPP_CHUNK_CACHE_MB`` (default 512) is the
    server's, shared out among its processes."""
    total = settings.current().chunk_cache_mb * 2**20
    return int(total // server_processes())


class ChunkCache:
    """A thread-safe LRU of decoded chunks, bounded by their total size in bytes, that does not
    thrash when its users need more than it holds.

    A plain LRU serving ten sessions whose current chunk layers add up to more than its budget
    evicts each session's layer just before that session steps again: no read ever hits, and
    every step decodes its whole layer (measured: 56 decodes per picture instead of none).
    So each reader (a session's slicer; see :func:`reading_for`) **claims** the chunks of its
    latest read, and claimed chunks are not evicted to make room for others: a session's
    current layer stays while it scrubs through it, and is let go when it moves to the next
    layer, after :data:`CLAIM_SECONDS` unused, or when the session closes (:meth:`release`).
    When only claimed chunks are left, a new chunk is not kept: the sessions already served
    stay fast, and the one that came last decodes what did not fit. Prefetched chunks claim
    nothing, so a guess never evicts what someone is looking at.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._claims: dict[Hashable, tuple[frozenset, float]] = {}
        self._claimed: Counter[tuple] = Counter()
        self.hits = 0
        self.misses = 0
        #: Chunks not kept because claimed chunks filled the cache.
        self.refused = 0

    def get(self, key: tuple) -> np.ndarray | None:
        """The cached chunk, or None (counted as a miss)."""
        with self._lock:
            arr = self._items.get(key)
            if arr is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return arr

    def peek(self, key: tuple) -> np.ndarray | None:
        """The cached chunk or None, without counting a hit or miss or refreshing it."""
        with self._lock:
            return self._items.get(key)

    def __contains__(self, key: tuple) -> bool:
        with self._lock:
            return key in self._items

    def claim(self, owner: Hashable, keys: Iterable[tuple]) -> None:
        """``owner``'s latest read needs ``keys``: keep them (see the class); this replaces
        ``owner``'s earlier claim."""
        keys = frozenset(keys)
        with self._lock:
            self._unclaim(owner)
            self._claims[owner] = (keys, time.monotonic())
            self._claimed.update(keys)

    def release(self, owner: Hashable) -> None:
        """``owner`` reads no more: its chunks may go."""
        with self._lock:
            self._unclaim(owner)

    def _unclaim(self, owner: Hashable) -> None:
        old = self._claims.pop(owner, None)
        if old is not None:
            self._claimed.subtract(old[0])
            for key in old[0]:
                if self._claimed[key] <= 0:
                    del self._claimed[key]

    def put(self, key: tuple, arr: np.ndarray) -> bool:
        """Store a decoded chunk, evicting the least recently used unclaimed ones beyond the
        budget; returns whether it was kept."""
        if arr.nbytes > self.max_bytes:
            return False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = arr
            self._bytes += arr.nbytes
            self._evict(spare_claimed=True)
            if key in self._items:
                return True
            self.refused += 1
            return False

    def resize(self, max_bytes: int) -> None:
        """A new budget; the least recently used chunks beyond it go, claimed or not."""
        with self._lock:
            self.max_bytes = max_bytes
            self._evict(spare_claimed=False)

    def _evict(self, spare_claimed: bool) -> None:
        """Drop the least recently used chunks until within budget (holding the lock); with
        ``spare_claimed``, claimed chunks stay and the newest chunk goes if nothing else can."""
        if self._bytes <= self.max_bytes:
            return
        if spare_claimed:
            self._expire_claims()
            for key in list(self._items):
                if self._bytes <= self.max_bytes:
                    return
                if key not in self._claimed:
                    self._bytes -= self._items.pop(key).nbytes
            if self._bytes > self.max_bytes:  # only claimed chunks left: the newest goes
                _, arr = self._items.popitem(last=True)
                self._bytes -= arr.nbytes
        while self._bytes > self.max_bytes and self._items:
            _, victim = self._items.popitem(last=False)
            self._bytes -= victim.nbytes

    def _expire_claims(self) -> None:
        too_old = time.monotonic() - CLAIM_SECONDS
        for owner in [o for o, (_, t) in self._claims.items() if t < too_old]:
            self._unclaim(owner)

    def room(self) -> int:
        """Bytes that new unclaimed chunks can have: the budget less the claimed chunks held."""
        with self._lock:
            self._expire_claims()
            claimed = sum(a.nbytes for k, a in self._items.items() if k in self._claimed)
            return self.max_bytes - claimed

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Drop everything (claims included)."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self._claims.clear()
            self._claimed.clear()


#: Seconds after which a reader's claim on its chunks lapses if it has not read again (a
#: session left open in a forgotten tab).
CLAIM_SECONDS = 60.0

#: Who the reads of this context are for (see :func:`reading_for`).
_OWNER: ContextVar[Hashable] = ContextVar("dashapp_chunk_owner", default=None)


@contextmanager
def reading_for(owner: Hashable) -> Iterator[None]:
    """Reads in this block are ``owner``'s (e.g. one slicer of one session): the chunks of its
    latest read stay cached while it scrubs through them (see :class:`ChunkCache`)."""
    token = _OWNER.set(owner)
    try:
        yield
    finally:
        _OWNER.reset(token)


def release_reads(owner: Hashable) -> None:
    """``owner`` reads no more (its session closed): the chunks it claimed may go."""
    CHUNK_CACHE.release(owner)


class Foreground:
    """Reads someone is waiting for; bulk reads wait while any runs.

    A pyramid build decodes every chunk of a volume on every core for minutes (21 for 32 GB).
    Sharing the decode pool with it, a user's slice waited behind the build's chunks: 25 s per
    key press on a 2048^2 slice. With this gate the build submits no new decode while a slice
    read runs (it finishes the few it has in flight), and goes on between reads. A bulk read
    waits at most ``max_wait`` seconds per chunk, so back-to-back reads slow a build but cannot
    stop it.
    """

    def __init__(self, max_wait: float = 1.0) -> None:
        self.max_wait = max_wait
        self._active = 0
        self._cond = threading.Condition()
        #: Seconds bulk reads have waited (for benchmarks and tests).
        self.waited = 0.0

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Mark a foreground read for its duration."""
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if not self._active:
                    self._cond.notify_all()

    def step_aside(self) -> None:
        """Called by bulk reads before each decode: wait while a foreground read runs."""
        with self._cond:
            if not self._active:
                return
            t0 = time.perf_counter()
            self._cond.wait_for(lambda: not self._active, timeout=self.max_wait)
            self.waited += time.perf_counter() - t0


#: The foreground reads of this process (see :class:`Foreground`).
FOREGROUND = Foreground()

#: Decoded chunks of every dataset read by this process (``DASHAPP_CHUNK_CACHE_MB``, default 512).
CHUNK_CACHE = ChunkCache(cache_budget())
#: Threads decoding chunks (zlib releases the GIL, so these use every core).
DECODE_POOL = ThreadPoolExecutor(
    max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="dashapp-decode"
)


@dataclass
class _ChunkIndex:
    """Where each chunk of a dataset is in the file, memoised as chunks are first read."""

    entries: dict[tuple[int, ...], tuple[int, int, int] | None] = field(default_factory=dict)
    #: Every written chunk is in ``entries`` (loaded at once, see :data:`INDEX_LIMIT`): a chunk
    #: not there was never written, and a read of mostly unwritten space visits only these.
    complete: bool = False
    loaded: bool = False


#: Chunks smaller than this (decoded) are read through h5py when many are written (see
#: :meth:`DirectReader._read_small`).
SMALL_CHUNK_BYTES = 4096

#: Datasets with at most this many written chunks have their whole chunk index loaded at their
#: first read (one pass over HDF5's index, ~100 bytes a chunk here).
INDEX_LIMIT = 65_536


class DirectReader:
    """Region reads of one dataset, from the file's bytes, outside h5py's lock.

    Build with :func:`direct_reader`, which returns None for layouts this cannot read.
    """

    def __init__(self, path: Path, stamp: tuple[int, int], ds: h5py.Dataset) -> None:
        self.path = path
        self.key = (str(path), stamp, ds.name)
        self.shape = tuple(int(n) for n in ds.shape)
        self.dtype = ds.dtype
        self.chunks = ds.chunks
        fill = ds.fillvalue
        self.fillvalue = np.array(0 if fill is None else fill, dtype=self.dtype)
        self.filters: list[int] = []
        self._index: _ChunkIndex | None = None
        self._offset: int | None = None
        if self.chunks is not None:
            plist = ds.id.get_create_plist()
            self.filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
            self._index = _ChunkIndex()
        else:
            self._offset = ds.id.get_offset()
        self._prefetching: set[tuple] = set()
        #: Why the chunks cannot be decoded within READ_MEMORY ("" if they can).
        self.too_big = too_big_chunk(ds)
        #: Chunks stored as raw array bytes (no filter but a checksum after them): a read can
        #: take just the bytes it needs from the file, as for a contiguous dataset.
        self.raw = self.chunks is not None and set(self.filters) <= {_FLETCHER32}
        #: Cells between neighbours along each dim of a chunk (C order).
        self._strides = (
            [math.prod(self.chunks[d + 1 :]) for d in range(len(self.chunks))]
            if self.chunks is not None
            else []
        )

    # ------------------------------------------------------------------ chunks
    def _chunk_key(self, offset: tuple[int, ...], level: int = 0, dims: tuple = ()) -> tuple:
        return (*self.key, offset) if level == 0 else (*self.key, offset, level, dims)

    def _fetch(
        self,
        offset: tuple[int, ...],
        level: int = 0,
        dims: tuple = (),
        finer: tuple[int, np.ndarray] | None = None,
    ) -> np.ndarray:
        """The chunk at ``offset``, decoded, and at ``level`` > 0 reduced in ``dims``; from
        ``finer`` = ``(its level, the chunk at that level)`` instead of the file if given."""
        start, block = finer if finer is not None else (0, self._decode(offset))
        return block if level == 0 else self._reduce(block, offset, start, level, dims)

    def _reduce(
        self, block: np.ndarray, offset: tuple[int, ...], start: int, level: int, dims: tuple
    ) -> np.ndarray:
        """A chunk at level ``start`` as float32 means of 2x2 cells along ``dims``, reduced to
        ``level``.

        A decoded chunk (``start`` 0) is first cut to the dataset's bounds, so its cells are
        exactly those of the dataset's own levels (chunk origins are multiples of ``2**level``
        along ``dims``).
        """
        arr = block
        if start == 0:
            inside = tuple(
                slice(0, min(c, n - o))
                for c, n, o in zip(self.chunks, self.shape, offset, strict=True)
            )
            if _is_fill(block):  # a never-written chunk stays a broadcast fill value
                shape = [
                    min(c, n - o) for c, n, o in zip(self.chunks, self.shape, offset, strict=True)
                ]
                for _ in range(level):
                    shape = [-(-n // 2) if d in dims else n for d, n in enumerate(shape)]
                return np.broadcast_to(as_float32(self.fillvalue), shape)
            arr = as_float32(block[inside])
        return halve(arr, dims, level - start)

    def _finer(
        self, offset: tuple[int, ...], level: int, dims: tuple
    ) -> tuple[int, np.ndarray] | None:
        """The chunk at ``offset`` cached at a finer level than ``level`` (the nearest), if any:
        a view resized or zoomed out reduces what it holds instead of decoding again."""
        for finer in range(level - 1, -1, -1):
            arr = CHUNK_CACHE.peek(self._chunk_key(offset, finer, dims if finer else ()))
            if arr is not None:
                return finer, arr
        return None

    def _locate(self, offset: tuple[int, ...]) -> tuple[int, int, int] | None:
        """``(byte_offset, size, filter_mask)`` of the chunk at ``offset``; None if unallocated."""
        entries = self._index.entries
        if offset in entries:
            return entries[offset]
        if self._index.complete:
            return None
        # HDF5's chunk index is behind h5py's lock; the lookup is quick and memoised.
        with open_file(self.path) as f, h5_errors(self.path, self.key[2]), H5_OBJECT_LOCK:
            info = f[self.key[2]].id.get_chunk_info_by_coord(offset)
        entry = (
            None if info.byte_offset is None else (info.byte_offset, info.size, info.filter_mask)
        )
        entries[offset] = entry
        return entry

    def _load_index(self) -> None:
        """Load the whole chunk index at once if the dataset has at most :data:`INDEX_LIMIT`
        written chunks (then a chunk not in it was never written)."""
        index = self._index
        if index.loaded:
            return
        found: dict[tuple[int, ...], tuple[int, int, int]] = {}
        with open_file(self.path) as f, h5_errors(self.path, self.key[2]), H5_OBJECT_LOCK:
            dsid = f[self.key[2]].id
            n = dsid.get_num_chunks()
            if n <= INDEX_LIMIT:

                def add(info: object) -> None:
                    found[tuple(info.chunk_offset)] = (
                        info.byte_offset,
                        info.size,
                        info.filter_mask,
                    )

                if hasattr(dsid, "chunk_iter"):
                    dsid.chunk_iter(add)
                else:  # pragma: no cover - h5py < 3.8
                    for i in range(n):
                        add(dsid.get_chunk_info(i))
        if len(found) == n and n <= INDEX_LIMIT:
            index.entries = dict(found)
            index.complete = True
        index.loaded = True

    def _locate_many(self, offsets: Iterable[tuple[int, ...]]) -> None:
        """Look up every chunk of ``offsets`` not known yet, in one visit to HDF5 (a read of
        65,536 tiny chunks looked each up on its own: seconds of locking and opening)."""
        entries = self._index.entries
        if self._index.complete:
            return
        missing = [o for o in offsets if o not in entries]
        if not missing:
            return
        with open_file(self.path) as f, h5_errors(self.path, self.key[2]), H5_OBJECT_LOCK:
            dsid = f[self.key[2]].id
            for offset in missing:
                info = dsid.get_chunk_info_by_coord(offset)
                entries[offset] = (
                    None
                    if info.byte_offset is None
                    else (info.byte_offset, info.size, info.filter_mask)
                )

    def _decode(self, offset: tuple[int, ...]) -> np.ndarray:
        """Read and decode one whole chunk (full chunk shape, as stored); a never-written
        chunk is the fill value broadcast to the chunk's shape (no memory)."""
        loc = self._locate(offset)
        if loc is None:  # never written: the fill value
            return np.broadcast_to(self.fillvalue, self.chunks)
        byte_offset, size, mask = loc
        if self._chunk_bytes() > (piece_bytes() if self.raw else max_decode_bytes()):
            # (reads take big unfiltered chunks in parts and refuse big compressed ones first)
            raise Unsupported(
                f"{self.key[2]}: a chunk of {self._chunk_bytes() / 2**20:,.0f} MB cannot be "
                f"decoded within the read budget ({READ_MEMORY / 2**20:,.0f} MB)"
            )
        with open(self.path, "rb") as fh:
            raw = self._pread(fh, size, byte_offset, byte_offset)
        for position, code in reversed(list(enumerate(self.filters))):
            if mask & (1 << position):
                continue  # this filter was skipped for this chunk
            if code == _DEFLATE:
                raw = zlib.decompress(raw)
            elif code == _FLETCHER32:
                raw = raw[:-4]
            elif code == _SHUFFLE:
                item = self.dtype.itemsize
                raw = np.frombuffer(raw, np.uint8).reshape(item, -1).T.tobytes()
        arr = np.frombuffer(raw, dtype=self.dtype)
        return arr.reshape(self.chunks)

    def _pread(self, fh, size: int, at: int, chunk_at: int) -> bytes:
        """``size`` bytes at byte ``at`` of the file (in the chunk at byte ``chunk_at``); a
        short read is a truncated file."""
        raw = os.pread(fh.fileno(), size, at)
        if len(raw) != size:
            raise OSError(
                f"{self.path.name}: chunk at byte {chunk_at} is cut short (truncated file)"
            )
        return raw

    def chunk(self, offset: tuple[int, ...], cache: bool = True) -> np.ndarray:
        """The decoded chunk at ``offset`` (from the cache when possible).

        ``cache=False`` neither uses nor fills the cache (bulk reads such as pyramid builds
        must not evict what the users are scrubbing through).
        """
        if not cache:
            return self._decode(offset)
        key = self._chunk_key(offset)
        arr = CHUNK_CACHE.get(key)
        if arr is None:
            arr = self._decode(offset)
            CHUNK_CACHE.put(key, arr)
        return arr

    def _chunk_bytes(self, level: int = 0, dims: tuple = ()) -> int:
        """Bytes of one decoded chunk at ``level``."""
        if level == 0:
            return math.prod(self.chunks) * self.dtype.itemsize
        # float32, reduced along dims
        return 4 * math.prod(c >> level if d in dims else c for d, c in enumerate(self.chunks))

    def _fits(self, nchunks: int, level: int = 0, dims: tuple = ()) -> bool:
        """Whether ``nchunks`` chunks (at ``level``) fit in half of :data:`CHUNK_CACHE`."""
        return nchunks * self._chunk_bytes(level, dims) <= CHUNK_CACHE.max_bytes // 2

    def _normalise(
        self, sel: Sequence[int | slice], level: int = 0, dims: tuple = ()
    ) -> list[int | slice]:
        """``sel`` (at ``level``) with every slice's start, stop and step explicit."""
        return [
            slice(*s.indices(n)) if isinstance(s, slice) else int(s)
            for s, n in zip(sel, self.level_shape(level, dims), strict=True)
        ]

    def level_shape(self, level: int = 0, dims: tuple = ()) -> tuple[int, ...]:
        """The dataset's shape at ``level`` (dims along ``dims`` halved ``level`` times)."""
        k = 2**level
        return tuple(-(-n // k) if d in dims else n for d, n in enumerate(self.shape))

    def _origins(
        self, sel: Sequence[int | slice], level: int = 0, dims: tuple = ()
    ) -> list[list[int]]:
        """Along each dim, the origins (full-resolution cells) of the chunks holding a cell
        that ``sel`` (at ``level``) selects: with a stride wider than the chunks, not every
        chunk between the first and the last."""
        origins = []
        shape = self.level_shape(level, dims)
        for d, (s, n, c) in enumerate(zip(sel, shape, self.chunks, strict=True)):
            k = 2**level if d in dims else 1
            if isinstance(s, slice):
                start, stop, step = s.indices(n)
                stop = max(stop, start + 1)
                if step * k <= c:  # every chunk of the range
                    first, end = start * k, min(stop * k, self.shape[d])
                    origins.append(list(range((first // c) * c, end, c)))
                else:
                    cells = np.arange(start, stop, step, dtype=np.int64) * k
                    origins.append((np.unique(cells // c) * c).tolist())
            else:
                origins.append([(int(s) * k // c) * c])
        return origins

    def _chunk_offsets(
        self, sel: Sequence[int | slice], level: int = 0, dims: tuple = ()
    ) -> list[tuple[int, ...]]:
        """Offsets (full-resolution cells) of the chunks that ``sel`` (at ``level``) touches.

        At most :func:`max_chunks_per_read` of them, else :class:`Unsupported`; when the whole
        chunk index is loaded (few chunks written), only the written ones, however many the
        selection crosses: the others are the fill value (see :meth:`_read`).
        """
        origins = self._origins(sel, level, dims)
        count = math.prod(len(o) for o in origins)
        self._load_index()
        if self._index.complete and count > len(self._index.entries):
            wanted = [set(o) for o in origins]
            return sorted(
                o
                for o in self._index.entries
                if all(v in w for v, w in zip(o, wanted, strict=True))
            )
        if count > max_chunks_per_read():
            raise Unsupported(self._too_many(count))
        return [tuple(o) for o in product(*origins)]

    # ------------------------------------------------------------------ reading
    def read(
        self,
        sel: Sequence[int | slice],
        cache: bool = True,
        level: int = 0,
        dims: Sequence[int] = (),
    ) -> np.ndarray:
        """``dataset[sel]`` for integer indices and slices (steps allowed).

        Missing chunks are decoded in parallel and placed as each one lands, so memory holds the
        output plus a few chunks, whatever the number of chunks the selection crosses.

        With ``level`` > 0, ``sel`` indexes the dataset's overview level along ``dims`` (see
        :meth:`level_shape`; at most :func:`reducible_levels`): float32 means of ``2**level`` cells
        per side along ``dims``, equal to :mod:`.pyramid`'s levels. Integer indices along
        ``dims`` select reduced cells too.

        A cached read is a :data:`FOREGROUND` read; ``cache=False`` marks a bulk read, which
        steps aside for them.
        """
        if not cache:
            return self._read(sel, cache, level, dims)
        with FOREGROUND.reading():
            return self._read(sel, cache, level, dims)

    def _read(
        self, sel: Sequence[int | slice], cache: bool, level: int, dims: Sequence[int]
    ) -> np.ndarray:
        sel = tuple(sel)
        dims = tuple(sorted(dims)) if level else ()
        if self.chunks is None:
            if level:
                raise ValueError("levels are read from chunked datasets only")
            return self._read_contiguous(sel)
        if level and level > reducible_levels(self.chunks, dims):
            raise ValueError(f"chunks {self.chunks} cannot be reduced to level {level}")
        if level == 0 and self._chunk_bytes() < SMALL_CHUNK_BYTES:
            self._load_index()
            if not self._index.complete:
                return self._read_small(sel)
        k = 2**level
        norm = self._normalise(sel, level, dims)
        out_shape = [len(range(s.start, s.stop, s.step)) for s in norm if isinstance(s, slice)]
        out = np.empty(out_shape, dtype=self.dtype if level == 0 else np.float32)
        todo: list[tuple[tuple[int, ...], tuple[int, np.ndarray] | None]] = []
        offsets = self._chunk_offsets(sel, level, dims)
        self._locate_many(offsets)
        if self._index.complete:
            # every written chunk is known: the rest of the region is the fill value, placed
            # once here, whatever the number of chunks never written
            out[...] = self.fillvalue if level == 0 else self.fillvalue.astype(np.float32)
            offsets = [o for o in offsets if self._index.entries.get(o) is not None]
        if offsets and level and self.raw and self._chunk_bytes() > piece_bytes():
            raise Unsupported(
                f"{self.key[2]}: chunks of {self._chunk_bytes() / 2**20:,.0f} MB are read in "
                "parts, not reduced to an overview level"
            )
        if offsets and not self.raw and self._chunk_bytes() > max_decode_bytes():
            raise Unsupported(self.too_big)

        def place(block: np.ndarray, offset: tuple[int, ...]) -> None:
            at = tuple(o // k if d in dims else o for d, o in enumerate(offset))
            self._place(out, block, at, norm)

        if level == 0 and self.raw:
            # Unfiltered chunks: the part of a chunk a slice needs is often a small span of it
            # (a plane across the chunk's first axis: 1/64 of a 64^3 chunk), read directly and
            # never cached: the OS page cache already holds these bytes.
            offsets = self._read_parts(offsets, norm, out)
        # A read whose chunks do not fit in half the cache is not stored: the next slice needs
        # the same chunks again, and an LRU cycling through more than it holds never hits (a
        # 2048^2 slice of 64^3 chunks is 1 GB of decoded chunks); it would only hold memory.
        keep = cache and self._fits(len(offsets), level, dims)
        if keep:
            CHUNK_CACHE.claim(_OWNER.get(), [self._chunk_key(o, level, dims) for o in offsets])
        for offset in offsets:
            block = CHUNK_CACHE.get(self._chunk_key(offset, level, dims)) if cache else None
            if block is None:
                todo.append((offset, self._finer(offset, level, dims) if cache and level else None))
            else:
                place(block, offset)
        # A sliding window of decodes: all cores busy, few decoded chunks alive at once (the
        # fewer the larger they are: within half of READ_MEMORY, a decode holding ~3 copies).
        # Small chunks go in batches: one task per 1x1x1 chunk cost more than its decode.
        chunk_bytes = max(1, self._chunk_bytes())
        batch = max(1, min(1024, 2**12 // chunk_bytes))
        window = 2 * DECODE_POOL._max_workers
        window = max(1, min(window, READ_MEMORY // 2 // (3 * chunk_bytes * batch)))
        pending: dict[Future, list] = {}
        jobs = [todo[i : i + batch] for i in range(0, len(todo), batch)]
        jobs.reverse()
        while jobs or pending:
            while jobs and len(pending) < window:
                if not cache:  # a bulk read: let a waiting user's read go first
                    FOREGROUND.step_aside()
                group = jobs.pop()
                pending[DECODE_POOL.submit(self._fetch_batch, group, level, dims)] = group
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                group = pending.pop(fut)
                for (offset, _), block in zip(group, fut.result(), strict=True):
                    if keep and not _is_fill(block):
                        CHUNK_CACHE.put(self._chunk_key(offset, level, dims), block)
                    place(block, offset)
        return out

    def _read_small(self, sel: tuple) -> np.ndarray:
        """``dataset[sel]`` through h5py, for tiny chunks of which many are written.

        Looking a chunk up by its coordinates takes HDF5 a walk over its whole index (21 ms
        each among 2 million 1x1x1 chunks: a 128 x 128 slice took minutes and never drew);
        its own reads find them at once. HDF5 holds ~1.4 KB per chunk a read crosses, so
        those are limited to :func:`max_chunks_per_read` (the slice reader strides to stay
        within it).
        """
        count = math.prod(len(o) for o in self._origins(sel))
        if count > max_chunks_per_read():
            raise Unsupported(self._too_many(count))
        with open_file(self.path) as f, h5_errors(self.path, self.key[2]), H5_OBJECT_LOCK:
            return np.asarray(f[self.key[2]][sel])

    def _too_many(self, count: int) -> str:
        return (
            f"{self.key[2]}: this view crosses {count:,} chunks of "
            f"{' × '.join(str(c) for c in self.chunks)} cells; at most "
            f"{max_chunks_per_read():,} are read at once. Zoom in, or rewrite the data "
            "with larger chunks."
        )

    def _fetch_batch(self, group: list, level: int, dims: tuple) -> list[np.ndarray]:
        """:meth:`_fetch` of each ``(offset, finer)`` of ``group``, in order."""
        return [self._fetch(offset, level, dims, finer) for offset, finer in group]

    def _part(self, offset: tuple[int, ...], norm: list[int | slice]) -> tuple | None:
        """The box of the chunk at ``offset`` that ``norm`` covers, if it is worth reading on
        its own: ``(first, stop, lo, hi)``, its first and stop cells relative to the chunk and
        the span of cells ``[lo, hi)`` between them in the chunk's C order. ``None`` if the
        chunk has filters, if ``norm`` misses it, or if the span is more than
        :data:`PART_FRACTION` of it (read whole then)."""
        if not self.raw:
            return None
        first, stop = [], []
        for s, o, c in zip(norm, offset, self.chunks, strict=True):
            lo, hi = (s, s + 1) if isinstance(s, int) else _overlap(s, o, c)
            if lo >= hi:
                return None
            first.append(lo - o)
            stop.append(hi - o)
        strides = self._strides
        lo = sum(f * st for f, st in zip(first, strides, strict=True))
        hi = sum((e - 1) * st for e, st in zip(stop, strides, strict=True)) + 1
        big = self._chunk_bytes() > piece_bytes()  # never read whole (see _read_parts)
        if hi - lo > math.prod(self.chunks) * PART_FRACTION and not big:
            return None
        return tuple(first), tuple(stop), lo, hi

    def _read_parts(
        self, offsets: list[tuple[int, ...]], norm: list[int | slice], out: np.ndarray
    ) -> list[tuple[int, ...]]:
        """Read into ``out`` the part that ``norm`` needs of each unfiltered chunk for which
        :meth:`_part` says so, each as one positioned read of its span; returns the offsets
        left (to be read whole)."""
        item = self.dtype.itemsize
        left = []
        fh = None
        try:
            for offset in offsets:
                part = self._part(offset, norm)
                if part is None:
                    left.append(offset)
                    continue
                first, stop, lo, hi = part
                shape = tuple(e - f for f, e in zip(first, stop, strict=True))
                loc = self._locate(offset)
                if loc is None:  # never written: the fill value
                    block = np.broadcast_to(self.fillvalue, shape)
                elif (hi - lo) * item > piece_bytes():
                    # a part too long for one read (a big chunk): in pieces, straight into out
                    if fh is None:
                        fh = open(self.path, "rb")  # noqa: SIM115 - closed below
                    local, dst = self._local(offset, norm)
                    _pread_box(fh, loc[0], self.chunks, self.dtype, local, out[dst], self.path)
                    continue
                else:
                    if fh is None:
                        fh = open(self.path, "rb")  # noqa: SIM115 - closed below
                    raw = self._pread(fh, (hi - lo) * item, loc[0] + lo * item, loc[0])
                    block = np.lib.stride_tricks.as_strided(
                        np.frombuffer(raw, dtype=self.dtype),
                        shape=shape,
                        strides=tuple(st * item for st in self._strides),
                        writeable=False,
                    )
                at = tuple(o + f for o, f in zip(offset, first, strict=True))
                self._place(out, block, at, norm)
        finally:
            if fh is not None:
                fh.close()
        return left

    def _place(
        self, out: np.ndarray, block: np.ndarray, offset: tuple[int, ...], norm: list[int | slice]
    ) -> None:
        """Copy the part of one chunk (its first cell at ``offset``) that ``norm`` covers."""
        src, dst = [], []
        for s, o, c in zip(norm, offset, block.shape, strict=True):
            if isinstance(s, int):
                src.append(s - o)
                continue
            first, last = _overlap(s, o, c)
            if first >= last:
                return
            src.append(slice(first - o, last - o, s.step))
            k0 = (first - s.start) // s.step
            dst.append(slice(k0, k0 + len(range(first, last, s.step))))
        out[tuple(dst)] = block[tuple(src)]

    def _local(
        self, offset: tuple[int, ...], norm: list[int | slice]
    ) -> tuple[list[int | slice], tuple[slice, ...]]:
        """``norm`` relative to the chunk at ``offset`` (the cells it has there), and where
        those cells go in the output (as :meth:`_place`)."""
        local: list[int | slice] = []
        dst = []
        for s, o, c in zip(norm, offset, self.chunks, strict=True):
            if isinstance(s, int):
                local.append(s - o)
                continue
            first, last = _overlap(s, o, c)
            local.append(slice(first - o, last - o, s.step))
            k0 = (first - s.start) // s.step
            dst.append(slice(k0, k0 + len(range(first, last, s.step))))
        return local, tuple(dst)

    def _read_contiguous(self, sel: tuple) -> np.ndarray:
        norm = self._normalise(sel)
        out_shape = [len(range(s.start, s.stop, s.step)) for s in norm if isinstance(s, slice)]
        if self._offset is None:  # never written
            return np.full(out_shape, self.fillvalue)
        # Positioned reads of at most piece_bytes() each (a map of the whole dataset would
        # take its size in address space, and every page a stride touches in resident memory)
        out = np.empty(out_shape, dtype=self.dtype)
        with open(self.path, "rb") as fh:
            _pread_box(fh, self._offset, self.shape, self.dtype, norm, out, self.path)
        return out

    def prefetch(self, sel: Sequence[int | slice], level: int = 0, dims: Sequence[int] = ()) -> int:
        """Decode the chunks of ``sel`` (at ``level``, as :meth:`read`) in the background;
        returns how many were queued.

        The decodes go through :data:`PREFETCHER`: one at a time beside the reads, and a newer
        prefetch of this dataset replaces the chunks of an older one still waiting.
        """
        if self.chunks is None:
            return 0
        dims = tuple(sorted(dims)) if level else ()
        try:
            offsets = self._chunk_offsets(sel, level, dims)
        except Unsupported:  # too many chunks to read: none to prefetch
            return 0
        if not self.raw and self._chunk_bytes() > max_decode_bytes():
            return 0
        if not self._fits(len(offsets), level, dims):  # could not stay cached until it is read
            return 0
        if self.raw and level == 0:
            offsets = self._advise(offsets, self._normalise(sel))
        todo = []
        for offset in offsets:
            key = self._chunk_key(offset, level, dims)
            if key in CHUNK_CACHE or key in self._prefetching:
                continue
            self._prefetching.add(key)
            todo.append((offset, level, dims))
        if todo and len(todo) * self._chunk_bytes(level, dims) > CHUNK_CACHE.room():
            # the cache is full of chunks that sessions are looking at: the guesses would not
            # be kept (and decoding them would take the cores from those sessions' reads)
            for job in todo:
                self._prefetching.discard(self._chunk_key(*job))
            todo = []
        PREFETCHER.add(self, todo)
        return len(todo)

    def _advise(
        self, offsets: list[tuple[int, ...]], norm: list[int | slice]
    ) -> list[tuple[int, ...]]:
        """Ask the OS to read ahead the unfiltered chunks that reads of ``norm`` take in part
        (the next slices come from the same chunks); returns the offsets left to decode."""
        left = []
        with open(self.path, "rb") as fh:
            for offset in offsets:
                if self._part(offset, norm) is None:
                    left.append(offset)
                    continue
                loc = self._locate(offset)
                if loc is not None and hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(fh.fileno(), loc[0], loc[1], os.POSIX_FADV_WILLNEED)
        return left

    def _prefetch_one(self, job: tuple[tuple[int, ...], int, tuple]) -> None:
        key = self._chunk_key(*job)
        try:
            if key not in CHUNK_CACHE:
                CHUNK_CACHE.put(key, self._fetch(*job))
        finally:
            self._prefetching.discard(key)


#: A span of at most this many bytes is read whole, however few of its cells are wanted (one
#: read beats many for what the disk reads in a block anyway); a longer one only when at least
#: an eighth of its bytes are wanted, else it is split.
SPARSE_SPAN_BYTES = 1 << 20


def _pread_box(
    fh, base: int, shape: Sequence[int], dtype: np.dtype, sel: list, out: np.ndarray, path: Path
) -> None:
    """``out[...] = A[sel]`` for the C-ordered array ``A`` of ``shape`` stored at byte ``base``
    of ``fh``, by positioned reads of at most :func:`piece_bytes` each.

    ``sel`` holds integers and explicit slices (positive steps). The span of bytes between
    the first and the last cell selected is read at once when it fits a piece and is short
    (:data:`SPARSE_SPAN_BYTES`) or at least an eighth wanted; otherwise the selection is
    halved along its first dim of more than one cell, and each half read so.
    """
    item = dtype.itemsize
    strides = [math.prod(shape[d + 1 :]) for d in range(len(shape))]
    first = [s if isinstance(s, int) else s.start for s in sel]
    last = [
        s if isinstance(s, int) else s.start + (len(range(s.start, s.stop, s.step)) - 1) * s.step
        for s in sel
    ]
    if any(isinstance(s, slice) and len(range(s.start, s.stop, s.step)) == 0 for s in sel):
        return
    lo = sum(f * st for f, st in zip(first, strides, strict=True))
    hi = sum(e * st for e, st in zip(last, strides, strict=True)) + 1
    span = (hi - lo) * item
    cells = math.prod(len(range(s.start, s.stop, s.step)) for s in sel if isinstance(s, slice))
    # One read of the whole span when it fits a piece and is not mostly bytes between the
    # cells wanted (a plane across the rows of a contiguous volume would read the volume)
    if span <= piece_bytes() and (span <= SPARSE_SPAN_BYTES or cells * item * 8 >= span):
        raw = os.pread(fh.fileno(), (hi - lo) * item, base + lo * item)
        if len(raw) != (hi - lo) * item:
            raise OSError(f"{path.name}: data at byte {base} is cut short (truncated file)")
        box = np.lib.stride_tricks.as_strided(
            np.frombuffer(raw, dtype=dtype),
            shape=[e - f + 1 for f, e in zip(first, last, strict=True)],
            strides=[st * item for st in strides],
            writeable=False,
        )
        out[...] = box[tuple(0 if isinstance(s, int) else slice(None, None, s.step) for s in sel)]
        return
    axis = 0  # out's axis of the dim split
    for d, s in enumerate(sel):
        if isinstance(s, int):
            continue
        n = len(range(s.start, s.stop, s.step))
        if n > 1:
            h = n // 2
            mid = s.start + h * s.step
            for part, dst in (
                (slice(s.start, mid, s.step), slice(0, h)),
                (slice(mid, s.stop, s.step), slice(h, n)),
            ):
                sub = list(sel)
                sub[d] = part
                index = (slice(None),) * axis + (dst,)
                _pread_box(fh, base, shape, dtype, sub, out[index], path)
            return
        axis += 1
    raise AssertionError("one cell is longer than a piece")  # pragma: no cover


def _is_fill(block: np.ndarray) -> bool:
    """Whether ``block`` is a fill value broadcast to a chunk's shape (holds no memory)."""
    return block.ndim > 0 and block.size > 1 and not any(block.strides)


def _overlap(s: slice, origin: int, extent: int) -> tuple[int, int]:
    """The first cell that the explicit slice ``s`` selects in ``[origin, origin + extent)``,
    and where its selection there stops (empty if the first is not below the stop)."""
    first = max(s.start, origin)
    if s.step > 1:  # first selected index inside this range
        first = s.start + -(-(first - s.start) // s.step) * s.step
    return first, min(s.stop, origin + extent)


class _Prefetcher:
    """Background chunk decodes: at most ``in_flight`` at a time, the newest request per dataset.

    A prefetch warms a whole chunk layer: for a 1024^2 slice of 64^3 gzip chunks, 256 decodes,
    over a second of zlib on two cores. Queued on :data:`DECODE_POOL` at once, they would sit
    ahead of every read asked for after them, this session's next jump or another session's
    slice alike. Here at most ``in_flight`` prefetch decodes are in the pool at any time, so a
    read waits behind that many chunks at most; a new prefetch of a dataset drops the waiting
    chunks of its older one (whoever asked has moved on); and datasets take turns.
    """

    def __init__(self, in_flight: int = 1) -> None:
        self.in_flight = in_flight
        self._lock = threading.Lock()
        self._pending: OrderedDict[tuple, tuple[DirectReader, deque]] = OrderedDict()
        self._running = 0
        self._pumping = threading.local()

    def add(self, reader: DirectReader, jobs: Sequence[tuple]) -> None:
        """Queue ``(offset, level, dims)`` decodes of ``reader``, replacing its older ones."""
        with self._lock:
            old = self._pending.pop(reader.key, None)
            if old is not None:
                for job in old[1]:
                    reader._prefetching.discard(reader._chunk_key(*job))
            if jobs:
                self._pending[reader.key] = (reader, deque(jobs))
        self._pump()

    def pending(self) -> int:
        """Prefetch decodes waiting or running."""
        with self._lock:
            return self._running + sum(len(q) for _, q in self._pending.values())

    def _take(self) -> tuple[DirectReader, tuple] | None:
        while self._pending:
            key, (reader, jobs) = next(iter(self._pending.items()))
            if not jobs:
                del self._pending[key]
                continue
            self._pending.move_to_end(key)  # datasets take turns
            return reader, jobs.popleft()
        return None

    def _pump(self) -> None:
        if getattr(self._pumping, "active", False):  # a decode finished at once: the loop below
            return  # picks up its successor, without recursing
        self._pumping.active = True
        try:
            while True:
                with self._lock:
                    if self._running >= self.in_flight:
                        return
                    job = self._take()
                    if job is None:
                        return
                    self._running += 1
                reader, item = job
                try:
                    future = DECODE_POOL.submit(reader._prefetch_one, item)
                except RuntimeError:  # the interpreter is shutting down: drop the rest
                    with self._lock:
                        self._running -= 1
                        self._pending.clear()
                    return
                future.add_done_callback(self._finished)
        finally:
            self._pumping.active = False

    def _finished(self, future: Future) -> None:
        with self._lock:
            self._running -= 1
        self._pump()


#: The background decodes of every :meth:`DirectReader.prefetch` in this process.
PREFETCHER = _Prefetcher()


_READERS: OrderedDict[tuple, DirectReader] = OrderedDict()
_READERS_LOCK = threading.Lock()


def reducible_levels(chunks: Sequence[int], dims: Sequence[int], smallest: int = 1) -> int:
    """How many times chunks can be halved along ``dims`` on their own: each side must split
    evenly into ``2**level`` parts of at least ``smallest`` cells."""
    level = 0
    while dims and all(
        chunks[d] % 2 ** (level + 1) == 0 and chunks[d] >> (level + 1) >= smallest for d in dims
    ):
        level += 1
    return level


def direct_reader(path: str | os.PathLike[str], ds: h5py.Dataset) -> DirectReader | None:
    """A :class:`DirectReader` for ``ds`` of ``path``, or None if its layout needs h5py.

    Readers are kept per file version (size and mtime), so a rewritten file gets a new one.
    """
    real = Path(os.path.realpath(path))
    st = real.stat()
    stamp = (st.st_size, st.st_mtime_ns)
    key = (str(real), stamp, ds.name)
    with _READERS_LOCK:
        reader = _READERS.get(key)
        if reader is not None:
            _READERS.move_to_end(key)
            return reader
    if not _supported(ds):
        return None
    reader = DirectReader(real, stamp, ds)
    with _READERS_LOCK:
        _READERS[key] = reader
        while len(_READERS) > 64:
            _READERS.popitem(last=False)
    return reader


def _supported(ds: h5py.Dataset) -> bool:
    if ds.dtype.kind not in "biufc" or ds.dtype.fields is not None or ds.dtype.subdtype:
        return False
    if ds.is_virtual or ds.external or ds.shape is None or 0 in ds.shape:
        return False
    plist = ds.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.CHUNKED:
        codes = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
        return codes <= _SUPPORTED_FILTERS
    if layout == h5py.h5d.CONTIGUOUS:
        return plist.get_nfilters() == 0
    return False  # compact (tiny, h5py is fine) or virtual
