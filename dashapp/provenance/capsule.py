"""Capsules: a workspace's record packed into one zip file that another user reopens.

A capsule (``<name>.capsule.zip``) holds::

    manifest.json       format "dashapp-capsule", version, dashapp version, when, where from,
                        counts, the root the deep links are relative to, packed/skipped inputs
    record.jsonl        the events, in time order
    attachments/...     snapshot PNGs and note images
    environment.txt     the package lock (pip requirements format)
    environment.json    the full environment description
    prov.json           the record as W3C PROV-JSON
    inputs/<relpath>    with ``pack_inputs``: the files opened, at their path relative to the
                        root, so that ``dashapp serve --root inputs`` restores the views

:func:`open_capsule` checks the manifest (a capsule from a newer dashapp gets a clear message),
extracts the zip safely and returns a :class:`Capsule` whose :meth:`Capsule.views` gives the
query of each recorded view, ready for :func:`dashapp.state.query.apply_query`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from ..data.errors import DashappError
from .environment import capture_environment, lock_text
from .record import (
    RECORD_NAME,
    SMALL_FILE_BYTES,
    Event,
    Record,
    _human,
    default_workspace,
    format_timeline,
    json_safe,
)

__all__ = [
    "CAPSULE_FORMAT",
    "CAPSULE_VERSION",
    "Capsule",
    "CapsuleError",
    "CapsuleLimits",
    "capsule_cache",
    "export_capsule",
    "open_capsule",
]

#: The ``format`` of a capsule's manifest.
CAPSULE_FORMAT = "dashapp-capsule"
#: The newest capsule layout this dashapp writes and reads.
CAPSULE_VERSION = 1
INPUTS_DIR = "inputs"


class CapsuleError(DashappError, ValueError):
    """A file is not a capsule this dashapp can open (the message says why and what to do)."""


def _now() -> str:
    return (
        dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * 2**20):
            h.update(chunk)
    return h.hexdigest()


def capsule_cache() -> Path:
    """Where :func:`open_capsule` extracts capsules by default (``<cache>/capsules``)."""
    return default_workspace().parent / "capsules"


# ----------------------------------------------------------------------------- export
def _inputs(events: list[Event], root: Path | None) -> dict[str, dict[str, Any]]:
    """The files to pack: ``{absolute path: {"rel": path in inputs/, "recorded": info}}``.

    Files opened and computation inputs, plus the files views show (resolved against the
    root). Paths are made relative to ``root`` when given, else to the root recorded with
    each file, else to the folder the files have in common.
    """
    found: dict[str, dict[str, Any]] = {}

    def add(info: dict[str, Any]) -> None:
        path = info.get("path")
        if not path or path in found:
            return
        found[path] = {"recorded": info}

    for e in events:
        if e.kind == "file":
            add(e.data)
        elif e.kind == "computation":
            for info in e.data.get("inputs", []):
                add(info)
    recorded_roots = [e.data.get("root") for e in events if e.kind == "file" and e.data.get("root")]
    view_root = root or (Path(recorded_roots[-1]) if recorded_roots else None)
    if view_root is not None:
        for e in events:
            if e.kind in ("view", "snapshot", "note") and e.file:
                path = os.path.abspath(os.path.join(view_root, e.file))
                add({"path": path, "file": e.file, "root": str(view_root)})
    loose = [p for p, v in found.items() if not v["recorded"].get("root") and root is None]
    common = Path(os.path.commonpath([os.path.dirname(p) for p in loose])) if loose else None
    for path, entry in found.items():
        info = entry["recorded"]
        base = root or (Path(info["root"]) if info.get("root") else common)
        rel = None
        if base is not None:
            real, real_base = os.path.realpath(path), os.path.realpath(base)
            if real.startswith(real_base.rstrip(os.sep) + os.sep):
                rel = Path(os.path.relpath(real, real_base)).as_posix()
        entry["rel"] = rel
    return found


def export_capsule(
    record: Record,
    dest: str | os.PathLike[str],
    pack_inputs: bool = False,
    max_input_bytes: int = SMALL_FILE_BYTES,
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``record`` as a capsule: one zip file another dashapp opens.

    Parameters
    ----------
    record
        The workspace's record (flushed first).
    dest
        The capsule file to write; if it is an existing folder, a file named
        ``<workspace>-<UTC time>.capsule.zip`` is written in it.
    pack_inputs
        Also pack the files the record opened (each up to ``max_input_bytes``) under
        ``inputs/<path relative to the root>``; larger, missing and outside-root files are
        listed in the manifest under ``inputs.skipped`` with the reason.
    max_input_bytes
        Largest input file packed.
    root
        The folder the deep links' ``file=`` paths are relative to (the app's root). Default:
        the root recorded with the files opened.

    Returns
    -------
    Path
        The capsule written.
    """
    if not record.flush(timeout=60):
        raise CapsuleError(
            f"The provenance record {record.path} could not be written to disk"
            + (f" ({record.error})" if record.error else "")
            + "; the capsule would miss events."
        )
    events = record.events()
    root_path = Path(os.path.abspath(root)) if root is not None else None
    target = Path(dest)
    if target.is_dir():
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = target / f"{record.workspace.name}-{stamp}.capsule.zip"
    target.parent.mkdir(parents=True, exist_ok=True)

    envs = [e for e in events if e.kind == "environment"]
    if envs:
        env, env_source = envs[-1].data, f"recorded {envs[-1].time}"
    else:  # a record without one still gets a lock: this process's, said so in the manifest
        env, env_source = capture_environment(), "captured when the capsule was written"

    recorded_roots = [e.data.get("root") for e in events if e.kind == "file" and e.data.get("root")]
    links_root = str(root_path) if root_path else (recorded_roots[-1] if recorded_roots else None)

    packed: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    attachments: list[str] = []
    missing_attachments: list[str] = []
    partial = target.with_name(target.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            zf.writestr(RECORD_NAME, "".join(e.to_json() + "\n" for e in events))
            for rel in sorted({a for e in events for a in e.attachments}):
                src = record.workspace / rel
                pure = PurePosixPath(rel)
                if pure.is_absolute() or ".." in pure.parts or not src.is_file():
                    missing_attachments.append(rel)
                    continue
                zf.write(src, pure.as_posix())
                attachments.append(rel)
            zf.writestr("environment.json", json.dumps(json_safe(env), indent=2))
            zf.writestr("environment.txt", lock_text(env))
            from .prov import to_prov

            zf.writestr("prov.json", to_prov(events).serialize(format="json", indent=2))
            if pack_inputs:
                for path, entry in _inputs(events, root_path).items():
                    rel, recorded = entry["rel"], entry["recorded"]
                    name = recorded.get("file") or path
                    if rel is None:
                        skipped.append({"file": name, "path": path, "reason": "outside the root"})
                        continue
                    try:
                        size = os.stat(path).st_size
                    except OSError:
                        skipped.append({"file": rel, "path": path, "reason": "missing"})
                        continue
                    if size > max_input_bytes:
                        skipped.append(
                            {
                                "file": rel,
                                "path": path,
                                "bytes": size,
                                "reason": f"larger than the {_human(max_input_bytes)} limit "
                                f"({_human(size)})",
                            }
                        )
                        continue
                    digest = _sha256(Path(path))
                    zf.write(path, f"{INPUTS_DIR}/{rel}")
                    item = {"file": rel, "bytes": size, "sha256": digest}
                    if recorded.get("sha256") and recorded["sha256"] != digest:
                        item["changed"] = "the file changed since it was recorded"
                    packed.append(item)
            by_kind = collections.Counter(e.kind for e in events)
            manifest = {
                "format": CAPSULE_FORMAT,
                "version": CAPSULE_VERSION,
                "dashapp": _dashapp_version(),
                "created": _now(),
                "source": {
                    "workspace": str(record.workspace),
                    "hostname": socket.gethostname(),
                    "user": env.get("user"),
                },
                "root": links_root,
                "counts": {
                    "events": len(events),
                    "kinds": dict(sorted(by_kind.items())),
                    "attachments": len(attachments),
                    "inputs": len(packed),
                    "unreadable_lines": record.skipped_lines,
                },
                "environment": env_source,
                "inputs": {
                    "packed": packed,
                    "skipped": skipped,
                    "max_bytes": max_input_bytes if pack_inputs else None,
                },
                "missing_attachments": missing_attachments,
            }
            # the manifest last: a capsule cut short has no manifest and is refused as such
            zf.writestr("manifest.json", json.dumps(manifest, indent=2))
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()
    return target


def _dashapp_version() -> str:
    from .._version import __version__

    return __version__


# ----------------------------------------------------------------------------- open
@dataclasses.dataclass
class Capsule:
    """An opened capsule.

    Attributes
    ----------
    path
        The capsule file (or folder) opened.
    folder
        Where it was extracted: a workspace (``record.jsonl``, ``attachments/``...).
    manifest
        ``manifest.json``.
    record
        The capsule's record, read-only.
    root
        The extracted ``inputs/`` folder when inputs were packed (serve it to restore the
        views), else None. Never the manifest's ``root``: that names a folder on the machine
        the capsule was written on, and a capsule is not trusted to choose what is served.
    extraction
        How it was extracted: ``"new"`` (into a new or empty folder), ``"merged"`` (into a
        folder an earlier ``open`` made), ``"cached"`` (reused), ``""`` (a folder opened).
    """

    path: Path
    folder: Path
    manifest: dict[str, Any]
    record: Record
    root: Path | None
    extraction: str = ""

    def events(
        self,
        kinds: str | Iterable[str] | None = None,
        file: str | os.PathLike[str] | None = None,
        text: str | None = None,
        since: str | dt.datetime | None = None,
    ) -> list[Event]:
        """The capsule's events in time order, filtered as :meth:`Record.events`."""
        return self.record.events(kinds=kinds, file=file, text=text, since=since)

    def views(self) -> list[tuple[Event, dict[str, str]]]:
        """Each view and snapshot event with its deep link as ``{key: value}``.

        The query is what :func:`dashapp.state.query.apply_query` takes to restore the view
        (with the state's root set to :attr:`root`, or to the original data).
        """
        return [(e, e.query) for e in self.events(kinds=("view", "snapshot")) if e.link]

    @property
    def environment(self) -> dict[str, Any]:
        """The environment description (``environment.json``)."""
        path = self.folder / "environment.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    @property
    def lock(self) -> str:
        """The package lock (``environment.txt``)."""
        path = self.folder / "environment.txt"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    @property
    def prov_path(self) -> Path:
        """The PROV-JSON file."""
        return self.folder / "prov.json"

    def timeline(self, links: bool = True) -> str:
        """The events as text (see :func:`format_timeline`)."""
        return format_timeline(self.events(), links=links)

    def describe(self) -> str:
        """A few lines about the capsule: who wrote it, when, what it holds."""
        m = self.manifest
        counts = m.get("counts", {})
        kinds = ", ".join(f"{n} {k}" for k, n in counts.get("kinds", {}).items())
        lines = [
            f"Capsule {self.path}",
            f"  written {m.get('created')} by dashapp {m.get('dashapp')} on "
            f"{m.get('source', {}).get('hostname')} from {m.get('source', {}).get('workspace')}",
            f"  {counts.get('events', 0)} events ({kinds or 'none'}), "
            f"{counts.get('attachments', 0)} attachments",
        ]
        if m.get("root"):
            lines.append(f"  links relative to {m['root']} (on the machine it was written on)")
        inputs = m.get("inputs") or {}
        if self.root is not None:
            lines.append(f"  {len(inputs.get('packed', []))} input file(s) packed (inputs/)")
        for item in inputs.get("skipped", []):
            lines.append(f"  not packed: {item.get('file')} ({item.get('reason')})")
        return "\n".join(lines)


def _read_manifest(text: bytes | str, where: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise CapsuleError(f"{where}: its manifest.json is not valid JSON ({exc}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != CAPSULE_FORMAT:
        raise CapsuleError(
            f"{where} is not a dashapp capsule: its manifest.json does not say "
            f"format {CAPSULE_FORMAT!r}."
        )
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CapsuleError(f"{where}: its capsule format version {version!r} is not understood.")
    if version > CAPSULE_VERSION:
        raise CapsuleError(
            f"This capsule was written by dashapp {manifest.get('dashapp', '?')} "
            f"(capsule format {version}); this dashapp ({_dashapp_version()}) reads format "
            f"{CAPSULE_VERSION}: upgrade dashapp to open it (pip install -U dashapp)."
        )
    return manifest


@dataclasses.dataclass(frozen=True)
class CapsuleLimits:
    """What a capsule may unpack: a capsule comes from someone else (a zip bomb, a huge manifest).

    Sizes are checked on what the zip declares before anything is written, and again on the
    bytes actually written. Deflate packs a file of zeros (and an HDF5 file that is mostly fill
    value) about 1000:1, so the ratio applies only above ``ratio_floor``: a capsule unpacks to
    at most ``ratio`` times its packed size or ``ratio_floor``, whichever is more.
    """

    #: Largest ``manifest.json`` read (it is parsed in memory; ``environment.json`` too).
    manifest_bytes: int = 16 * 2**20
    #: Largest unpacked member.
    member_bytes: int = 2**30
    #: Largest unpacked capsule.
    total_bytes: int = 2 * 2**30
    #: Members in one capsule.
    members: int = 100_000
    #: Largest unpacked/packed size ratio (of each member and of the whole)...
    ratio: float = 200.0
    #: ...for sizes above this many unpacked bytes.
    ratio_floor: int = 64 * 2**20


#: The limits :func:`open_capsule` applies unless given others.
LIMITS = CapsuleLimits()
#: Members read whole into memory when a capsule is used: as small as its manifest.
_READ_WHOLE = ("manifest.json", "environment.json", "environment.txt")
#: Written by :func:`open_capsule` into a folder it extracts into: which files it wrote there.
_MARKER = ".dashapp-capsule.json"


def _refuse(where: Path, name: str, why: str) -> CapsuleError:
    return CapsuleError(f"{where}: refusing the member {name!r}, {why}; nothing was extracted.")


def _member_parts(name: str) -> tuple[str, ...]:
    return PurePosixPath(name.replace("\\", "/")).parts


def _check_members(
    zf: zipfile.ZipFile, where: Path, limits: CapsuleLimits
) -> list[zipfile.ZipInfo]:
    """Every member, checked before anything is written (names, links, declared sizes)."""
    infos = zf.infolist()
    if len(infos) > limits.members:
        raise CapsuleError(
            f"{where} has {len(infos):,} members; a capsule may have at most {limits.members:,}."
        )
    seen: set[str] = set()
    folders: set[str] = set()
    files: set[str] = set()
    total = packed = 0
    for member in infos:
        name = member.filename
        pure = PurePosixPath(name.replace("\\", "/"))
        parts = pure.parts
        if "\x00" in name or not parts or pure.is_absolute() or ".." in parts or ":" in parts[0]:
            raise _refuse(where, name, "which points outside")
        if (member.external_attr >> 16) & 0o170000 == 0o120000:
            raise _refuse(where, name, "a symbolic link")
        if parts[0] in (_MARKER, _EXTRACTED) or parts[0].startswith(".extract-"):
            raise _refuse(where, name, "a name dashapp keeps for itself")
        key = pure.as_posix()
        if key in seen:
            raise _refuse(where, name, "which is in the capsule twice")
        seen.add(key)
        folders.update(PurePosixPath(*parts[:i]).as_posix() for i in range(1, len(parts)))
        if member.is_dir():
            folders.add(key)
            continue
        files.add(key)
        size = member.file_size
        if key in _READ_WHOLE and size > limits.manifest_bytes:
            raise _refuse(
                where,
                name,
                f"which unpacks to {_human(size)}; it is read whole, so at most "
                f"{_human(limits.manifest_bytes)}",
            )
        if size > limits.member_bytes:
            raise _refuse(
                where,
                name,
                f"which unpacks to {_human(size)} (at most {_human(limits.member_bytes)})",
            )
        if size > limits.ratio_floor and size > limits.ratio * max(member.compress_size, 1):
            raise _refuse(
                where,
                name,
                f"which unpacks {size / max(member.compress_size, 1):,.0f} times its packed size "
                f"(at most {limits.ratio:g} times above {_human(limits.ratio_floor)})",
            )
        total += size
        packed += member.compress_size
    clash = files & folders
    if clash:
        raise _refuse(where, sorted(clash)[0], "which is both a file and a folder")
    if total > limits.total_bytes:
        raise CapsuleError(
            f"{where} unpacks to {_human(total)}; a capsule may unpack to at most "
            f"{_human(limits.total_bytes)}. Nothing was extracted."
        )
    if total > limits.ratio_floor and total > limits.ratio * max(packed, 1):
        raise CapsuleError(
            f"{where} unpacks to {_human(total)}, {total / max(packed, 1):,.0f} times its packed "
            f"size (at most {limits.ratio:g} times above {_human(limits.ratio_floor)}): refused "
            "as a possible zip bomb. Nothing was extracted."
        )
    return infos


def _extract_members(
    zf: zipfile.ZipFile,
    infos: list[zipfile.ZipInfo],
    dest: Path,
    where: Path,
    limits: CapsuleLimits,
) -> list[str]:
    """Write the checked members under ``dest``, counting the bytes actually unpacked."""
    written: list[str] = []
    total = 0
    for member in infos:
        parts = _member_parts(member.filename)
        target = dest.joinpath(*parts)
        if member.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        with zf.open(member) as src, open(target, "xb") as out:
            while chunk := src.read(2**20):
                size += len(chunk)
                total += len(chunk)
                if size > member.file_size or size > limits.member_bytes:
                    raise _refuse(where, member.filename, "which unpacks to more than it declares")
                if total > limits.total_bytes:
                    raise CapsuleError(
                        f"{where} unpacks to more than {_human(limits.total_bytes)}; "
                        "nothing was extracted."
                    )
                out.write(chunk)
        written.append(PurePosixPath(*parts).as_posix())
    return written


def _ours(folder: Path) -> set[str] | None:
    """The files an earlier ``open`` wrote into ``folder`` (None: not made by dashapp)."""
    marker = folder / _MARKER
    try:
        if marker.is_symlink() or marker.stat().st_size > LIMITS.manifest_bytes:
            return None
        data = json.loads(marker.read_text(encoding="utf-8"))
        return {str(f) for f in data["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _plan(folder: Path, names: list[str], where: Path) -> tuple[str, set[str]]:
    """Whether extracting ``names`` into ``folder`` is allowed: ``("new" | "merged", ours)``.

    A new or empty folder is filled. A folder an earlier ``open`` made gets the capsule's files
    over the files that ``open`` wrote; any other file there is left alone, and one the capsule
    would overwrite is refused. Any other non-empty folder is refused. Nothing is ever deleted.
    """
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise CapsuleError(f"{folder} is not a folder; nothing was extracted.")
    if not folder.exists() or not any(folder.iterdir()):
        return "new", set()
    ours = _ours(folder)
    if ours is None:
        raise CapsuleError(
            f"{folder} is not empty and was not made by 'dashapp capsule open': nothing was "
            "extracted, and nothing there was changed or deleted. Open the capsule into a new "
            "or empty folder."
        )
    base = os.path.realpath(folder)
    for name in names:
        target = folder / name
        for parent in list(reversed(target.parents))[len(folder.parents) + 1 :]:
            if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
                raise CapsuleError(
                    f"{where}: {name} would be written through {parent}, which is not a folder "
                    f"dashapp made; nothing was extracted."
                )
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise CapsuleError(
                f"{folder}: {name} is there and is not a file dashapp wrote; nothing was extracted."
            )
        if target.exists() and name not in ours:
            raise CapsuleError(
                f"{folder}: {name} is there and was not written by 'dashapp capsule open'; "
                "nothing was extracted, and nothing there was changed. Open the capsule into a "
                "new or empty folder."
            )
        real = os.path.realpath(target)
        if not real.startswith(base + os.sep):
            raise CapsuleError(f"{where}: {name} would be written outside {folder}.")
    return "merged", ours


def _extract_into(
    zf: zipfile.ZipFile, folder: Path, source: Path, limits: CapsuleLimits = LIMITS
) -> str:
    """Extract into ``folder`` without deleting anything; returns ``"new"`` or ``"merged"``.

    Members are checked (:func:`_check_members`), the folder too (:func:`_plan`), then unpacked
    into a staging folder and moved file by file into place.
    """
    infos = _check_members(zf, source, limits)
    names = [PurePosixPath(*_member_parts(m.filename)).as_posix() for m in infos if not m.is_dir()]
    how, ours = _plan(folder, names, source)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=folder))
    try:
        written = _extract_members(zf, infos, staging, source, limits)
        # the marker first: a crash part way leaves the files listed as dashapp's own
        marker = {"written_by": "dashapp capsule open", "capsule": str(source)}
        marker["files"] = sorted(ours | set(written))  # type: ignore[assignment]
        (folder / _MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
        for info in infos:
            if info.is_dir():
                (folder / PurePosixPath(*_member_parts(info.filename))).mkdir(
                    parents=True, exist_ok=True
                )
        for name in written:
            dest = folder / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return how


#: Serialises extraction into the shared cache folder (every browser session of a server
#: serving a capsule opens it).
_EXTRACT_LOCK = threading.Lock()
#: Written last into a cache folder: its extraction is complete and can be reused.
_EXTRACTED = ".extracted"


def _read_zip_manifest(zf: zipfile.ZipFile, source: Path, limits: CapsuleLimits) -> bytes:
    try:
        info = zf.getinfo("manifest.json")
    except KeyError:
        raise CapsuleError(
            f"{source} is a zip file but not a dashapp capsule: it has no "
            "manifest.json (or it was cut short while being written)."
        ) from None
    too_big = CapsuleError(
        f"{source}: its manifest.json is larger than {_human(limits.manifest_bytes)}; "
        "refused (a capsule's manifest is a few kilobytes)."
    )
    if info.file_size > limits.manifest_bytes:
        raise too_big
    with zf.open(info) as fh:
        raw = fh.read(limits.manifest_bytes + 1)
    if len(raw) > limits.manifest_bytes:
        raise too_big
    return raw


def open_capsule(
    path: str | os.PathLike[str],
    extract_to: str | os.PathLike[str] | None = None,
    limits: CapsuleLimits = LIMITS,
) -> Capsule:
    """Open a capsule written by :func:`export_capsule`.

    Parameters
    ----------
    path
        The ``.capsule.zip`` file, or a folder holding an extracted capsule.
    extract_to
        Folder to extract into: a new or empty folder, or one an earlier ``open`` made (its
        files are replaced, other files there are left alone). Nothing is ever deleted; a
        folder with other content is refused. Default: a folder per capsule under
        :func:`capsule_cache`.
    limits
        Size, ratio and count limits on what the capsule unpacks (:class:`CapsuleLimits`).

    Raises
    ------
    CapsuleError
        If ``path`` is not a capsule, is damaged, breaks ``limits``, would write into a folder
        that has other content, or was written by a newer dashapp with a capsule format this
        one does not read.
    """
    source = Path(path)
    extraction = ""
    if source.is_dir():
        manifest_file = source / "manifest.json"
        if not manifest_file.is_file():
            raise CapsuleError(f"{source} is not a dashapp capsule: it has no manifest.json.")
        if manifest_file.stat().st_size > limits.manifest_bytes:
            raise CapsuleError(
                f"{source}: its manifest.json is larger than {_human(limits.manifest_bytes)}; "
                "refused (a capsule's manifest is a few kilobytes)."
            )
        manifest = _read_manifest(manifest_file.read_bytes(), source)
        folder = source
    else:
        if not source.exists():
            raise CapsuleError(f"{source}: no such capsule file.")
        if not zipfile.is_zipfile(source):
            raise CapsuleError(
                f"{source} is not a dashapp capsule: it is not a zip file "
                "(capsules are written by 'dashapp capsule export')."
            )
        try:
            with zipfile.ZipFile(source) as zf:
                manifest = _read_manifest(_read_zip_manifest(zf, source, limits), source)
                if extract_to is None:
                    st = source.stat()
                    key = f"{os.path.realpath(source)}\0{st.st_size}\0{st.st_mtime_ns}"
                    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
                    stem = source.name.removesuffix(".zip").removesuffix(".capsule")
                    folder = capsule_cache() / f"{stem}-{digest}"
                else:
                    folder = Path(extract_to)
                with _EXTRACT_LOCK:
                    # The cache folder's name carries the zip's size and mtime: a complete
                    # extraction is this capsule's, and is reused (another session may be
                    # reading its files right now), never extracted over.
                    if extract_to is not None:
                        extraction = _extract_into(zf, folder, source, limits)
                    elif not (folder / _EXTRACTED).is_file():
                        if folder.exists() and not folder.is_symlink():
                            shutil.rmtree(folder)  # our own, incomplete cache folder
                        extraction = _extract_into(zf, folder, source, limits)
                        (folder / _EXTRACTED).write_text(str(source))
                    else:
                        extraction = "cached"
        except zipfile.BadZipFile as exc:
            raise CapsuleError(f"{source}: the capsule is damaged ({exc}).") from None
    if not (folder / RECORD_NAME).is_file():
        raise CapsuleError(f"{source}: the capsule has no {RECORD_NAME}.")
    return Capsule(
        path=source,
        folder=folder,
        manifest=manifest,
        record=Record(folder, read_only=True),
        root=_inputs_root(folder, source),
        extraction=extraction,
    )


def _inputs_root(folder: Path, source: Path) -> Path | None:
    """The capsule's ``inputs/`` folder, which must be inside the capsule's own folder."""
    inputs = folder / INPUTS_DIR
    if not inputs.is_dir():
        return None
    real, base = os.path.realpath(inputs), os.path.realpath(folder)
    if inputs.is_symlink() or not real.startswith(base + os.sep):
        raise CapsuleError(
            f"{source}: its {INPUTS_DIR}/ folder is a link to {real}, outside the capsule; "
            "a capsule serves only its own files."
        )
    return inputs
