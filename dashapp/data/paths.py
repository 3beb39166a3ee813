"""Files under a root directory: confinement, folder listing and HDF5 recognition.

The server shows one directory tree (the *root*) and nothing outside it. Every path that comes
from a user (a URL, a click) is relative to the root and goes through :func:`resolve`, which
refuses ``..``, absolute paths and symlinks whose target lies outside the root.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import NotFound, NotHDF5, NotRegularFile, OutsideRoot

__all__ = [
    "HDF5_EXTENSIONS",
    "Entry",
    "check_hdf5_signature",
    "check_regular_file",
    "has_hdf5_signature",
    "list_folder",
    "relative_to_root",
    "resolve",
]

#: File name extensions listed by the browser without looking inside the file.
HDF5_EXTENSIONS = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".nc", ".nc4", ".he5", ".cxi")

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_HDF4_SIGNATURE = b"\x0e\x03\x13\x01"
# HDF5 allows a user block before the superblock: the signature sits at 0, 512, 1024, 2048, ...
_SIGNATURE_OFFSETS = (0, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
# Looking inside files without a known extension costs one open per file; on a parallel
# filesystem folders of many thousands of files make that slow, so stop sniffing after this many.
_MAX_SNIFFED = 500


@dataclass(frozen=True)
class Entry:
    """One row of a folder listing."""

    name: str
    #: Path relative to the root, with ``/`` separators ("" is the root itself).
    path: str
    kind: str  # "folder" | "file"
    size: int
    mtime: float
    #: Why the entry cannot be opened, or "" when it can (e.g. a symlink leading out of the root).
    problem: str = ""
    #: For a pipe, socket or device with an HDF5 name: what it is ("a named pipe"); else "".
    special: str = ""


def _root(root: str | os.PathLike[str]) -> Path:
    real = Path(os.path.realpath(root))
    if not real.is_dir():
        raise NotFound(f"The root directory {os.fspath(root)!r} does not exist or is not a folder.")
    return real


def resolve(root: str | os.PathLike[str], relpath: str | os.PathLike[str] | None) -> Path:
    """Return the real path of ``relpath`` inside ``root``.

    Parameters
    ----------
    root
        The directory the server shows.
    relpath
        A path relative to ``root`` with ``/`` separators; ``""`` or ``None`` is the root.

    Raises
    ------
    OutsideRoot
        If the path is absolute, climbs with ``..`` or leads out of the root through a symlink.
    NotFound
        If nothing exists there.
    """
    base = _root(root)
    rel = os.fspath(relpath or "")
    if "\x00" in rel:
        raise OutsideRoot("A path may not contain NUL characters.")
    pure = PurePosixPath(rel.replace("\\", "/"))
    if pure.is_absolute() or rel.startswith("~"):
        raise OutsideRoot(
            f"{rel!r} is an absolute path; paths are relative to the root folder {str(base)!r}."
        )
    if ".." in pure.parts:
        raise OutsideRoot(f"{rel!r} climbs out with '..'; only files under the root can be opened.")
    candidate = base.joinpath(*pure.parts)
    real = Path(os.path.realpath(candidate))
    if real != base and base not in real.parents:
        raise OutsideRoot(
            f"{rel!r} is a link to {str(real)!r}, which is outside the root folder {str(base)!r}."
        )
    if not real.exists():
        raise NotFound(f"{rel!r} does not exist under the root folder.")
    return real


def relative_to_root(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> str:
    """Return ``path`` as a ``/``-separated path relative to ``root`` (refusing paths outside)."""
    base = _root(root)
    real = Path(os.path.realpath(path))
    if real == base:
        return ""
    if base not in real.parents:
        raise OutsideRoot(f"{os.fspath(path)!r} is outside the root folder {str(base)!r}.")
    return real.relative_to(base).as_posix()


def special_kind(mode: int) -> str:
    """What a non-regular file is, in words ("a named pipe"), or "" for a regular file."""
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a special file"


def _not_regular(name: str, kind: str) -> NotRegularFile:
    return NotRegularFile(
        f"{name} is {kind}, not a file: dashapp opens only regular files (reading {kind} "
        "could wait forever for a writer, or never end)."
    )


def check_regular_file(path: str | os.PathLike[str]) -> os.stat_result:
    """``os.stat`` of ``path``, raising :class:`NotRegularFile` for pipes, sockets and devices.

    Opening a named pipe waits until a writer appears, and reading a device may never end; a
    path named ``run.h5`` can be either. ``stat`` tells without opening anything.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError as exc:
        raise NotFound(f"{p.name} does not exist.") from exc
    except PermissionError as exc:
        raise NotHDF5(f"{p.name}: permission denied ({exc.strerror}).") from exc
    except OSError as exc:
        raise NotFound(f"{p.name}: cannot be read ({exc.strerror}).") from exc
    kind = special_kind(st.st_mode)
    if kind:
        raise _not_regular(p.name, kind)
    return st


