"""The provenance record: what happened in a workspace, appended as it happens.

A workspace is a folder holding

``record.jsonl``
    one :class:`Event` per line, JSON, append-only;
``attachments/``
    the files events point to: snapshot PNGs, images attached to notes.

Which folder: ``$DASHAPP_WORKSPACE`` when set; else, for a server, one workspace per served
root (``<cache>/workspaces/<name>-<hash>``, :func:`default_workspace`), so that two servers
sharing a cache folder keep two timelines; else (scripts, the CLI) ``<cache>/workspace``.
Events the app records carry the root they were seen under (``data["root"]``), so a timeline
shared between roots through ``$DASHAPP_WORKSPACE`` can still show each server its own.

:class:`Record` appends from a background thread, so the slider that reports a view never waits
on the disk: :meth:`Record.add` queues the event and returns it; the writer appends what is
queued in one write followed by one ``fsync`` (a group commit: a burst of events costs one
``fsync``, not one each) and :meth:`Record.flush` waits until it is on disk. Each line is
written whole with one ``write`` on a file opened ``O_APPEND``, under an advisory lock where the
filesystem has one, so several sessions and processes can share one record.

Reading is tolerant: a line cut short when dashapp stopped mid-write, or a line of garbage, is
skipped with a :class:`RecordWarning`, losing that event only.

:class:`ViewRecorder` debounces views: the app calls :meth:`ViewRecorder.update` on every view
change and only a view that stays for ``delay`` seconds is recorded (the slice a user stopped
at, not the hundred they scrubbed through).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from .. import settings
from .environment import capture_environment, summary

__all__ = [
    "ATTACHMENTS_DIR",
    "KINDS",
    "RECORD_NAME",
    "SMALL_FILE_BYTES",
    "Event",
    "Record",
    "RecordWarning",
    "ViewRecorder",
    "default_workspace",
    "describe_file",
    "format_timeline",
    "json_safe",
    "link_query",
    "open_record",
    "parse_time",
    "record_server_start",
    "same_root",
]

log = logging.getLogger(__name__)

#: What an event can be about.
KINDS = (
    "environment", "file", "view", "cluster", "computation", "note", "snapshot", "session",
)  # fmt: skip
#: The record's file name inside the workspace.
RECORD_NAME = "record.jsonl"
#: The folder of attachments inside the workspace.
ATTACHMENTS_DIR = "attachments"
#: Files smaller than this get a SHA-256 checksum without being asked (64 MB: ~0.1 s to hash).
SMALL_FILE_BYTES = 64 * 2**20

_PNG = b"\x89PNG\r\n\x1a\n"
_TITLE_MAX = 200


class RecordWarning(UserWarning):
    """A line of the record could not be read and was skipped."""


# ----------------------------------------------------------------------------- helpers
def _now() -> str:
    return (
        dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def parse_time(value: str | dt.datetime) -> dt.datetime:
    """An event time (ISO 8601, ``Z`` or offset) as an aware UTC datetime.

    Python 3.10's ``fromisoformat`` does not take ``Z``, hence this helper.
    """
    if isinstance(value, dt.datetime):
        t = value
    else:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc)


def json_safe(value: Any, _depth: int = 0) -> Any:
    """``value`` as plain JSON types: tuples become lists, keys strings, numpy scalars Python
    numbers, paths strings, non-finite floats ``"nan"``/``"inf"``; anything else its ``str``."""
    if _depth > 20:
        return str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, _depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_safe(v, _depth + 1) for v in value), key=repr)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value), _depth + 1)
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # numpy without importing it
        if getattr(value, "size", 0) > 10_000:
            return f"<array {getattr(value, 'shape', '?')} {value.dtype}>"
        return json_safe(value.tolist(), _depth + 1)
    return str(value)


def link_query(link: str | Mapping[str, Any] | None) -> str | None:
    """A deep link as a query string (``file=...&dataset=...``).

    Takes what :func:`dashapp.state.query.to_query` returns (a dict), a query string with or
    without its ``?``, or a whole URL (only its query is kept).
    """
    if link is None:
        return None
    if isinstance(link, Mapping):
        if not link:
            return None
        # '/' and ',' stay readable: the link is shown on the timeline
        return urlencode({str(k): str(v) for k, v in link.items()}, safe="/,:")
    text = str(link).strip()
    if "?" in text:
        text = text.split("?", 1)[1]
    text = text.split("#", 1)[0]
    return text or None


def _query_dict(link: str | None) -> dict[str, str]:
    if not link:
        return {}
    return {k: v[-1] for k, v in parse_qs(link, keep_blank_values=True).items()}


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _TITLE_MAX else line[: _TITLE_MAX - 1] + "…"


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def _view_title(prefix: str, query: Mapping[str, str]) -> str:
    parts = [prefix]
    if query.get("file"):
        parts.append(query["file"])
    if query.get("dataset"):
        parts.append(query["dataset"])
    if "axis" in query and "index" in query:
        parts.append(f"axis {query['axis']} index {query['index']}")
    others = [f"{k}={v}" for k, v in query.items() if k[:1] == "d" and k[1:].isdigit()]
    if others:
        parts.append("(" + ", ".join(others) + ")")
    return " ".join(parts)


def default_workspace(root: str | os.PathLike[str] | None = None) -> Path:
    """The workspace used when none is given.

    ``$DASHAPP_WORKSPACE`` if set (the user chose it, whatever is served). Else, with ``root``
    (the folder a server serves), a workspace of that root alone in dashapp's cache folder:
    ``<cache>/workspaces/<root's name>-<hash of its real path>``, so servers of different
    roots sharing one cache keep separate timelines. Without ``root``, ``<cache>/workspace``.
    ``<cache>`` is ``$DASHAPP_CACHE`` or the user's cache dir (e.g. ``~/.cache/dashapp``).
    """
    chosen = settings.current().workspace
    if chosen is not None:
        return chosen
    if root is None:
        return settings.cache_dir() / "workspace"
    real = os.path.realpath(os.fspath(root))
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    name = _safe_name(os.path.basename(real.rstrip(os.sep)) or "root")[:40]
    return settings.cache_dir() / "workspaces" / f"{name}-{digest}"


def same_root(event: Event, root: str | os.PathLike[str]) -> bool:
    """False only when ``event`` was recorded under another served root than ``root``.

    Events without a root (notes from a script, records of older versions) belong to every
    root: the timeline shows them.
    """
    recorded = event.data.get("root") if isinstance(event.data, dict) else None
    if not isinstance(recorded, str) or not recorded:
        return True
    return os.path.realpath(recorded) == os.path.realpath(os.fspath(root))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * 2**20):
            h.update(chunk)
    return h.hexdigest()


def describe_file(
    path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Size and modification time of ``path`` (no checksum), as event data.

    ``file`` is the ``/``-separated path relative to ``root`` when ``path`` lies inside it,
    else the absolute path; ``path`` is always the absolute path.
    """
    absolute = os.path.abspath(os.fspath(path))
    info: dict[str, Any] = {"path": absolute, "file": absolute}
    if root is not None:
        base = os.path.realpath(os.fspath(root))
        real = os.path.realpath(absolute)
        info["root"] = base
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            info["file"] = Path(os.path.relpath(real, base)).as_posix()
        else:
            info["outside_root"] = True
    try:
        st = os.stat(absolute)
    except OSError as exc:
        info.update(exists=False, error=f"{type(exc).__name__}: {exc.strerror or exc}")
        return info
    info.update(
        exists=True,
        size=st.st_size,
        mtime=dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
        mtime_ns=st.st_mtime_ns,
    )
    return info


