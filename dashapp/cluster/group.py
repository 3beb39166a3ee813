"""Sharing one cluster between the processes of a server (``panel serve --num-procs N``).

:class:`GroupLink` is the manager's side of :class:`~dashapp.cluster.siblings.Siblings`: the
process that starts the group's cluster claims it, publishes its ``info()`` and answers the
others' requests; the others show that ``info()`` and forward their requests
(:meth:`GroupLink.forward`), raising the owner's error here.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import DashappError
from .errors import ClusterError, ClusterTimeout, OwnerGone
from .report import Report, reason
from .siblings import Siblings, server_group

__all__ = ["GroupLink", "op_timeout"]

log = logging.getLogger("dashapp.cluster.manager")

Op = Callable[..., Coroutine[Any, Any, dict[str, Any]]]


def op_timeout(op: str) -> float:
    """Seconds a process waits for the owner of the cluster to do ``op``."""
    from .config import setting_seconds

    stop = setting_seconds("stop-timeout", 60)
    return {"start": 2 * stop + 300, "stop": stop + 60}.get(op, stop + 120)


class GroupLink:
    """This process's place in its server's group (none without a group).

    Parameters
    ----------
    group : path-like or None
        The group's folder; None: :func:`~dashapp.cluster.siblings.server_group` decides.
    report : Report
        Where requests from other processes are noted.
    info : callable
        The manager's ``info()`` (published while owning).
    ops : dict
        Operation name -> coroutine function doing it here (the owner's answers).
    """

    def __init__(
        self,
        group: Any,
        report: Report,
        info: Callable[[], dict[str, Any]],
        ops: dict[str, Op],
    ) -> None:
        self._arg = group
        self._group: tuple[int, Siblings | None] | None = None  # (pid it is for, group)
        self.report = report
        self.info = info
        self.ops = ops
        self._serve_task: asyncio.Task | None = None
        self._answering: set[asyncio.Task] = set()

    def siblings(self) -> Siblings | None:
        """This process's group, decided once per process (a server may import dashapp
        before it forks its children)."""
        pid = os.getpid()
        if self._group is None or self._group[0] != pid:
            folder = self._arg if self._arg is not None else server_group()
            self._group = (pid, Siblings(folder) if folder else None)
        return self._group[1]

    def their_cluster(self) -> dict[str, Any] | None:
        """The ``info()`` of the cluster another process of the group runs, else None."""
        sib = self.siblings()
        return sib.owner_info()[0] if sib is not None else None

    def claim(self) -> bool:
        """Own the group's cluster (True without a group); start answering the others."""
        sib = self.siblings()
        if sib is None or sib.owning:
            return True
        if not sib.claim():
            return False
        self._serve_task = asyncio.ensure_future(self._serve(sib))
        return True

    def release(self) -> None:
        """Let go of the group's cluster (it stopped or failed)."""
        sib = self.siblings()
        if sib is None or not sib.owning:
            return
        sib.release()
        task, self._serve_task = self._serve_task, None
        if task is not None:
            task.cancel()

    def share(self) -> None:
        """Publish ``info()`` to the group while owning its cluster."""
        group = self._group
        sib = group[1] if group is not None and group[0] == os.getpid() else None
        if sib is not None and sib.owning:
            try:
                sib.publish(self.info())
            except OSError:
                log.warning("could not publish the cluster state", exc_info=True)

    async def forward(self, op: str, args: list[Any], timeout: float) -> dict[str, Any]:
        """Have the owning process do ``op``; its answer, or its error raised here."""
        sib = self.siblings()
        assert sib is not None
        try:
            reply = await sib.request(op, args, timeout)
        except (OwnerGone, TimeoutError) as exc:
            raise ClusterError(str(exc)) from exc
        if "error" in reply:
            kind = ClusterTimeout if reply.get("type") == "TimeoutError" else ClusterError
            raise kind(reply["error"])
        return self.info()

    async def _serve(self, sib: Siblings) -> None:
        """The owner's side: answer the group's requests while owning."""
        while sib.owning:
            for rid, request in sib.take_requests():
                task = asyncio.ensure_future(self._answer(sib, rid, request))
                self._answering.add(task)  # (a task nobody refers to may be collected)
                task.add_done_callback(self._answering.discard)
            await asyncio.sleep(0.05)

    async def _answer(self, sib: Siblings, rid: str, request: dict[str, Any]) -> None:
        op, args = request.get("op"), list(request.get("args") or [])
        try:
            if op not in self.ops:
                raise ClusterError(f"unknown cluster request {op!r}")
            self.report.event(f"{op} asked by server process {request.get('from')}")
            reply: dict[str, Any] = {"info": await self.ops[op](*args)}
        except TimeoutError as exc:
            reply = {"error": str(exc), "type": "TimeoutError"}
        except DashappError as exc:
            reply = {"error": str(exc), "type": "ClusterError"}
        except Exception as exc:  # last line of defence: the asking process must get an answer
            log.warning("cluster request %s failed", op, exc_info=True)
            reply = {"error": reason(exc), "type": "ClusterError"}
        sib.answer(rid, reply)