@contextlib.contextmanager
def open_regular(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a regular file for reading, never blocking on a pipe or device put in its place.

    The ``O_NONBLOCK`` open returns at once for a pipe swapped in after :func:`check_regular_file`
    (``fstat`` then refuses it). A regular file whose open would wait (a lease being broken,
    a hung mount) is opened normally: callers on a server bound that wait with
    :func:`~dashapp.data.fsguard.bounded`.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except BlockingIOError:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        kind = special_kind(os.fstat(fd).st_mode)
        if kind:
            raise _not_regular(p.name, kind)
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh


def has_hdf5_signature(path: str | os.PathLike[str]) -> bool:
    """True if the file starts (after an optional user block) with the HDF5 signature.

    False for anything that is not a regular file (a pipe is never opened).
    """
    try:
        with open_regular(path) as fh:
            for offset in _SIGNATURE_OFFSETS:
                fh.seek(offset)
                head = fh.read(8)
                if len(head) < 8:
                    return False
                if head == _HDF5_SIGNATURE:
                    return True
    except (OSError, NotRegularFile):
        return False
    return False


def check_hdf5_signature(path: str | os.PathLike[str]) -> None:
    """Raise :class:`NotHDF5` with a precise reason if ``path`` is not an HDF5 file.

    Recognises the usual impostors by their magic numbers: HDF4 (NeXus files of the 1990s-2000s),
    netCDF-3 classic, and empty files, so the message can say what the file *is*.
    """
    p = Path(path)
    size = check_regular_file(p).st_size
    try:
        with open_regular(p) as fh:
            head = fh.read(8)
    except PermissionError as exc:
        raise NotHDF5(f"{p.name}: permission denied ({exc.strerror}).") from exc
    except OSError as exc:
        raise NotFound(f"{p.name}: cannot be read ({exc.strerror}).") from exc
    if size == 0:
        raise NotHDF5(
            f"{p.name} is empty (0 bytes): a copy or download that did not finish, "
            "or a placeholder for a file kept elsewhere."
        )
    if has_hdf5_signature(p):
        return
    if head.startswith(_HDF4_SIGNATURE):
        raise NotHDF5(
            f"{p.name} is an HDF4 file, not HDF5. Convert it with the HDF Group's h4toh5 tool "
            "(or nxconvert for NeXus files) to view it here."
        )
    if head[:3] == b"CDF":
        raise NotHDF5(
            f"{p.name} is a netCDF-3 (classic) file, not HDF5; "
            "netCDF-4 files are HDF5 and open here."
        )
    raise NotHDF5(f"{p.name} is not an HDF5 file (no HDF5 signature in its first bytes).")


def _is_listed_file(path: Path, sniff: bool) -> bool:
    if path.suffix.lower() in HDF5_EXTENSIONS:
        return True
    return sniff and has_hdf5_signature(path)


def list_folder(root: str | os.PathLike[str], relpath: str = "") -> list[Entry]:
    """List the sub-folders and HDF5 files of a folder under ``root``.

    Files are listed when their extension is one of :data:`HDF5_EXTENSIONS` or, for other names,
    when they carry the HDF5 signature. Pipes, sockets and devices are never opened; those with
    an HDF5 extension are listed with a ``problem`` saying what they are. Hidden entries (dot
    files) are skipped. Symlinks leading out of the root are listed with a ``problem`` so the
    user sees why they cannot be opened.
    Folders come first, then files, each sorted by name.
    """
    base = _root(root)
    folder = resolve(root, relpath)
    if not folder.is_dir():
        raise NotFound(f"{relpath!r} is not a folder.")
    prefix = relative_to_root(base, folder)
    folders: list[Entry] = []
    files: list[Entry] = []
    sniffed = 0
    try:
        scan = sorted(os.scandir(folder), key=lambda e: e.name.lower())
    except PermissionError as exc:
        raise NotFound(f"{relpath or '/'}: permission denied ({exc.strerror}).") from exc
    for entry in scan:
        if entry.name.startswith("."):
            continue
        rel = f"{prefix}/{entry.name}" if prefix else entry.name
        problem = ""
        try:
            st = entry.stat(follow_symlinks=True)
        except OSError:
            if entry.is_symlink():
                files.append(Entry(entry.name, rel, "file", 0, 0.0, "broken symbolic link"))
            continue
        if entry.is_symlink():
            real = Path(os.path.realpath(entry.path))
            if real != base and base not in real.parents:
                problem = "link leading outside the root folder"
        if stat.S_ISDIR(st.st_mode):
            folders.append(Entry(entry.name, rel, "folder", 0, st.st_mtime, problem))
        elif stat.S_ISREG(st.st_mode):
            path = Path(entry.path)
            known = path.suffix.lower() in HDF5_EXTENSIONS
            sniff = not known and not problem and sniffed < _MAX_SNIFFED
            sniffed += sniff
            if _is_listed_file(path, sniff):
                files.append(Entry(entry.name, rel, "file", st.st_size, st.st_mtime, problem))
        elif Path(entry.name).suffix.lower() in HDF5_EXTENSIONS:
            # A pipe or device named like an HDF5 file: listed (so the user sees why it does
            # not open) but never opened, not even to look for a signature.
            kind = special_kind(st.st_mode)
            problem = problem or f"{kind}, not a file"
            files.append(Entry(entry.name, rel, "file", 0, st.st_mtime, problem, special=kind))
    return folders + files