def _add_checksum(info: dict[str, Any]) -> None:
    """Hash the file of ``info`` in place; a file that changed meanwhile gets no checksum."""
    if not info.get("exists"):
        return
    try:
        digest = _sha256(Path(info["path"]))
        st = os.stat(info["path"])
    except OSError as exc:
        info["sha256"] = None
        info["checksum_error"] = f"{type(exc).__name__}: {exc.strerror or exc}"
        return
    if st.st_size != info.get("size") or st.st_mtime_ns != info.get("mtime_ns"):
        info["sha256"] = None
        info["checksum_error"] = "the file changed while it was read (a writer is active)"
    else:
        info["sha256"] = digest


def _image_suffix(data: bytes) -> str:
    if data.startswith(_PNG):
        return ".png"
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return ".gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")):
        return ".svg"
    return ".bin"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "file"


# ----------------------------------------------------------------------------- the event
@dataclasses.dataclass
class Event:
    """One thing that happened, as one line of the record (JSON-safe).

    Attributes
    ----------
    id
        A UUID (string).
    time
        When, ISO 8601 in UTC with milliseconds (``2026-11-26T14:32:36.123Z``).
    kind
        One of :data:`KINDS`.
    title
        One line for the timeline.
    file
        The file it concerns, relative to the served root (or absolute), or None.
    link
        The deep-link query string that restores the view (``file=...&dataset=...&axis=2``).
    data
        Everything else, JSON types only.
    attachments
        Files in the workspace this event points to, relative to the workspace
        (``attachments/<id>-snapshot.png``).
    """

    id: str
    time: str
    kind: str
    title: str
    file: str | None = None
    link: str | None = None
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    attachments: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The event as a plain dict (what one line of ``record.jsonl`` holds)."""
        return {
            "id": self.id,
            "time": self.time,
            "kind": self.kind,
            "title": self.title,
            "file": self.file,
            "link": self.link,
            "data": self.data,
            "attachments": list(self.attachments),
        }

    def to_json(self) -> str:
        """One line of JSON (no newline)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Event:
        """Build an event from a line's dict; fields a newer dashapp added are ignored.

        Raises
        ------
        ValueError
            If a required field (``id``, ``time``, ``kind``, ``title``) is missing or mistyped.
        """
        if not isinstance(obj, Mapping):
            raise ValueError("an event is a JSON object")
        for key in ("id", "time", "kind", "title"):
            if not isinstance(obj.get(key), str):
                raise ValueError(f"an event needs a string {key!r}")
        data = obj.get("data") or {}
        attachments = obj.get("attachments") or []
        if not isinstance(data, dict) or not isinstance(attachments, list):
            raise ValueError("an event's data is an object and its attachments a list")
        return cls(
            id=obj["id"],
            time=obj["time"],
            kind=obj["kind"],
            title=obj["title"],
            file=obj.get("file"),
            link=obj.get("link"),
            data=data,
            attachments=[str(a) for a in attachments],
        )

    @property
    def datetime(self) -> dt.datetime:
        """:attr:`time` as an aware UTC datetime."""
        return parse_time(self.time)

    @property
    def query(self) -> dict[str, str]:
        """The deep link as ``{key: value}`` (what ``apply_query`` takes)."""
        return _query_dict(self.link)

    def files(self) -> set[str]:
        """Every file this event concerns: its ``file``, and a computation's inputs and outputs
        (relative and absolute paths)."""
        found = {self.file} if self.file else set()
        entries = [self.data, *self.data.get("inputs", []), *self.data.get("outputs", [])]
        for entry in entries:
            if isinstance(entry, dict):
                found.update(v for k in ("file", "path") if isinstance(v := entry.get(k), str))
        return found


