"""The cluster manager's own event loop, in a thread of its own.

The scheduler of a batch-queue cluster lives in the server's process and must not stall (or
be stalled by) the web server's loop; :class:`ManagerLoop` runs the manager's coroutines on a
loop of their own, awaitable from any other loop (several Panel sessions, a notebook).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["ManagerLoop"]

_T = TypeVar("_T")


class ManagerLoop:
    """An event loop running in a daemon thread, started on first use."""

    def __init__(self, name: str = "dashapp-cluster-manager") -> None:
        self.name = name
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.op_lock: asyncio.Lock | None = None  # one operation at a time (on the loop)

    @property
    def alive(self) -> bool:
        """True while the loop's thread runs."""
        return self.loop is not None and self.thread is not None and self.thread.is_alive()

    def in_thread(self) -> bool:
        """True when called from the loop's own thread."""
        return threading.current_thread() is self.thread

    def ensure(self) -> asyncio.AbstractEventLoop:
        """The running loop, started if needed."""
        with self._lock:
            if self.alive:
                assert self.loop is not None
                return self.loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=run, name=self.name, daemon=True)
            thread.start()
            ready.wait()
            self.loop, self.thread = loop, thread
            self.op_lock = asyncio.Lock()
            return loop

    async def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on this loop and await it from the caller's loop."""
        loop = self.ensure()
        if asyncio.get_running_loop() is loop:
            return await coro
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        # shield: a closed browser tab must not cancel a half-done start or stop
        return await asyncio.shield(asyncio.wrap_future(future))

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float) -> _T:
        """Run ``coro`` on this loop from another thread, blocking until it is done."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def stop(self) -> None:
        """Stop the loop and its thread."""
        loop, thread = self.loop, self.thread
        if loop is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        with self._lock:
            self.loop = self.thread = self.op_lock = None
