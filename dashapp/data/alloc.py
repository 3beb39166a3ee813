"""Freed buffers go back to the operating system, so a long-running server does not keep them.

glibc's ``malloc`` serves requests of 128 KB and more with ``mmap`` (returned on ``free``) until
the first such buffer is freed; from then on it raises that threshold to the freed size, up to
32 MB. A server reading chunks frees megabytes at a time, so soon every decoded chunk (1 MB), a
reduced one in the chunk cache (256 KB), a pyramid build's level arrays (16 MB) and the pictures
(4 MB) come from malloc's per-thread arenas instead. The long-lived cache entries then sit among
freed space that the arenas keep: measured on the 2048^2 x 1920 volume while its pyramid was
built, the server held 1.3 GB of anonymous memory in a dozen 64 MB arenas with 512 MB of it
live in the cache (docs/performance.md).

:func:`return_freed_buffers` fixes the threshold (``mallopt(M_MMAP_THRESHOLD)``), which also
stops the raising: buffers from 128 KB up are mapped one by one and unmapped when freed. The
cost is a system call and page faults per buffer, small next to decoding a chunk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys

__all__ = ["return_freed_buffers"]

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_DEFAULT_KB = 128


def return_freed_buffers(threshold_kb: int | None = None) -> int:
    """Serve every ``malloc`` of ``threshold_kb`` or more with its own mapping, from now on.

    The threshold comes from ``$DASHAPP_MMAP_THRESHOLD_KB`` if not given (default 128; 0 leaves
    glibc's adaptive threshold alone). Returns the threshold set in bytes, or 0 if none was set
    (switched off, or not glibc: musl and macOS have no such setting).
    """
    if threshold_kb is None:
        try:
            threshold_kb = int(os.environ.get("DASHAPP_MMAP_THRESHOLD_KB", _DEFAULT_KB))
        except ValueError:
            log.warning("DASHAPP_MMAP_THRESHOLD_KB is not a number; using %d", _DEFAULT_KB)
            threshold_kb = _DEFAULT_KB
    if threshold_kb <= 0 or not sys.platform.startswith("linux"):
        return 0
    mallopt = _mallopt()
    if mallopt is None:
        return 0
    nbytes = threshold_kb * 1024
    return nbytes if mallopt(_M_MMAP_THRESHOLD, nbytes) == 1 else 0


@functools.cache
def _mallopt():
    """libc's ``mallopt``, looked up once (``find_library`` runs ``ldconfig``; this is called
    for every page the server builds)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt
