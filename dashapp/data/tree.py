"""The tree of an HDF5 file: groups, datasets, links and attributes as plain records.

:func:`read_tree` walks a file once and returns :class:`Node` records that a view can render
without touching h5py. Links are reported as links (soft, external), broken ones are marked
rather than raised, virtual datasets say how many of their source files are missing, and huge
groups are cut off with a note instead of hanging the server.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .errors import OutsideRoot, Unsupported
from .files import h5_errors, open_file, refresh_once
from .resolve import check_external_storage, check_virtual_sources, resolve_object

__all__ = [
    "Node",
    "dtype_kind",
    "dtype_label",
    "format_attr",
    "get_object",
    "read_tree",
    "virtual_source_problems",
]

#: Children listed per group before the rest is summarised ("... 9,000 more").
MAX_CHILDREN = 1000
#: Nodes listed per file before the walk stops.
MAX_NODES = 20000
_NUMERIC_KINDS = {"b": "bool", "i": "int", "u": "uint", "f": "float", "c": "complex"}


@dataclass
class Node:
    """One object (or link) in an HDF5 file.

    ``kind`` is ``"group"``, ``"dataset"``, ``"datatype"``, ``"soft"``/``"external"`` (links
    that were not followed), ``"broken"`` (a link to nothing) or ``"more"`` (a summary of
    children left out). ``problem`` is a human sentence when something is wrong with the node.
    """

    name: str
    path: str
    kind: str
    shape: tuple[int, ...] | None = None
    dtype: str = ""
    chunks: tuple[int, ...] | None = None
    compression: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    nx_class: str = ""
    link: str = ""  # "", "soft", "external"
    target: str = ""
    problem: str = ""
    viewable: bool = False
    virtual: bool = False
    children: list[Node] = field(default_factory=list)

    def walk(self):
        """Yield this node and every node below it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, path: str) -> Node | None:
        """Return the node at ``path`` (an absolute HDF5 path), or None."""
        for node in self.walk():
            if node.path == path:
                return node
        return None

    @property
    def summary(self) -> str:
        """A short description: shape, dtype, chunking and compression, or the link target."""
        if self.kind == "dataset":
            shape = "scalar" if self.shape == () else " × ".join(str(n) for n in self.shape or ())
            parts = [shape, self.dtype]
            if self.chunks:
                parts.append("chunks " + "×".join(str(c) for c in self.chunks))
            if self.compression:
                parts.append(self.compression)
            if self.virtual:
                parts.append("virtual")
            text = ", ".join(p for p in parts if p)
        elif self.kind == "group":
            text = self.nx_class or "group"
        else:
            text = self.kind
        if self.link:
            text += f" ({self.link} link → {self.target})"
        return text


def dtype_kind(dtype: np.dtype) -> str:
    """Classify a dtype: ``bool``, ``int``, ``uint``, ``float``, ``complex`` or what else."""
    if dtype.fields is not None:
        return "compound"
    if h5py.check_string_dtype(dtype) is not None or dtype.kind in "SUa":
        return "string"
    if h5py.check_vlen_dtype(dtype) is not None:
        return "vlen"
    if h5py.check_ref_dtype(dtype) is not None:
        return "reference"
    if dtype.kind == "V":
        return "opaque"
    if dtype.kind == "O":
        return "object"
    if dtype.subdtype is not None:
        return "array"
    return _NUMERIC_KINDS.get(dtype.kind, dtype.kind)


def dtype_label(dtype: np.dtype) -> str:
    """A readable dtype name: ``float32``, ``string``, ``compound{x, y}``, ``enum(int8)``..."""
    kind = dtype_kind(dtype)
    if kind == "compound":
        names = list(dtype.names or ())
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        return f"compound{{{shown}}}"
    if kind in ("string", "vlen", "reference", "opaque", "object"):
        return kind
    if kind == "array":
        return f"array{dtype.subdtype[1]} of {dtype.subdtype[0]}"
    if h5py.check_enum_dtype(dtype) is not None:
        return f"enum({dtype.name})"
    if kind == "bool":
        return "bool"
    return dtype.name


