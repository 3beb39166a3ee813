"""Freed buffers go back to the operating system, so a long-running server does not keep them.

glibc's ``malloc`` serves requests of 128 KB and more with ``mmap`` (returned on ``free``) until
the first such buffer is freed; from then on it raises that threshold to the freed size, up to
32 MB. A server reading chunks frees megabytes at a time, so soon every decoded chunk (1 MB), a
reduced one in the chunk cache (256 KB), a pyramid build's level arrays (16 MB) and the pictures
(1-4 MB) come from malloc's per-thread arenas instead. The long-lived cache entries then sit
among freed space that the arenas keep: measured on the 2048^2 x 1920 volume while its pyramid
was built, the server held 1.3 GB of anonymous memory in a dozen 64 MB arenas with 512 MB of it
live in the cache (docs/performance.md).

Two settings, both made by the server for each page (``serve_slicer_page``):

- :func:`return_freed_buffers` fixes the threshold (``mallopt(M_MMAP_THRESHOLD)``, default
  4 MB), which also stops the raising, and keeps glibc's trimming of the arenas' tops at free;
  buffers from the threshold up are mapped one by one and unmapped when freed;
- :func:`trim_freed_buffers` calls ``malloc_trim(0)`` every few seconds (default 5), which
  gives back the free pages inside the arenas.

A 128 KB threshold alone gives memory back as well, but maps and unmaps every chunk and
picture: 20-25 % more server CPU per picture with ten sessions dragging (the page faults and
``munmap`` of each buffer); the 4 MB threshold with trims costs about what glibc's own
behaviour does, and holds about what the 128 KB one does (benchmarks in docs/performance.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys
import threading

from .. import settings

__all__ = ["return_freed_buffers", "trim_freed_buffers"]

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def return_freed_buffers(threshold_kb: int | None = None) -> int:
    """Serve every ``malloc`` of ``threshold_kb`` or more with its own mapping, from now on.

    The threshold comes from ``$DASHAPP_MMAP_THRESHOLD_KB`` if not given (default 4096; 0
    leaves glibc's adaptive threshold alone). Returns the threshold set in bytes, or 0 if
    none was set (switched off, or not glibc: musl and macOS have no such setting).
    """
    if threshold_kb is None:
        threshold_kb = settings.current().mmap_threshold_kb
    if threshold_kb <= 0 or not sys.platform.startswith("linux"):
        return 0
    mallopt = _mallopt()
    if mallopt is None:
        return 0
    nbytes = threshold_kb * 1024
    return nbytes if mallopt(_M_MMAP_THRESHOLD, nbytes) == 1 else 0


_trimmer: tuple[int, float, threading.Event] | None = None  # (pid, interval, stop)
_trimmer_lock = threading.Lock()


def trim_freed_buffers(interval_s: float | None = None) -> float:
    """Give the memory freed into malloc's arenas back to the OS every ``interval_s`` seconds.

    A daemon thread calls glibc's ``malloc_trim(0)``, which releases the free pages inside
    every arena (not only at their tops; those go at ``free`` once the mmap threshold is
    fixed). The memory freed between two trims stays until the next. The interval comes from
    ``$DASHAPP_MALLOC_TRIM_S`` if not given (default 5; 0: no trimming). Calling it again
    changes the interval; once per process (a forked child starts its own). Returns the
    interval in force (0 if none: switched off, or not glibc).
    """
    global _trimmer
    if interval_s is None:
        interval_s = settings.current().malloc_trim_s
    with _trimmer_lock:
        current = _trimmer if _trimmer is not None and _trimmer[0] == os.getpid() else None
        if current is not None and current[1] == interval_s:
            return interval_s
        if current is not None:
            current[2].set()  # stop the old thread
            _trimmer = None
        trim = _malloc_trim() if sys.platform.startswith("linux") else None
        if interval_s <= 0 or trim is None:
            return 0.0
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(interval_s):
                trim(0)

        threading.Thread(target=run, name="dashapp-malloc-trim", daemon=True).start()
        _trimmer = (os.getpid(), interval_s, stop)
        return interval_s


@functools.cache
def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@functools.cache
def _malloc_trim():
    """libc's ``malloc_trim``, or None."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


@functools.cache
def _mallopt():
    """libc's ``mallopt``, looked up once (``find_library`` runs ``ldconfig``; this is called
    for every page the server builds)."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt
