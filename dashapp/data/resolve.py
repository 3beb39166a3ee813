"""Opening an object by its HDF5 path, one hop at a time, never leaving the root.

An HDF5 path can lead to another file in four ways: an external link, a soft link whose target
runs through an external link, the source files of a virtual dataset, and the raw files of a
dataset with *external storage* (``H5Pset_external``). HDF5 follows all of them by itself, and
looks for the files in places of its own (``HDF5_EXT_PREFIX``, ``HDF5_VDS_PREFIX``,
``HDF5_EXTFILE_PREFIX``, the current working directory). :func:`resolve_object` is the one
place the data layer opens an object by path; it walks the path link by link:

- a hard link is followed (the object is in the same file);
- a soft link's target is walked the same way, from the file's root or the link's group,
  with a limit on hops so that loops end with a sentence;
- an external link's file is located by dashapp, not HDF5 (absolute, or relative to the
  linking file's folder; an absolute path that does not exist is looked for by its name in
  that folder, as HDF5 does), refused when its real path is outside the root, and opened
  through :func:`~dashapp.data.files.open_file`; the link's path is walked in it;
- a dataset at the end is checked before it is returned: every file HDF5 could read its
  virtual sources from, in HDF5's own search order, and every raw file of its external
  storage must be inside the root (and the source datasets are walked too).

Any hop leaving the root raises :class:`~dashapp.data.errors.OutsideRoot` with a sentence
naming the hop: "/a cannot be opened: /a is a soft link to /ext/data; /ext is an external link
to /tmp/outside.h5, which is outside the root folder /data."
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py

from .errors import BrokenLink, NotFound, NotHDF5, OutsideRoot, Unsupported
from .files import h5_errors, open_file, refresh_once
from .paths import has_hdf5_signature

__all__ = [
    "MAX_LINK_HOPS",
    "VirtualSources",
    "check_external_storage",
    "check_virtual_sources",
    "external_link_file",
    "open_dataset",
    "open_object",
    "resolve_object",
    "virtual_source_file",
]

#: Soft and external links followed for one path before it is called a loop (Linux allows 40
#: symbolic links in one path; HDF5 itself stops at 16 soft links).
MAX_LINK_HOPS = 40
#: Virtual datasets whose sources are virtual (or reached through other files) checked this deep.
MAX_NESTING = 8
#: Distinct source files of one virtual dataset checked; more are refused (each costs an open).
MAX_VIRTUAL_FILES = 10_000
#: Seconds a virtual dataset's verdict is reused (every slice read checks the dataset again;
#: checking opens each source file: 0.7 s for 100 of them).
_MEMO_SECONDS = 60.0


def _real_root(root: str | os.PathLike[str] | None) -> Path | None:
    return Path(os.path.realpath(root)) if root is not None else None


def _inside(real: Path, root: Path | None) -> bool:
    return root is None or real == root or root in real.parents


def _not_regular(real: Path) -> bool:
    try:
        return not stat.S_ISREG(os.stat(real).st_mode)
    except OSError:
        return False


def external_link_file(
    linking_file: str | os.PathLike[str],
    filename: str,
    root: str | os.PathLike[str] | None,
    where: str = "",
) -> Path:
    """The real path of the file an external link in ``linking_file`` names, checked.

    An absolute name is taken as it is; if no file is there, the file of that name in the
    linking file's folder is used (as HDF5 does for files moved together). A relative name is
    relative to the linking file's folder. dashapp does not look where HDF5 also would (the
    ``HDF5_EXT_PREFIX`` folders, the server's working directory): a link means the file next to
    the one that holds it.

    Raises
    ------
    OutsideRoot
        If the file (after symbolic links) is outside ``root``.
    BrokenLink
        If no such file exists.
    Unsupported
        If it is not a regular file (a FIFO, a device, a folder).
    """
    rroot = _real_root(root)
    where = where or "an external link"
    base = Path(os.path.realpath(linking_file)).parent
    target = Path(filename)
    candidates = [target, base / target.name] if target.is_absolute() else [base / target]
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))
        if not os.path.lexists(candidate):
            continue
        if not _inside(real, rroot):
            raise OutsideRoot(
                f"{where} is an external link to {filename}, which is outside the root folder "
                f"{str(rroot)!r}"
            )
        if _not_regular(real):
            raise Unsupported(
                f"{where} is an external link to {filename}, which is not a regular file "
                "(a folder, pipe or device); only HDF5 files are opened."
            )
        if real.is_file():
            return real
    raise BrokenLink(f"{where} is an external link to {filename}, which does not exist.")


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def resolve_object(
    f: h5py.File,
    path: str,
    root: str | os.PathLike[str] | None = None,
    stack: contextlib.ExitStack | None = None,
    *,
    check_data: bool = True,
    external: bool = True,
    _depth: int = 0,
) -> h5py.HLObject:
    """Return the object at ``path`` in the open file ``f``, walking every link hop by hop.

    Parameters
    ----------
    f
        An open file (from :func:`~dashapp.data.files.open_file`).
    path
        An HDF5 path; relative paths start at the file's root group.
    root
        The folder the server shows; no hop may leave it. None: no confinement (notebooks).
    stack
        Holds the handles of files external links lead to, for as long as the object is used.
        Without one, an external link raises :class:`Unsupported`.
    check_data
        Also check the files a dataset at the end reads its values from (virtual sources,
        external raw storage).
    external
        Follow external links (False while checking a virtual dataset's source, which HDF5
        opens by itself and whose links dashapp cannot steer).

    Raises
    ------
    OutsideRoot
        A hop leaves ``root``; the message names the hop.
    NotFound, BrokenLink
        Nothing is at ``path``, or a link on the way leads nowhere (or loops).
    Unsupported
        A user-defined link, or a link to a pipe or device.
    """
    rroot = _real_root(root)
    requested = path or "/"
    file = Path(f.filename)  # (external_link_file takes its real folder)
    top: h5py.Group = f["/"]
    obj: h5py.HLObject = top
    walked = ""
    # (name, as written): components of the path as written in the current file, as opposed to
    # those a soft link's target adds; the object is opened again by the written path at the
    # end, so that its name (and so its parent: NeXus NXdata axes) is the one asked for
    todo = [(p, True) for p in _components(path)]
    written: list[str] = []
    via: list[str] = []
    hops = 0

    def fail(kind: type[Exception], sentence: str) -> Exception:
        chain = "; ".join([*via, sentence])
        if not via and sentence.startswith(requested + " "):
            return kind(sentence + ".")
        return kind(f"{requested} cannot be opened: {chain}.")

    while todo:
        part, as_written = todo.pop(0)
        if as_written:
            written.append(part)
        if not isinstance(obj, h5py.Group):
            raise fail(NotFound, f"{walked} is a dataset, not a group")
        here = f"{walked}/{part}"
        try:
            link = obj.get(part, getlink=True)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise fail(NotFound, f"{here} cannot be read ({exc})") from exc
        if link is None:  # after a link, the link is broken
            raise fail(BrokenLink if via else NotFound, f"{here} does not exist in {file.name}")
        if isinstance(link, h5py.HardLink):
            obj = obj[part]  # a hard link: the object is in this file
            walked = here
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            raise fail(BrokenLink, f"the links loop (more than {MAX_LINK_HOPS} hops)")
        if isinstance(link, h5py.SoftLink):
            target = link.path
            via.append(f"{here} is a soft link to {target}")
            if target.startswith("/"):
                obj, walked = top, ""
            todo = [(p, False) for p in _components(target)] + todo
            continue
        if isinstance(link, h5py.ExternalLink):
            what = f"{here} is an external link to {link.filename}:{link.path}"
            if not external:
                raise fail(
                    Unsupported,
                    f"{what}, which dashapp does not follow inside a virtual dataset's source",
                )
            if stack is None:
                raise fail(Unsupported, f"{what}, and no file handle can be kept for it")
            try:
                real = external_link_file(file, link.filename, rroot, here)
            except (OutsideRoot, BrokenLink, Unsupported) as exc:
                raise fail(type(exc), str(exc).rstrip(".")) from None
            via.append(what)
            if _depth + len(via) > MAX_LINK_HOPS:
                raise fail(BrokenLink, "the links loop")
            ext = stack.enter_context(open_file(real))
            file, top = real, ext["/"]
            obj, walked = top, ""
            # in the linked file, the path as written is the link's path and everything after
            todo = [(p, True) for p in [*_components(link.path), *(t for t, _ in todo)]]
            written = []
            continue
        raise fail(Unsupported, f"{here} is a user-defined link, which dashapp does not follow")
    if written and via:
        # every hop was checked and stays in this file: HDF5 follows the same soft links
        obj = top["/" + "/".join(written)]
    if check_data and isinstance(obj, h5py.Dataset):
        try:
            check_external_storage(obj, rroot)
            if obj.is_virtual:
                check_virtual_sources(obj, rroot, _depth=_depth)
        except (OutsideRoot, Unsupported) as exc:
            if not via:
                raise
            raise fail(type(exc), str(exc).rstrip(".")) from None
    return obj


@contextlib.contextmanager
def open_object(
    file: str | os.PathLike[str], path: str, root: str | os.PathLike[str] | None = None
) -> Iterator[h5py.HLObject]:
    """Borrow the object at ``path`` in ``file`` (and any file a link leads to) for a block.

    ``with open_object(file, "/entry/data", root) as obj: ...``: see :func:`resolve_object`.
    """
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(open_file(file))
        stack.enter_context(h5_errors(file, path))
        yield resolve_object(f, path, root, stack)


@contextlib.contextmanager
def open_dataset(
    file: str | os.PathLike[str], path: str, root: str | os.PathLike[str] | None = None
) -> Iterator[h5py.Dataset]:
    """Like :func:`open_object` but insists on a dataset (refreshed for a SWMR writer)."""
    with open_object(file, path, root) as obj:
        if not isinstance(obj, h5py.Dataset):
            raise Unsupported(f"{path} is a group, not a dataset; pick a dataset inside it.")
        refresh_once(obj)  # see what a SWMR writer appended since the file was opened
        yield obj


# ----------------------------------------------------------------------------- raw files
def check_external_storage(ds: h5py.Dataset, root: str | os.PathLike[str] | None) -> None:
    """Refuse a dataset whose values live in raw files (external storage) outside ``root``.

    HDF5 finds those files through ``HDF5_EXTFILE_PREFIX``, else the dataset's access
    property, else relative to the *working directory of the process* (not the file's folder),
    so the check uses the same rule as the read will.
    """
    try:
        files = ds.external
    except Exception:  # damaged layout message: the read will say so
        return
    if not files:
        return
    rroot = _real_root(root)
    prefix = os.environ.get("HDF5_EXTFILE_PREFIX")
    if prefix is None:
        try:
            prefix = os.fsdecode(ds.id.get_access_plist().get_efile_prefix() or b"")
        except Exception:
            prefix = ""
    origin = str(Path(os.path.realpath(ds.file.filename)).parent)
    prefix = prefix.replace("${ORIGIN}", origin)
    for name, _offset, _size in files:
        name = os.fsdecode(name)
        if os.path.isabs(name):
            place = Path(name)
        elif prefix:
            place = Path(prefix) / name
        else:
            place = Path.cwd() / name
        real = Path(os.path.realpath(place))
        if not _inside(real, rroot):
            raise OutsideRoot(
                f"{ds.name} keeps its values in the raw file {name} (read from {str(real)!r}), "
                f"which is outside the root folder {str(rroot)!r}"
            )
        if _not_regular(real):
            raise Unsupported(
                f"{ds.name} keeps its values in {name}, which is not a regular file "
                "(a folder, pipe or device)"
            )


# ----------------------------------------------------------------------------- virtual
@dataclass(frozen=True)
class VirtualSources:
    """What the check of a virtual dataset's sources found."""

    #: Distinct source files (``.``, the dataset's own file, counts as one).
    files: int
    #: Source files found nowhere: their parts read as the fill value.
    missing: int
    #: Sentences about the missing files (at most five).
    problems: tuple[str, ...]


_MEMO: OrderedDict[tuple, tuple[float, VirtualSources | Exception]] = OrderedDict()
_MEMO_LOCK = threading.Lock()


def _search_places(vds_file: Path, name: str) -> list[Path]:
    """Where HDF5 looks for a virtual source file, in its order (``H5F_prefix_open_file``)."""
    p = Path(name)
    places: list[Path] = []
    rel = p
    if p.is_absolute():
        places.append(p)
        rel = Path(p.name)
    env = os.environ.get("HDF5_VDS_PREFIX")
    if env:
        for prefix in env.split(os.pathsep):
            if prefix:
                places.append(Path(prefix.replace("${ORIGIN}", str(vds_file.parent))) / rel)
    places.append(vds_file.parent / rel)
    places.append(Path.cwd() / rel)  # last, HDF5 tries the bare name: the working directory
    return places


def virtual_source_file(vds: str, vds_file: Path, name: str, root: Path | None) -> Path | None:
    """The file HDF5 would read a source from (None: none found, the parts are fill)."""
    if "%b" in name:  # a printf-style name of an unlimited mapping: check the folders searched
        for place in _search_places(vds_file, name):
            folder = Path(os.path.realpath(place.parent))
            if folder.is_dir() and not _inside(folder, root):
                raise OutsideRoot(
                    f"{vds} is a virtual dataset reading {name}, files in "
                    f"{str(folder)!r}, which is outside the root folder {str(root)!r}"
                )
        return None
    for place in _search_places(vds_file, name):
        if not os.path.lexists(place):
            continue
        real = Path(os.path.realpath(place))
        if not _inside(real, root):
            raise OutsideRoot(
                f"{vds} is a virtual dataset reading its source {name} from {str(real)!r}, "
                f"which is outside the root folder {str(root)!r}"
            )
        if _not_regular(real):
            if real.is_dir():
                continue  # HDF5 cannot open a folder and looks further
            raise Unsupported(
                f"{vds} is a virtual dataset reading its source {name} from {str(real)!r}, "
                "which is not a regular file (a pipe or device)"
            )
        if has_hdf5_signature(real):
            return real
    return None


def check_virtual_sources(
    ds: h5py.Dataset, root: str | os.PathLike[str] | None = None, *, _depth: int = 0
) -> VirtualSources:
    """Check every file a virtual dataset reads from; refuse any outside ``root``.

    Each source file is located as HDF5 will locate it (see :func:`_search_places`), and each
    source dataset is walked inside its file with :func:`resolve_object` (external links there
    are refused: HDF5, not dashapp, would follow them). Missing files and datasets are fine:
    their parts read as the fill value, and the result counts them.

    Raises
    ------
    OutsideRoot
        If a source file, or a hop to a source dataset, lies outside ``root``.
    Unsupported
        If a source is a pipe or device, or the sources nest more than :data:`MAX_NESTING` deep.
    """
    rroot = _real_root(root)
    vds_file = Path(os.path.realpath(ds.file.filename))
    try:
        st = vds_file.stat()
        stamp: tuple = (st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = ()
    key = (
        str(vds_file),
        stamp,
        ds.name,
        str(rroot),
        os.getcwd(),
        os.environ.get("HDF5_VDS_PREFIX"),
    )
    now = time.monotonic()
    with _MEMO_LOCK:
        hit = _MEMO.get(key)
    if hit is not None and now - hit[0] < _MEMO_SECONDS:
        if isinstance(hit[1], Exception):
            raise hit[1]
        return hit[1]
    try:
        result: VirtualSources | Exception = _check_virtual(ds, vds_file, rroot, _depth)
    except (OutsideRoot, Unsupported) as exc:
        result = exc
    with _MEMO_LOCK:
        _MEMO[key] = (now, result)
        while len(_MEMO) > 256:
            _MEMO.popitem(last=False)
    if isinstance(result, Exception):
        raise result
    return result


def _check_virtual(
    ds: h5py.Dataset, vds_file: Path, root: Path | None, depth: int
) -> VirtualSources:
    where = ds.name
    if depth >= MAX_NESTING:
        raise Unsupported(
            f"{where} is a virtual dataset whose sources are virtual datasets more than "
            f"{MAX_NESTING} deep; dashapp does not follow them"
        )
    try:
        sources = ds.virtual_sources()
    except Exception as exc:
        raise Unsupported(f"{where}: its virtual layout cannot be read ({exc})") from None
    by_file: dict[str, set[str]] = {}
    for src in sources:
        by_file.setdefault(src.file_name, set()).add(src.dset_name)
    if len(by_file) > MAX_VIRTUAL_FILES:
        raise Unsupported(
            f"{where} is a virtual dataset reading {len(by_file):,} files; dashapp checks at "
            f"most {MAX_VIRTUAL_FILES:,}"
        )
    missing = 0
    problems: list[str] = []
    for name, dsets in by_file.items():
        if name == ".":
            _check_source_datasets(ds.file, dsets, root, depth, where)
            continue
        real = virtual_source_file(where, vds_file, name, root)
        if real is None:
            missing += 1
            if len(problems) < 5:
                problems.append(f"source {name} is missing")
            continue
        try:
            with open_file(real) as sf:
                _check_source_datasets(sf, dsets, root, depth, where)
        except NotHDF5:
            continue  # HDF5 cannot read it either: its parts show the fill value
    return VirtualSources(len(by_file), missing, tuple(problems))


def _check_source_datasets(
    f: h5py.File, dsets: set[str], root: Path | None, depth: int, where: str
) -> None:
    for dset in sorted(dsets):
        try:
            with h5_errors(f.filename, dset):
                resolve_object(f, dset, root, None, external=False, _depth=depth + 1)
        except (OutsideRoot, Unsupported) as exc:
            raise type(exc)(
                f"{where} is a virtual dataset reading {dset} of {Path(f.filename).name}, and "
                + str(exc).rstrip(".")
            ) from None
        except (NotFound, NotHDF5):
            continue  # a missing source dataset reads as the fill value