def format_attr(value: object, limit: int = 200) -> str:
    """Render an attribute value as short text."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
    elif isinstance(value, np.ndarray):
        if value.dtype.kind in "SO" and value.size <= 50:
            items = [
                v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                for v in value.ravel()
            ]
            text = "[" + ", ".join(items) + "]"
        elif value.size == 1 and value.ndim <= 1:
            text = format_attr(value.reshape(-1)[0], limit)
        else:
            text = np.array2string(value, threshold=20, max_line_width=limit)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _read_attrs(obj: h5py.HLObject) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        names = list(obj.attrs.keys())
    except Exception as exc:  # attribute table itself unreadable
        return {"(attributes)": f"<unreadable: {exc}>"}
    for name in names[:100]:
        try:
            out[name] = format_attr(obj.attrs[name])
        except Exception as exc:  # unsupported attribute type: show, don't fail the tree
            out[name] = f"<unreadable: {type(exc).__name__}>"
    if len(names) > 100:
        out["…"] = f"{len(names) - 100} more attributes"
    return out


_FILTER_NAMES = {
    1: "gzip", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit", 6: "scaleoffset",
    307: "bzip2", 32000: "lzf", 32001: "blosc", 32004: "lz4", 32008: "bitshuffle",
    32013: "zfp", 32015: "zstd", 32017: "sz", 32026: "blosc2",
}  # fmt: skip


def _compression(ds: h5py.Dataset) -> str:
    """The dataset's filter pipeline in words: ``gzip(4)+shuffle``, ``blosc``, ``filter 32099``."""
    parts = []
    try:
        plist = ds.id.get_create_plist()
        for i in range(plist.get_nfilters()):
            code, _flags, values, fname = plist.get_filter(i)
            name = _FILTER_NAMES.get(code)
            if name is None:
                label = fname.decode("utf-8", "replace") if fname else ""
                name = label.split()[0].lower() if label else f"filter {code}"
            if code == 1 and values:
                name += f"({values[0]})"
            parts.append(name)
    except Exception:  # description only: never fail the tree over it
        return ds.compression or ""
    # shuffle is listed first in the pipeline but reads better after the compressor
    if "shuffle" in parts and len(parts) > 1:
        parts.remove("shuffle")
        parts.insert(1, "shuffle")
    return "+".join(parts)


def virtual_source_problems(
    ds: h5py.Dataset, root: str | os.PathLike[str] | None = None
) -> tuple[int, int, list[str]]:
    """Check the source files of a virtual dataset (see :func:`.resolve.check_virtual_sources`).

    Returns ``(n_sources, n_missing, problems)`` where problems are sentences about sources that
    are missing or outside ``root``. Missing sources read as the fill value, so they are not an
    error, but the user must know.
    """
    try:
        found = check_virtual_sources(ds, root)
    except (OutsideRoot, Unsupported) as exc:
        return 0, 0, [str(exc).rstrip(".")]
    return found.files, found.missing, list(found.problems)


