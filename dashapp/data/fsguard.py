"""Filesystem calls with a deadline: a hung mount costs one session a sentence, not the server.

A parallel filesystem that stops answering (a Lustre OST down, an NFS server gone) leaves
``stat``, ``open`` and ``read`` waiting in the kernel, uninterruptibly, for minutes. Run on a
server's event loop, one such call freezes every session. :func:`bounded` runs the call in a
worker thread and waits at most :func:`fs_timeout` seconds (``DASHAPP_FS_TIMEOUT``, default 10)
before raising :class:`~dashapp.data.errors.FilesystemTimeout` with "the filesystem did not
answer in N s".

The thread of a hung call cannot be stopped; it stays blocked until the kernel lets go. So that
such threads cannot pile up:

- a call on a path (``key``) with a call still hung on it, or on a folder above it, is refused
  at once, with the same sentence, instead of starting another thread that would hang the
  same way;
- at most :data:`MAX_HUNG` hung calls are kept; beyond that every guarded call is refused at once
  until one of them returns.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

from .. import settings
from .errors import FilesystemTimeout

__all__ = ["MAX_HUNG", "bounded", "fs_timeout", "hung_calls"]

T = TypeVar("T")

#: Hung calls (threads blocked in the kernel) kept at most; more are refused without a thread.
MAX_HUNG = 16
#: Worker threads (started only when needed): room for the hung calls plus one call for each
#: of the 64 slice-read threads of ``state.latest.EXECUTOR``, so that healthy calls do not
#: queue behind each other until their deadline passes.
_POOL = ThreadPoolExecutor(max_workers=MAX_HUNG + 64, thread_name_prefix="dashapp-fs")
_LOCK = threading.Lock()
#: key -> number of calls on it that outlived their deadline and have not returned yet.
_HUNG: dict[str, int] = {}


def fs_timeout() -> float:
    """Seconds a filesystem call may take before the user is told (``DASHAPP_FS_TIMEOUT``)."""
    return settings.current().fs_timeout


def hung_calls() -> dict[str, int]:
    """Paths with calls still blocked past their deadline, and how many (for tests and logs)."""
    with _LOCK:
        return dict(_HUNG)


def _hung_at(key: str) -> bool:
    """A call on ``key`` or on a folder above it is hung (a hung folder: a hung mount)."""
    while True:
        if _HUNG.get(key):
            return True
        parent = os.path.dirname(key)
        if parent == key or not parent:
            return False
        key = parent


#: A call still using CPU at its deadline is working, not waiting on a filesystem (decoding,
#: aggregating, numba compiling its kernels on a loaded machine): it gets more time, up to this
#: many deadlines in all, before it is called hung.
MAX_BUSY_DEADLINES = 12
#: CPU seconds a call must have used over a deadline's span to count as working (per second).
_BUSY_SHARE = 0.05


def _thread_cpu(tid: int | None) -> float | None:
    """CPU seconds thread ``tid`` of this process has used (Linux), or None."""
    if tid is None:
        return None
    try:
        with open(f"/proc/self/task/{tid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _sentence(name: str, timeout: float, what: str) -> str:
    doing = f" while {what}" if what else ""
    return (
        f"The filesystem did not answer in {timeout:g} s{doing} ({name}). The folder may be on "
        "a network filesystem that is down or overloaded; try again later."
    )


def _wait(future: Future[T], state: dict[str, Any], timeout: float) -> T:
    """``future``'s result within ``timeout``, or longer while its thread keeps using CPU.

    A hung filesystem leaves the call blocked in the kernel, using no CPU; a call that is
    computing (a first read compiling datashader's kernels on a loaded machine took over 10 s)
    is not what the deadline is for.
    """
    for _ in range(MAX_BUSY_DEADLINES - 1):
        try:
            return future.result(timeout)
        except FutureTimeout:
            used, now = state["cpu"], _thread_cpu(state["tid"])
            if used is None or now is None or now - used < _BUSY_SHARE * timeout:
                raise
            state["cpu"] = now
    return future.result(timeout)


def bounded(
    fn: Callable[..., T],
    *args: Any,
    key: str | os.PathLike[str] | None = None,
    what: str = "",
    timeout: float | None = None,
) -> T:
    """``fn(*args)`` in a worker thread, waiting at most ``timeout`` seconds for it.

    Parameters
    ----------
    fn, args
        The filesystem work (a listing, a stat, an HDF5 read); its exceptions are raised here.
    key
        The file or folder the call touches. While an earlier call on it is still hung, new
        calls are refused at once.
    what
        What the call does, in words, for the message ("listing the folder").
    timeout
        Seconds to wait (default :func:`fs_timeout`).

    Raises
    ------
    FilesystemTimeout
        If the call did not return in time, or an earlier call on ``key`` is still hung, or
        :data:`MAX_HUNG` calls are hung.
    """
    timeout = fs_timeout() if timeout is None else timeout
    k = os.fspath(key) if key is not None else ""
    name = (Path(k).name or k) if k else "a file"
    with _LOCK:
        if k and _hung_at(k):
            raise FilesystemTimeout(_sentence(name, timeout, what))
        if sum(_HUNG.values()) >= MAX_HUNG:
            raise FilesystemTimeout(
                f"The filesystem did not answer in {timeout:g} s: {MAX_HUNG} earlier requests "
                "are still waiting for it, so dashapp does not send more until they return."
            )
    if threading.current_thread().name.startswith("dashapp-fs"):
        return fn(*args)  # already guarded by the caller's deadline: no thread per level
    state: dict[str, Any] = {"late": False, "returned": False, "tid": None, "cpu": None}

    def run() -> T:
        state["tid"] = threading.get_native_id()
        state["cpu"] = _thread_cpu(state["tid"])
        try:
            return fn(*args)
        finally:
            with _LOCK:
                state["returned"] = True
                if state["late"]:  # it hung, and has now returned: let calls on its key go
                    _HUNG[k] -= 1
                    if not _HUNG[k]:
                        del _HUNG[k]

    # In the caller's context: context variables (whose read this is) travel with the call.
    future: Future[T] = _POOL.submit(contextvars.copy_context().run, run)
    try:
        return _wait(future, state, timeout)
    except FutureTimeout:
        with _LOCK:
            if not future.cancel() and not state["returned"]:
                state["late"] = True
                _HUNG[k] = _HUNG.get(k, 0) + 1
        if future.done() and not future.cancelled():
            return future.result()  # it answered just now
        raise FilesystemTimeout(_sentence(name, timeout, what)) from None
