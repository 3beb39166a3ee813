"""Watching files and folders for changes: inotify where it works, polling where it cannot.

A simulation writing its output on the same machine is seen through inotify (``watchfiles``'s
native backend). On network filesystems (Lustre, GPFS, NFS, ...) inotify only sees writes made
by this machine, not by the compute nodes where the simulation runs, so those are polled.
:func:`watch_mode` decides per path (``DASHAPP_WATCH=auto|inotify|poll`` overrides, and
``DASHAPP_POLL_INTERVAL`` sets the polling period in seconds, default 2).

One :class:`WatchHub` per process (:data:`WATCHES`) watches the folders its subscribers asked
for, with one thread per watch mode, and calls every subscriber whose paths changed. Callbacks
run in the watcher thread: a UI must hand them over to its own event loop.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .. import settings

__all__ = [
    "NETWORK_FILESYSTEMS",
    "WATCHES",
    "WatchHub",
    "WatchMode",
    "filesystem_type",
    "watch_mode",
]

log = logging.getLogger(__name__)

#: Filesystem types where inotify does not see writes from other machines.
NETWORK_FILESYSTEMS = {
    "nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "beegfs", "ceph", "cephfs",
    "panfs", "wekafs", "glusterfs", "fuse.sshfs", "fuse.glusterfs", "fuse.ceph", "9p", "afs",
    "orangefs", "pvfs2", "fuse.s3fs", "fuse.rclone",
}  # fmt: skip


@dataclass(frozen=True)
class WatchMode:
    """How a path is watched: ``inotify`` or ``poll`` every ``interval`` seconds, and why."""

    mode: str
    interval: float
    reason: str

    @property
    def label(self) -> str:
        """For the UI: ``"inotify"`` or ``"polling every 2 s"``."""
        return "inotify" if self.mode == "inotify" else f"polling every {self.interval:g} s"


def filesystem_type(path: str | os.PathLike[str]) -> str:
    """The type of the filesystem ``path`` is on, from ``/proc/mounts`` ("" if unknown)."""
    real = os.path.realpath(path)
    best, best_type = "", ""
    try:
        with open("/proc/mounts") as fh:
            mounts = fh.read().splitlines()
    except OSError:
        return ""
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
            best, best_type = mount, parts[2]
    return best_type


def _interval() -> float:
    return settings.current().poll_interval


def watch_mode(path: str | os.PathLike[str]) -> WatchMode:
    """Choose inotify or polling for ``path`` (see the module docstring)."""
    forced = settings.current().watch
    interval = _interval()
    if forced == "poll":
        return WatchMode("poll", interval, "DASHAPP_WATCH=poll")
    if forced == "inotify":
        return WatchMode("inotify", interval, "DASHAPP_WATCH=inotify")
    fs = filesystem_type(path)
    if fs in NETWORK_FILESYSTEMS or (fs.startswith("fuse.") and fs != "fuse.portal"):
        return WatchMode(
            "poll",
            interval,
            f"{fs} is a network filesystem: inotify misses writes from other nodes",
        )
    return WatchMode("inotify", interval, f"local filesystem ({fs or 'unknown'})")


@dataclass
class _Subscription:
    paths: frozenset[Path]
    callback: Callable[[set[Path]], None]
    mode: WatchMode
    #: The folders watched for ``paths`` (a folder itself, a file's parent), found once.
    folders: frozenset[Path] = frozenset()


def _where(paths: Iterable[str | os.PathLike[str]]) -> tuple[frozenset[Path], frozenset[Path]]:
    real = frozenset(Path(os.path.realpath(p)) for p in paths)
    return real, frozenset(p if p.is_dir() else p.parent for p in real)


class _Loop:
    """One watchfiles loop over a set of folders, restarted when the set changes."""

    def __init__(self, hub: WatchHub, mode: WatchMode) -> None:
        self.hub = hub
        self.mode = mode
        self.folders: frozenset[Path] = frozenset()
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()

    def set_folders(self, folders: frozenset[Path]) -> None:
        if folders == self.folders and self.thread is not None and self.thread.is_alive():
            return
        self.halt()
        self.folders = folders
        if not folders:
            return
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._run,
            args=(folders, self.stop),
            daemon=True,
            name=f"dashapp-watch-{self.mode.mode}",
        )
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            # Short: this runs on a server's event loop, and a poll stuck on a hung mount
            # must not hold it (the old thread ends by itself once the filesystem answers).
            self.thread.join(timeout=1)
        self.thread = None

    def _run(self, folders: frozenset[Path], stop: threading.Event) -> None:
        import watchfiles

        existing = [str(f) for f in folders if f.is_dir()]
        if not existing:
            return
        poll = self.mode.mode == "poll"
        try:
            for changes in watchfiles.watch(
                *existing,
                watch_filter=None,
                # debounce caps how long changes are grouped: a writer flushing every 100 ms
                # must not delay the picture by watchfiles' default 1.6 s
                debounce=200,
                step=50,
                stop_event=stop,
                force_polling=poll,
                poll_delay_ms=int(self.mode.interval * 1000),
                recursive=False,
                raise_interrupt=False,
                ignore_permission_denied=True,
                rust_timeout=1000,
                yield_on_timeout=False,
            ):
                self.hub._dispatch({Path(p) for _change, p in changes})
        except Exception as exc:  # a vanished folder, a full inotify table: say so, don't die
            log.warning("watching %s stopped: %s", ", ".join(existing), exc)


class WatchHub:
    """Process-wide watcher: subscribers name files or folders and get called on changes."""

    def __init__(self) -> None:
        self._subs: dict[int, _Subscription] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._loops: dict[tuple[str, float], _Loop] = {}
        self._restart_lock = threading.Lock()

    def subscribe(
        self, paths: Iterable[str | os.PathLike[str]], callback: Callable[[set[Path]], None]
    ) -> int:
        """Call ``callback(changed_paths)`` when any of ``paths`` (files or folders) changes.

        A file is watched through its folder (so it is seen when it is replaced, deleted or
        created again); a folder's own entries count as its changes. Returns a handle for
        :meth:`unsubscribe`. Raises :class:`~dashapp.data.errors.FilesystemTimeout` if the
        filesystem does not answer.
        """
        from .fsguard import bounded

        paths = list(paths)

        def where() -> tuple[frozenset[Path], frozenset[Path], WatchMode]:
            real, folders = _where(paths)
            return real, folders, watch_mode(next(iter(real), Path(".")))

        # stat and realpath: bounded, as subscribers call this from a server's event loop
        key = os.fspath(paths[0]) if paths else None
        real, folders, mode = bounded(where, key=key, what="watching it")
        sub = _Subscription(real, callback, mode, folders)
        with self._lock:
            sid = next(self._ids)
            self._subs[sid] = sub
        self._restart()
        return sid

    def mode_of(self, sid: int) -> WatchMode | None:
        """The watch mode of a subscription."""
        sub = self._subs.get(sid)
        return sub.mode if sub else None

    def unsubscribe(self, sid: int | None) -> None:
        """Stop calling a subscriber."""
        if sid is None:
            return
        with self._lock:
            self._subs.pop(sid, None)
        self._restart()

    def _restart(self) -> None:
        # Threads are stopped and started outside self._lock: a watcher thread may be waiting
        # for it in _dispatch while we join it.
        with self._restart_lock:
            with self._lock:
                wanted: dict[tuple[str, float], set[Path]] = {}
                modes: dict[tuple[str, float], WatchMode] = {}
                for sub in self._subs.values():
                    key = (sub.mode.mode, sub.mode.interval)
                    modes[key] = sub.mode
                    wanted.setdefault(key, set()).update(sub.folders)
            for key in list(self._loops):
                if key not in wanted:
                    self._loops.pop(key).halt()
            for key, folders in wanted.items():
                loop = self._loops.get(key)
                if loop is None:
                    loop = self._loops[key] = _Loop(self, modes[key])
                loop.set_folders(frozenset(folders))

    def _dispatch(self, changed: set[Path]) -> None:
        with self._lock:
            subs = list(self._subs.values())
        for sub in subs:
            hits = {p for p in changed if p in sub.paths or p.parent in sub.paths}
            if hits:
                try:
                    sub.callback(hits)
                except Exception:
                    log.exception("file watch callback failed")

    def close(self) -> None:
        """Stop every watcher thread."""
        with self._lock:
            self._subs.clear()
        self._restart()


#: The process-wide watch hub.
WATCHES = WatchHub()
