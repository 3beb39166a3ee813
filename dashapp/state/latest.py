"""Latest-wins execution: run slow jobs one at a time and keep only the newest waiting one.

A slider dragged across 200 slices fires 200 requests in a second. Queueing them would leave the
picture seconds behind the hand; :class:`LatestOnly` runs one job, and while it runs remembers
only the most recent request, so the work done is bounded and the final position always wins.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

__all__ = ["EXECUTOR", "LatestOnly"]

#: Shared worker threads for slice reads of every session in this process. Each session runs at
#: most one read at a time (:class:`LatestOnly`), so the pool needs a thread per session that
#: is reading, or one session's slow read (a huge slice, a stalled filesystem) queues the quick
#: reads of others behind it; threads are started only when needed. CPU work is shared out
#: below: chunk decoding has its own pool (``data.chunks.DECODE_POOL``), a few chunks per
#: read in flight at a time.
EXECUTOR = ThreadPoolExecutor(max_workers=64, thread_name_prefix="dashapp-read")


class LatestOnly:
    """Run ``fn(*args)`` jobs on an executor, at most one at a time, newest request first.

    Parameters
    ----------
    done
        Called in the worker thread as ``done(seq, result, error)`` after each job that ran.
        ``seq`` increases with every :meth:`submit`; a job whose ``seq`` is below
        :attr:`latest` was superseded while it ran.
    executor
        Where jobs run (a shared thread pool by default).
    """

    def __init__(
        self,
        done: Callable[[int, Any, BaseException | None], None],
        executor: Executor | None = None,
    ) -> None:
        self._done = done
        self._executor = executor or EXECUTOR
        self._lock = threading.Lock()
        self._pending: tuple[int, Callable[..., Any], tuple[Any, ...]] | None = None
        self._running = False
        self._idle = threading.Event()
        self._idle.set()
        self.latest = 0
        #: Requests replaced by a newer one before they started (never run).
        self.dropped = 0
        #: Jobs run.
        self.ran = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> int:
        """Ask for ``fn(*args)``; returns the request's sequence number."""
        with self._lock:
            self.latest += 1
            if self._pending is not None:
                self.dropped += 1
            self._pending = (self.latest, fn, args)
            start = not self._running
            if start:
                self._running = True
                self._idle.clear()
        if start:
            self._executor.submit(self._drain)
        return self.latest

    def _drain(self) -> None:
        while True:
            with self._lock:
                job = self._pending
                self._pending = None
                if job is None:
                    self._running = False
                    self._idle.set()
                    return
            seq, fn, args = job
            result, error = None, None
            try:
                result = fn(*args)
            except BaseException as exc:  # delivered to the caller, never lost in the pool
                error = exc
            self.ran += 1
            try:
                self._done(seq, result, error)
            except Exception:
                import logging

                logging.getLogger(__name__).exception("latest-wins callback failed")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no job is running or waiting (for tests and scripts)."""
        return self._idle.wait(timeout)