class _Walker:
    def __init__(self, file_path: Path, root: str | os.PathLike[str] | None) -> None:
        self.file_path = file_path
        self.root = root
        self.count = 0
        self.truncated = False

    def dataset_node(self, name: str, path: str, ds: h5py.Dataset) -> Node:
        node = Node(name=name, path=path, kind="dataset")
        refresh_once(ds)
        node.shape = tuple(int(n) for n in ds.shape) if ds.shape is not None else ()
        node.dtype = dtype_label(ds.dtype)
        node.chunks = ds.chunks
        node.compression = _compression(ds)
        node.attrs = _read_attrs(ds)
        node.nx_class = node.attrs.get("NX_class", "")
        kind = dtype_kind(ds.dtype)
        node.viewable = (
            kind in _NUMERIC_KINDS.values()
            and node.shape is not None
            and len(node.shape) >= 2
            and 0 not in node.shape
        )
        try:
            check_external_storage(ds, self.root)
        except (OutsideRoot, Unsupported) as exc:
            node.problem, node.viewable = str(exc).rstrip("."), False
        if ds.is_virtual:
            node.virtual = True
            _n, missing, problems = virtual_source_problems(ds, self.root)
            if problems:
                node.problem = "; ".join(problems)
                if missing:
                    node.problem = f"{missing} virtual source file(s) missing: " + node.problem
                else:  # outside the root, or not a file: it cannot be shown
                    node.viewable = False
        return node

    def visit(self, group: h5py.Group, path: str, name: str, depth: int) -> Node:
        node = Node(name=name, path=path or "/", kind="group")
        node.attrs = _read_attrs(group)
        node.nx_class = node.attrs.get("NX_class", "")
        try:
            names = list(group.keys())
        except Exception as exc:
            if depth == 0:  # the root group itself is damaged: the file cannot be browsed
                raise
            node.problem = f"members unreadable: {exc}"
            return node
        for i, child in enumerate(names):
            if i >= MAX_CHILDREN or self.count >= MAX_NODES:
                rest = len(names) - i
                node.children.append(
                    Node(
                        name=f"… {rest:,} more",
                        path=f"{path}/…",
                        kind="more",
                        problem=f"{rest:,} members not listed",
                    )
                )
                self.truncated = True
                break
            self.count += 1
            node.children.append(self.child(group, path, child, depth))
        return node

    def child(self, group: h5py.Group, path: str, name: str, depth: int) -> Node:
        cpath = f"{path}/{name}"
        try:
            link = group.get(name, getlink=True)
        except Exception as exc:
            return Node(name=name, path=cpath, kind="broken", problem=f"unreadable link: {exc}")
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            kind = "soft" if isinstance(link, h5py.SoftLink) else "external"
            target = link.path if kind == "soft" else f"{link.filename}:{link.path}"
            try:
                # walked hop by hop like every other open (resolve.py): a soft link through
                # an external link is checked at the external hop, not followed blindly
                with contextlib.ExitStack() as stack:
                    obj = resolve_object(group.file, cpath, self.root, stack, check_data=False)
                    if isinstance(obj, h5py.Dataset):
                        node = self.dataset_node(name, cpath, obj)
                    else:  # do not descend: links to groups can form cycles
                        node = Node(name=name, path=cpath, kind=kind)
            except Exception as exc:
                return Node(
                    name=name, path=cpath, kind="broken", link=kind, target=target, problem=str(exc)
                )
            node.link, node.target = kind, target
            return node
        try:
            obj = group[name]
        except Exception as exc:
            return Node(name=name, path=cpath, kind="broken", problem=f"unreadable: {exc}")
        if isinstance(obj, h5py.Dataset):
            try:
                return self.dataset_node(name, cpath, obj)
            except Exception as exc:
                return Node(name=name, path=cpath, kind="dataset", problem=f"unreadable: {exc}")
        if isinstance(obj, h5py.Group):
            if depth > 64:
                return Node(name=name, path=cpath, kind="group", problem="nested too deeply")
            return self.visit(obj, cpath, name, depth + 1)
        return Node(name=name, path=cpath, kind="datatype", attrs=_read_attrs(obj))


def read_tree(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Node:
    """Read the structure of an HDF5 file (no dataset values) as a tree of :class:`Node`.

    Parameters
    ----------
    path
        The file.
    root
        If given, links, virtual sources and raw files leading outside this folder are marked
        as problems and not followed (each link is walked hop by hop, see :mod:`.resolve`).
    """
    real = Path(path)
    # No forced reopen: the handle cache reopens files changed by ordinary writers, and a
    # SWMR writer cannot add objects (only grow datasets, which are refreshed).
    with open_file(real) as f, h5_errors(real, "reading its structure"):
        walker = _Walker(real, root)
        node = walker.visit(f, "", "/", 0)
    node.path = "/"
    return node


def get_object(
    f: h5py.File,
    path: str,
    root: str | os.PathLike[str] | None = None,
    stack: contextlib.ExitStack | None = None,
) -> h5py.HLObject:
    """Return the object at ``path`` in an open file, following links only inside ``root``.

    The path is walked hop by hop by :func:`.resolve.resolve_object` (the one place objects are
    opened by path); ``stack`` keeps the files external links lead to open while the object is
    used. Soft links that lead nowhere raise :class:`BrokenLink` naming the link; a hop out of
    the root raises :class:`OutsideRoot` naming the hop.
    """
    return resolve_object(f, path, root, stack)


def require_dataset(
    f: h5py.File,
    path: str,
    root: str | os.PathLike[str] | None = None,
    stack: contextlib.ExitStack | None = None,
) -> h5py.Dataset:
    """Like :func:`get_object` but insists on a dataset."""
    obj = get_object(f, path, root, stack)
    if not isinstance(obj, h5py.Dataset):
        raise Unsupported(f"{path} is a group, not a dataset; pick a dataset inside it.")
    refresh_once(obj)  # see what a SWMR writer appended since the file was opened
    return obj
