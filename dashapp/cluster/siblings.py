"""One Dask cluster for the processes of one server (``panel serve --num-procs N``).

Each process of a multi-process server has its own :data:`~dashapp.cluster.MANAGER`. Without
this module a cluster started from a page served by one process would be invisible to the
pages of the others, and a second cluster could be started beside it. With it, the
processes of one server form a *group* that shares one cluster:

- the process that starts a cluster **owns** it: it holds an ``flock`` on ``owner.lock`` in
  the group's folder for as long as the cluster runs (the kernel lets go if it dies), and
  writes its ``info()`` to ``cluster.json`` at every change;
- the other processes **follow**: their ``info()`` is the owner's, their ``client`` connects
  to its scheduler, and what their users ask (scale, adapt, stop, replace, wait for workers)
  is sent to the owner as a file in ``requests/``, which the owner's manager loop answers.

The group's folder: ``$DASHAPP_CLUSTER_GROUP`` when set (any processes that set the same
folder share a cluster, e.g. a notebook and a server), else, in a child of ``panel serve
--num-procs``, a folder named after the parent process in the temporary directory; else
there is no group (one process, one cluster, as before). UI-free; used by the manager only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ..errors import OwnerGone, OwnerTimeout

__all__ = ["Siblings", "server_group"]

log = logging.getLogger(__name__)


def server_group() -> Path | None:
    """The group folder of this process (see the module), or None when it serves alone."""
    env = os.environ.get("DASHAPP_CLUSTER_GROUP")
    if env:
        return Path(env)
    try:
        from tornado.process import task_id
    except ImportError:  # pragma: no cover - tornado comes with bokeh
        return None
    if task_id() is None:  # not a forked child of a multi-process server
        return None
    mine = _private_folder(Path(tempfile.gettempdir()) / f"dashapp-{os.getuid()}")
    return None if mine is None else mine / f"server-{os.getppid()}"


def _private_folder(path: Path) -> Path | None:
    """``path`` as a folder only this user can enter, or None (with a warning) if it is not.

    Its name is predictable: another user could make it first, world-writable, and drop
    requests (a cluster with their job script) into it. Then the processes do not share.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    try:
        info = path.lstat()
        if info.st_uid == os.getuid() and os.path.isdir(path) and not os.path.islink(path):
            if info.st_mode & 0o077:
                path.chmod(0o700)
            return path
    except OSError:
        pass
    log.warning("%s is not a private folder of this user: server processes do not share a "
                "cluster", path)  # fmt: skip
    return None


class Siblings:
    """The shared state of one group (see the module); one per manager and process."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._fh: Any = None  # the open owner.lock while this process owns the cluster
        self._seen: tuple[tuple[int, int], dict[str, Any]] | None = None

    # ---------------------------------------------------------------------- owning

    @property
    def owning(self) -> bool:
        """True while this process owns the group's cluster."""
        return self._fh is not None

    def claim(self) -> bool:
        """Become the owner; False if another live process is."""
        if self._fh is not None:
            return True
        (self.folder / "requests").mkdir(parents=True, exist_ok=True)
        fh = open(self.folder / "owner.lock", "a+")  # noqa: SIM115 - held while owning
        for _ in range(10):  # a follower's liveness check holds a shared lock for a moment
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.02)
        else:
            fh.close()
            return False
        self._fh = fh
        for stale in (self.folder / "requests").iterdir():  # from an owner that died
            _unlink(stale)
        return True

    def release(self) -> None:
        """Stop owning: the cluster is gone (stopped or failed)."""
        fh, self._fh = self._fh, None
        if fh is None:
            return
        _unlink(self.folder / "cluster.json")
        try:
            fcntl.flock(fh, fcntl.LOCK_UN)
        finally:
            fh.close()

    def publish(self, info: dict[str, Any]) -> None:
        """The owner's ``info()`` for the followers (atomic; no-op unless owning)."""
        if self._fh is None:
            return
        _write_json(self.folder / "cluster.json", {"owner": os.getpid(), "info": info})

    def take_requests(self) -> list[tuple[str, dict[str, Any]]]:
        """The owner's side: requests waiting, oldest first, each taken once."""
        folder = self.folder / "requests"
        try:
            names = sorted(
                (p for p in folder.iterdir() if p.suffix == ".json"),
                key=lambda p: p.stat().st_mtime_ns,
            )
        except OSError:
            return []
        out = []
        for path in names:
            try:
                request = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being written (written by rename, so rare) or taken already
            _unlink(path)
            out.append((path.stem, request))
        return out

    def answer(self, rid: str, reply: dict[str, Any]) -> None:
        """The owner's side: the reply to request ``rid``."""
        _write_json(self.folder / "requests" / f"{rid}.reply", reply)

    # --------------------------------------------------------------------- following

    def owner_alive(self) -> bool:
        """True if some other process holds the ownership lock."""
        if self._fh is not None:
            return False
        try:
            with open(self.folder / "owner.lock", "a+") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                fcntl.flock(fh, fcntl.LOCK_UN)
                return False
        except OSError:
            return False

    def owner_info(self) -> tuple[dict[str, Any] | None, str | None]:
        """``(info, None)`` when another process runs the group's cluster, ``(None, error)``
        when the one that ran it has died, else ``(None, None)``."""
        if self._fh is not None:
            return None, None
        path = self.folder / "cluster.json"
        try:
            st = path.stat()
        except OSError:
            return None, None
        stamp = (st.st_mtime_ns, st.st_size)
        if self._seen is not None and self._seen[0] == stamp:
            data = self._seen[1]
        else:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                return None, None
            self._seen = (stamp, data)
        if not self.owner_alive():
            return None, (
                f"the server process {data.get('owner')} that ran the "
                f"{data.get('info', {}).get('kind') or ''} cluster has ended, and its cluster "
                "with it: start a new one"
            )
        info = dict(data.get("info") or {})
        info["owner_pid"] = data.get("owner")
        return info, None

    async def request(self, op: str, args: list[Any], timeout: float) -> dict[str, Any]:
        """The follower's side: ask the owner to do ``op(*args)``; its reply (a dict with
        ``info``, or ``error`` and ``type``).

        Raises
        ------
        OwnerGone
            The owner died (or let go of the cluster) without answering.
        TimeoutError
            No answer within ``timeout`` seconds.
        """
        rid = uuid.uuid4().hex
        folder = self.folder / "requests"
        _write_json(folder / f"{rid}.json", {"op": op, "args": args, "from": os.getpid()})
        reply_path = folder / f"{rid}.reply"
        deadline = time.monotonic() + timeout
        gone_since: float | None = None
        while True:
            await asyncio.sleep(0.05)
            if reply_path.exists():
                try:
                    reply = json.loads(reply_path.read_text())
                except (OSError, ValueError):
                    continue
                _unlink(reply_path)
                return reply
            now = time.monotonic()
            if not self.owner_alive():  # a stop lets go of the lock just before answering
                gone_since = gone_since if gone_since is not None else now
                if now - gone_since > 2:
                    _unlink(folder / f"{rid}.json")
                    raise OwnerGone("the server process that ran the cluster has ended")
            else:
                gone_since = None
            if now > deadline:
                _unlink(folder / f"{rid}.json")
                raise OwnerTimeout(f"the server process that runs the cluster did not answer "
                                   f"{op} within {timeout:g} s")  # fmt: skip


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