@dataclasses.dataclass
class _Job:
    seq: int
    event: Event
    blobs: list[tuple[str, bytes]]


# ----------------------------------------------------------------------------- the record
_OPEN: weakref.WeakSet[Record] = weakref.WeakSet()
_SHARED: dict[str, Record] = {}
_SHARED_LOCK = threading.Lock()


@atexit.register
def _flush_all() -> None:
    # The writer is a daemon thread: without this, events queued just before a normal exit
    # (a CLI run, a script) would be lost.
    for record in list(_OPEN):
        with contextlib.suppress(Exception):
            record.flush(timeout=5.0)


class Record:
    """The append-only provenance record of one workspace.

    Parameters
    ----------
    workspace
        The workspace folder (created on the first write); default :func:`default_workspace`.
    read_only
        Refuse to add events (a capsule's record is read, never written).

    Notes
    -----
    Thread-safe: several app sessions may share one record (see :func:`open_record`), and
    several processes may append to one workspace.
    """

    def __init__(
        self, workspace: str | os.PathLike[str] | None = None, *, read_only: bool = False
    ) -> None:
        self.workspace = Path(workspace) if workspace is not None else default_workspace()
        self.workspace = Path(os.path.abspath(self.workspace))
        self.path = self.workspace / RECORD_NAME
        self.attachments_dir = self.workspace / ATTACHMENTS_DIR
        self.read_only = read_only
        #: Lines skipped by the last :meth:`events` (truncated or corrupt).
        self.skipped_lines = 0
        #: The last write error, in words, or None once writes succeed again.
        self.error: str | None = None
        self._cond = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._pending: dict[str, Event] = {}  # added, not yet on disk: events() shows them
        self._unwritten: set[int] = set()
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._stop = False
        self._hasher: ThreadPoolExecutor | None = None
        self._last_view: str | None = None
        self._reported: tuple[bool, tuple[int, ...]] = (False, ())
        _OPEN.add(self)

    def __repr__(self) -> str:
        return f"Record({str(self.workspace)!r})"

    def __enter__(self) -> Record:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def add(
        self,
        kind: str,
        title: str,
        *,
        file: str | None = None,
        link: str | Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        attachments: Iterable[str] = (),
    ) -> Event:
        """Append an event; returns at once (the disk write happens in the background).

        Parameters
        ----------
        kind
            One of :data:`KINDS`.
        title
            One line for the timeline (newlines are folded).
        file
            The file the event concerns (relative to the served root), if any.
        link
            Deep link that restores the view: a query string, a URL, or the dict
            :func:`~dashapp.state.query.to_query` returns.
        data
            Anything else; made JSON-safe (tuples become lists, dict keys strings).
        attachments
            Paths relative to the workspace of files already placed there.

        Returns
        -------
        Event
            The event as it will be written.
        """
        return self._add(kind, title, file=file, link=link, data=data, attachments=attachments)

    def _add(
        self,
        kind: str,
        title: str,
        *,
        file: str | None = None,
        link: str | Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        attachments: Iterable[str] = (),
        blobs: Iterable[tuple[str, bytes]] = (),
        prepare: Callable[[Event], None] | None = None,
        event_id: str | None = None,
    ) -> Event:
        if self.read_only:
            raise PermissionError(f"{self} is read-only (a capsule's record)")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        event = Event(
            id=event_id or str(uuid.uuid4()),
            time=_now(),
            kind=kind,
            title=_one_line(title),
            file=None if file is None else str(file),
            link=link_query(link),
            data=json_safe(dict(data or {})),
            attachments=[str(a) for a in attachments],
        )
        blobs = list(blobs)
        with self._cond:
            self._seq += 1
            job = _Job(self._seq, event, blobs)
            self._unwritten.add(job.seq)
            self._pending[event.id] = event
            if prepare is None:
                self._enqueue(job)
        if prepare is not None:
            # slow preparation (checksums) runs on its own thread so it never holds up the
            # writer; the record is ordered by time on reading, so a late line is harmless
            with self._cond:  # submitted under the lock: close() may swap the pool out
                if self._hasher is None:
                    self._hasher = ThreadPoolExecutor(1, thread_name_prefix="dashapp-hash")
                self._hasher.submit(self._prepare, job, prepare)
        return event

    def _prepare(self, job: _Job, prepare: Callable[[Event], None]) -> None:
        try:
            prepare(job.event)
        except Exception as exc:  # a checksum failure must not lose the event
            job.event.data["prepare_error"] = f"{type(exc).__name__}: {exc}"
        with self._cond:
            self._enqueue(job)

    def _enqueue(self, job: _Job) -> None:
        # called with self._cond held
        self._queue.append(job)
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(
                target=self._run, name=f"dashapp-record-{self.workspace.name}", daemon=True
            )
            self._thread.start()
        else:
            self._cond.notify_all()

    def _run(self) -> None:
        warned = False
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if not self._queue:
                    return
                jobs = list(self._queue)
                self._queue.clear()
            try:
                self._write(jobs)
            except OSError as exc:
                # keep the events and retry: a full quota or an NFS hiccup may pass
                with self._cond:
                    self._queue.extendleft(reversed(jobs))
                    self.error = f"cannot write the provenance record {self.path}: {exc}"
                    stopping = self._stop
                if not warned:
                    log.warning("%s (retrying)", self.error)
                    warned = True
                if stopping:
                    return
                time.sleep(1.0)
                continue
            warned = False
            with self._cond:
                for job in jobs:
                    self._unwritten.discard(job.seq)
                    self._pending.pop(job.event.id, None)
                self.error = None
                self._cond.notify_all()

    def _write(self, jobs: list[_Job]) -> None:
        self.workspace.mkdir(parents=True, exist_ok=True)
        for job in jobs:
            for rel, blob in job.blobs:
                target = self.workspace / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as fh:
                    fh.write(blob)
                    fh.flush()
                    os.fsync(fh.fileno())
        payload = "".join(_line(job.event) + "\n" for job in jobs).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            with contextlib.suppress(OSError):  # no advisory locks on some parallel filesystems
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX)
            # a crash mid-line left the file without its last newline: start a fresh line so
            # the new events do not glue onto the broken one
            size = os.fstat(fd).st_size
            if size:
                with open(self.path, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        payload = b"\n" + payload
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event added so far is on disk.

        Parameters
        ----------
        timeout
            Seconds to wait at most; None waits as long as it takes.

        Returns
        -------
        bool
            True when written, False on timeout (see :attr:`error` for a failing disk).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._seq
            while any(seq <= target for seq in self._unwritten):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush and stop the writer thread (a later :meth:`add` starts it again).

        Returns what :meth:`flush` returned.
        """
        done = self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
            hasher, self._hasher = self._hasher, None
        if thread is not None:
            thread.join(timeout if done else 0.1)
        if hasher is not None:
            hasher.shutdown(wait=False)
        return done

    # ------------------------------------------------------------------ reading
    def events(
        self,
        kinds: str | Iterable[str] | None = None,
        file: str | os.PathLike[str] | None = None,
        text: str | None = None,
        since: str | dt.datetime | None = None,
    ) -> list[Event]:
        """The recorded events in time order, filtered.

        Reads ``record.jsonl`` (plus events added but not yet written). A line that cannot be
        read (cut short by a crash mid-write, or garbage) is skipped with a
        :class:`RecordWarning` and counted in :attr:`skipped_lines`.

        Parameters
        ----------
        kinds
            Keep only these kinds (a kind or several).
        file
            Keep only events about this file (relative or absolute path; a computation
            matches its inputs and outputs).
        text
            Keep only events whose title, note text, file or link contains this
            (case-insensitive).
        since
            Keep only events at or after this time (ISO string or datetime).
        """
        events = self._read()
        with self._cond:
            pending = list(self._pending.values())
        seen = {e.id for e in events}
        events += [e for e in pending if e.id not in seen]
        if kinds is not None:
            wanted = {kinds} if isinstance(kinds, str) else set(kinds)
            events = [e for e in events if e.kind in wanted]
        if file is not None:
            name = os.fspath(file)
            events = [e for e in events if name in e.files()]
        if text:
            needle = text.casefold()

            def haystack(e: Event) -> str:
                note = e.data.get("text", "")
                return " ".join(str(s) for s in (e.title, note, e.file or "", e.link or ""))

            events = [e for e in events if needle in haystack(e).casefold()]
        if since is not None:
            start = parse_time(since)
            events = [e for e in events if _time_or_min(e) >= start]
        events.sort(key=_time_or_min)  # stable: same-millisecond events keep file order
        return events

    def _read(self) -> list[Event]:
        try:
            raw = self.path.read_bytes()
            for _ in range(3):
                # a last line without its newline may be another process's write in progress,
                # not a crash's leftover: if the file is still growing, read it again
                if not raw or raw.endswith(b"\n"):
                    break
                time.sleep(0.02)
                if self.path.stat().st_size == len(raw):
                    break
                raw = self.path.read_bytes()
        except FileNotFoundError:
            self.skipped_lines = 0
            return []
        lines = raw.split(b"\n")
        events: list[Event] = []
        bad: list[int] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                events.append(Event.from_dict(json.loads(line.decode("utf-8"))))
            except (ValueError, UnicodeDecodeError):
                bad.append(number)
        self.skipped_lines = len(bad)
        torn = bool(bad) and not raw.endswith(b"\n") and bad[-1] == len(lines)
        middle = tuple(bad[:-1] if torn else bad)
        problem = (torn, middle)
        if bad and problem != self._reported:  # say it once, not at every timeline refresh
            parts = []
            if torn:
                parts.append(
                    f"its last line ({len(lines)}) is incomplete: dashapp stopped while writing "
                    "it, and that event is lost"
                )
            if middle:
                shown = ", ".join(str(n) for n in middle[:10]) + (", …" if len(middle) > 10 else "")
                parts.append(f"{len(middle)} unreadable line(s) were skipped ({shown})")
            message = f"{self.path}: " + "; ".join(parts)
            warnings.warn(message, RecordWarning, stacklevel=3)
            log.warning(message)
        self._reported = problem
        return events

    def get(self, event_id: str) -> Event | None:
        """The event with this id, or None."""
        return next((e for e in self.events() if e.id == event_id), None)

    def attachment_path(self, rel: str) -> Path:
        """The absolute path of an event's attachment (given relative to the workspace).

        Raises
        ------
        ValueError
            If ``rel`` leads outside the workspace's ``attachments/`` folder: a record from a
            capsule comes from someone else, and must not make the app show any other file.
        """
        base = os.path.realpath(self.attachments_dir)
        path = os.path.realpath(self.workspace / rel)
        if not path.startswith(base + os.sep):
            raise ValueError(f"{rel!r} is not an attachment of {self.workspace}")
        return Path(path)

    # ------------------------------------------------------------------ what the app records
    def note(
        self,
        text: str,
        images: Iterable[bytes | str | os.PathLike[str]] = (),
        *,
        file: str | None = None,
        link: str | Mapping[str, Any] | None = None,
    ) -> Event:
        """Record a note by the user, with images (PNG/JPEG/GIF/SVG bytes, or image files).

        Images are copied into ``attachments/``; image files are read at once (so the caller
        may delete them), the copies written in the background. ``file`` and ``link`` tie
        the note to a file or a view.
        """
        event_id = str(uuid.uuid4())
        blobs: list[tuple[str, bytes]] = []
        for n, image in enumerate(images, start=1):
            if isinstance(image, (bytes, bytearray, memoryview)):
                blob = bytes(image)
                name = f"{event_id}-{n}{_image_suffix(blob)}"
            else:
                src = Path(image)
                blob = src.read_bytes()
                name = f"{event_id}-{n}-{_safe_name(src.name)}"
            blobs.append((f"{ATTACHMENTS_DIR}/{name}", blob))
        link_text = link_query(link)
        if file is None and link_text:
            file = _query_dict(link_text).get("file")
        first = next((line for line in str(text).splitlines() if line.strip()), "(empty note)")
        return self._add(
            "note",
            first,
            file=file,
            link=link_text,
            data={"text": str(text), "images": len(blobs)},
            attachments=[rel for rel, _ in blobs],
            blobs=blobs,
            event_id=event_id,
        )

    def snapshot(
        self,
        png: bytes,
        link: str | Mapping[str, Any],
        view: Mapping[str, Any],
        title: str | None = None,
        root: str | os.PathLike[str] | None = None,
    ) -> Event:
        """Record a snapshot of the current view: the plot as a PNG plus its deep link.

        Parameters
        ----------
        png
            The plot, PNG bytes.
        link
            Deep link of the view (query string, URL or ``to_query`` dict).
        view
            The view settings (:meth:`dashapp.state.SliceState.view`).
        title
            Timeline title; default names the file, dataset and slice.
        root
            The folder served, which the link's file is relative to (kept in ``data``).
        """
        blob = bytes(png)
        if not blob.startswith(_PNG):
            raise ValueError("a snapshot is a PNG image (its bytes start with the PNG signature)")
        event_id = str(uuid.uuid4())
        rel = f"{ATTACHMENTS_DIR}/{event_id}-snapshot.png"
        link_text = link_query(link)
        query = _query_dict(link_text)
        return self._add(
            "snapshot",
            title or _view_title("Snapshot:", query),
            file=query.get("file"),
            link=link_text,
            data={
                "view": view,
                "dataset": query.get("dataset"),
                "bytes": len(blob),
                **_root(root),
            },
            attachments=[rel],
            blobs=[(rel, blob)],
            event_id=event_id,
        )

    def file_opened(
        self,
        path: str | os.PathLike[str],
        root: str | os.PathLike[str] | None = None,
        checksum: bool | None = None,
    ) -> Event:
        """Record that a file was opened: its path, size and modification time.

        Parameters
        ----------
        path
            The file.
        root
            The folder the app serves: the event's ``file`` is relative to it (the absolute
            path is kept in ``data["path"]``).
        checksum
            SHA-256 of the content: True always, False never, None for files smaller than
            :data:`SMALL_FILE_BYTES`. It is computed in the background (the returned event's
            ``data["sha256"]`` is filled in by the time :meth:`flush` returns); a file that
            changes while it is hashed (a running simulation) gets none, and says why.
        """
        info = describe_file(path, root)
        wanted = checksum if checksum is not None else info.get("size", 0) < SMALL_FILE_BYTES
        title = f"Opened {info['file']} ({_human(info.get('size'))})"
        if not info.get("exists"):
            title = f"Opened {info['file']} (missing)"
        prepare = None
        if wanted and info.get("exists"):
            info["sha256"] = None  # filled in by the hashing thread

            def prepare(event: Event) -> None:
                _add_checksum(event.data)

        return self._add("file", title, file=info["file"], data=info, prepare=prepare)

    def view(
        self,
        link: str | Mapping[str, Any],
        view: Mapping[str, Any],
        file: str | None = None,
        root: str | os.PathLike[str] | None = None,
    ) -> Event | None:
        """Record a view the user looked at, unless it is the view recorded last.

        Call it for views that stayed on screen; :class:`ViewRecorder` does the waiting.
        ``root`` is the folder served, which the link's file is relative to (kept in ``data``).

        Returns
        -------
        Event or None
            None when the link equals the previous view's (nothing new was seen).
        """
        link_text = link_query(link)
        with self._cond:
            if link_text == self._last_view:
                return None
            self._last_view = link_text
        query = _query_dict(link_text)
        return self._add(
            "view",
            _view_title("Viewed", query),
            file=file if file is not None else query.get("file"),
            link=link_text,
            data={"view": view, "dataset": query.get("dataset"), **_root(root)},
        )

    def cluster(self, action: str, **data: Any) -> Event:
        """Record a cluster action: ``start``, ``scale``, ``adapt``, ``stop``, ``worker_lost``...

        Keyword arguments are the details: ``cls`` (cluster class), ``options``, ``job_script``,
        ``job_ids``, ``n``, ``minimum``/``maximum``, ``worker``, ``reason``...
        """
        cls = data.get("cls") or data.get("cluster_class") or data.get("class")
        bits = [f"Cluster {action}"]
        if cls:
            bits.append(str(cls).rsplit(".", 1)[-1])
        for key in ("n", "workers", "jobs"):
            if key in data:
                bits.append(f"{key}={data[key]}")
        if "minimum" in data or "maximum" in data:
            bits.append(f"adapt {data.get('minimum', 0)}–{data.get('maximum', '∞')}")
        if data.get("job_ids"):
            ids = [str(j) for j in data["job_ids"]]
            bits.append("jobs " + ", ".join(ids[:5]) + (" …" if len(ids) > 5 else ""))
        if data.get("worker"):
            bits.append(str(data["worker"]))
        return self._add("cluster", " ".join(bits), data={"action": action, **data})

    def computation(
        self,
        name: str,
        parameters: Mapping[str, Any],
        inputs: Iterable[str | os.PathLike[str]],
        outputs: Iterable[str | os.PathLike[str]],
        seconds: float,
        status: str,
        error: str | BaseException | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
        checksum: bool | None = None,
    ) -> Event:
        """Record a computation run from the app.

        Parameters
        ----------
        name
            What ran (``"pyramid"``, ``"simpeg.inversion_1d"``...).
        parameters
            Its parameters (made JSON-safe).
        inputs, outputs
            Files read and written. Outputs get a SHA-256 checksum (unless ``checksum`` is
            False), inputs when small (or when ``checksum`` is True); computed in the
            background as for :meth:`file_opened`.
        seconds
            How long it ran (the event's time is its end).
        status
            ``"ok"``, ``"failed"``, ``"cancelled"``...
        error
            What went wrong (a message or the exception).
        root
            Paths are also given relative to this folder.
        checksum
            As above.
        """
        ins = [describe_file(p, root) for p in inputs]
        outs = [describe_file(p, root) for p in outputs]
        started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=float(seconds))
        err = None if error is None else json_safe(error)
        title = f"Ran {name}: {status} in {float(seconds):.3g} s"
        if err:
            title += f" ({str(err).splitlines()[0] if str(err).strip() else err})"
        hash_inputs = [
            i
            for i, info in enumerate(ins)
            if checksum or (checksum is None and info.get("size", 0) < SMALL_FILE_BYTES)
        ]
        hash_outputs = [] if checksum is False else list(range(len(outs)))

        def prepare(event: Event) -> None:
            for i in hash_inputs:
                _add_checksum(event.data["inputs"][i])
            for i in hash_outputs:
                _add_checksum(event.data["outputs"][i])

        wanted = any(ins[i].get("exists") for i in hash_inputs) or any(
            outs[i].get("exists") for i in hash_outputs
        )
        return self._add(
            "computation",
            title,
            file=outs[0]["file"] if outs else (ins[0]["file"] if ins else None),
            data={
                "name": name,
                "parameters": parameters,
                "inputs": ins,
                "outputs": outs,
                "seconds": float(seconds),
                "status": status,
                "error": err,
                "started": started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            },
            prepare=prepare if wanted else None,
        )

    def environment(self, repo: str | os.PathLike[str] | None = None) -> Event:
        """Record the software environment (see :func:`capture_environment`).

        The capture (package versions, ``git``) takes ~0.1 s and runs on the caller's thread;
        call it once per session, off the event loop.
        """
        env = capture_environment(repo)
        return self._add("environment", summary(env), data=env)

    def session(self, action: str, **data: Any) -> Event:
        """Record an app session starting or ending (``action``: ``"start"``, ``"end"``)."""
        who = data.get("session") or data.get("id")
        title = f"Session {action}" + (f" {who}" if who else "")
        return self._add("session", title, data={"action": action, **data})


def _root(root: str | os.PathLike[str] | None) -> dict[str, str]:
    return {} if root is None else {"root": os.path.realpath(os.fspath(root))}


def _line(event: Event) -> str:
    try:
        return event.to_json()
    except (TypeError, ValueError) as exc:  # a prepare step stored something odd: keep the event
        event.data = {"unwritable_data": f"{type(exc).__name__}: {exc}"}
        return event.to_json()


def _time_or_min(event: Event) -> dt.datetime:
    try:
        return event.datetime
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def open_record(
    workspace: str | os.PathLike[str] | None = None, *, root: str | os.PathLike[str] | None = None
) -> Record:
    """The process-wide :class:`Record` of ``workspace`` (default :func:`default_workspace` of
    ``root``: the served root's own workspace unless ``$DASHAPP_WORKSPACE`` names one).

    Every app session of a server should write through this one object, so that their views
    are de-duplicated together and one writer thread serves them all.
    """
    path = Path(workspace) if workspace is not None else default_workspace(root)
    key = os.path.realpath(path)
    with _SHARED_LOCK:
        record = _SHARED.get(key)
        if record is None:
            record = _SHARED[key] = Record(path)
        return record


_STARTED: set[tuple[str, str]] = set()


def record_server_start(record: Record, root: str | os.PathLike[str], **data: Any) -> bool:
    """Record "Server started" for ``root`` once per server process and workspace.

    A page load is not a session worth a timeline entry (each reload added a "Session
    start"); the server starting is. Returns True when this call recorded it.
    """
    real = os.path.realpath(os.fspath(root))
    key = (str(record.workspace), real)
    with _SHARED_LOCK:
        if key in _STARTED:
            return False
        _STARTED.add(key)
    record.add(
        "session",
        f"Server started: {os.path.basename(real.rstrip(os.sep)) or real}",
        data={"action": "start", "root": real, "pid": os.getpid(), **data},
    )
    return True


# ----------------------------------------------------------------------------- view debouncing
class ViewRecorder:
    """Record only the views a user stayed on.

    The app calls :meth:`update` on every view change (each slider step); a view is recorded
    once no other view followed it for ``delay`` seconds. :meth:`update` only stores the view
    and returns (a few microseconds); a helper thread does the waiting and the recording.

    Parameters
    ----------
    record
        Where views are recorded.
    delay
        Seconds a view must stay to be recorded.
    root
        The folder served (each view's link is relative to it; see :func:`same_root`).
    """

    def __init__(
        self, record: Record, delay: float = 2.0, root: str | os.PathLike[str] | None = None
    ) -> None:
        self.record = record
        self.delay = float(delay)
        self.root = root
        self._cond = threading.Condition()
        self._pending: tuple[Any, dict[str, Any], str | None] | None = None
        self._last = 0.0
        self._closed = False
        self._thread: threading.Thread | None = None
        #: Events this recorder recorded, oldest first (the last few hundred).
        self.recorded: collections.deque[Event] = collections.deque(maxlen=500)

    def update(
        self,
        link: str | Mapping[str, Any],
        view: Mapping[str, Any] | None,
        file: str | None = None,
    ) -> None:
        """The view changed to ``link``/``view``; recorded if it stays ``delay`` seconds."""
        pending = (link, dict(view) if view else {}, file)
        with self._cond:
            idle = self._pending is None
            self._pending = pending
            self._last = time.monotonic()
            if self._thread is None:
                self._closed = False
                self._thread = threading.Thread(
                    target=self._run, name="dashapp-view-recorder", daemon=True
                )
                self._thread.start()
            elif idle:
                self._cond.notify()

    @property
    def pending(self) -> bool:
        """True while a view waits for its ``delay``."""
        with self._cond:
            return self._pending is not None

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    if self._pending is None:
                        self._cond.wait()
                        continue
                    wait = self._last + self.delay - time.monotonic()
                    if wait > 0:
                        self._cond.wait(wait)
                        continue
                    pending, self._pending = self._pending, None
                    break
            self._record(pending)

    def _record(self, pending: tuple[Any, dict[str, Any], str | None]) -> Event | None:
        link, view, file = pending
        try:
            event = self.record.view(link, view, file, root=self.root)
        except Exception:  # recording must never break the viewer
            log.exception("could not record a view")
            return None
        if event is not None:
            self.recorded.append(event)
        return event

    def flush(self) -> Event | None:
        """Record the waiting view now (before a snapshot, or when the session ends)."""
        with self._cond:
            pending, self._pending = self._pending, None
        return None if pending is None else self._record(pending)

    def close(self) -> Event | None:
        """Record the waiting view, if any, and stop the helper thread.

        Returns the event recorded, if any. A later :meth:`update` starts again.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        return self.flush()


# ----------------------------------------------------------------------------- text timeline
def format_timeline(events: Iterable[Event], links: bool = True) -> str:
    """The events as a plain-text timeline, one line each (deep links indented below).

    Parameters
    ----------
    events
        Events in the order to show (:meth:`Record.events` gives time order).
    links
        Show each view's and snapshot's deep link (``?file=...``) under it.
    """
    lines = []
    for e in events:
        stamp = e.time.replace("T", " ")
        extra = f"  [{len(e.attachments)} attachment(s)]" if e.attachments else ""
        lines.append(f"{stamp}  {e.kind:<11}  {e.title}{extra}")
        if e.kind == "note" and "\n" in str(e.data.get("text", "")).strip():
            lines.extend(f"{'':38}{line}" for line in str(e.data["text"]).splitlines()[1:])
        if links and e.link and e.kind in ("view", "snapshot"):
            lines.append(f"{'':38}?{e.link}")
    return "\n".join(lines)
