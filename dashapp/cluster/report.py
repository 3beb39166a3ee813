"""What the cluster manager tells: its status, errors and events, and the dict ``info()`` is.

:class:`Report` is written on the manager's loop and read from any thread (a Panel session,
a notebook): every read is a copy taken under its lock, so ``info()`` is cheap and safe.
The small helpers turn library exceptions and counts into the words shown to a person.
"""

from __future__ import annotations

import collections
import copy
import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import slurm

__all__ = ["STATUSES", "Report", "natural", "plural", "reason"]

log = logging.getLogger("dashapp.cluster.manager")

#: The values of ``info()["status"]``.
STATUSES = ("none", "starting", "running", "stopping", "failed")


class Report:
    """The manager's status, its errors and events (newest last), and the published view.

    Parameters
    ----------
    on_change : callable, optional
        Called after each event and each published view (the manager shares its ``info()``
        with the other processes of its server there).
    """

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.status = "none"
        self.on_change = on_change
        self._lock = threading.Lock()
        self._errors: list[str] = []
        self._events: collections.deque[dict[str, str]] = collections.deque(maxlen=200)
        self._view: dict[str, Any] = {}

    def clear(self) -> None:
        """Forget the errors and events (a new cluster starts)."""
        with self._lock:
            self._errors = []
            self._events.clear()

    def event(self, text: str) -> None:
        """Add an event (a repeated message is kept once, with its last time)."""
        now = datetime.now().isoformat(timespec="seconds")
        with self._lock:
            if self._events and self._events[-1]["text"] == text:
                self._events[-1]["time"] = now
            else:
                self._events.append({"time": now, "text": text})
        log.info("%s", text)
        self._changed()

    def error(self, text: str) -> None:
        """Add an error (shown until the cluster is replaced or :meth:`withdraw` is called)."""
        with self._lock:
            if text not in self._errors:
                self._errors.append(text)
        self.event(text)

    def withdraw(self, text: str) -> None:
        """Take back an error that no longer stands."""
        with self._lock:
            if text in self._errors:
                self._errors.remove(text)

    @property
    def errors(self) -> list[str]:
        """A copy of the standing errors."""
        with self._lock:
            return list(self._errors)

    def publish(self, view: dict[str, Any]) -> None:
        """Set the JSON-safe dict that :meth:`snapshot` returns (with errors and events)."""
        with self._lock:
            self._view = view
        self._changed()

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the published view, with ``errors`` and ``events``."""
        with self._lock:
            view = copy.deepcopy(self._view)
            view["errors"] = list(self._errors)
            view["events"] = [dict(e) for e in self._events]
        return view

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


def reason(exc: BaseException | None) -> str:
    """The most telling message in an exception chain (distributed wraps them)."""
    messages: list[str] = []
    while exc is not None:
        text = str(exc).strip()
        if text and text not in messages:
            messages.append(text)
        exc = exc.__cause__ or exc.__context__
    if not messages:
        return "unknown error"
    return slurm.sbatch_error(messages[-1]) if "stderr:" in messages[-1] else messages[-1]


def plural(n: int, word: str) -> str:
    """``"1 job"``, ``"2 jobs"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def natural(name: str) -> tuple:
    """Sort key: ``"w-10"`` after ``"w-9"``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(name)))
