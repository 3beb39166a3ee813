"""The state of the file browser: which folder is listed, which file is open, its tree.

Every listing, stat and tree read goes through :func:`~dashapp.data.fsguard.bounded`: on a
server these run on the event loop of every session, and a hung mount must cost the session
that asked one sentence ("the filesystem did not answer in N s"), not freeze the others.
"""

from __future__ import annotations

import os

import param

from ..data import DashappError, Entry, Node, list_folder, read_tree, relative_to_root, resolve
from ..data.fsguard import bounded

__all__ = ["BrowserState"]


class BrowserState(param.Parameterized):
    """A folder listing and the structure of the open file, both confined to ``root``."""

    root = param.String(default=".", doc="Folder the browser shows; nothing outside it is listed.")
    folder = param.String(default="", doc="Listed folder, relative to the root ('' is the root).")
    entries = param.List(default=[], item_type=Entry, doc="Sub-folders and HDF5 files listed.")
    file = param.String(default="", doc="Open file, relative to the root.")
    tree = param.ClassSelector(class_=Node, allow_None=True, doc="Structure of the open file.")
    error = param.String(default="", doc="Why the folder or file cannot be shown.")

    def __init__(self, **params):
        super().__init__(**params)
        self.refresh()
        self._read_tree()

    @param.depends("root", "folder", watch=True)
    def refresh(self) -> None:
        """List the folder again (new files appear, deleted ones go)."""
        try:
            self.entries = bounded(
                list_folder, self.root, self.folder, key=self._key(self.folder),
                what="listing the folder",
            )  # fmt: skip
            self.error = ""
        except DashappError as exc:
            self.entries = []
            self.error = str(exc)

    @param.depends("file", watch=True)
    def _read_tree(self) -> None:
        if not self.file:
            self.tree = None
            return
        try:
            self.tree = self._tree_of(self.file)
            self.error = ""
        except DashappError as exc:
            self.tree = None
            self.error = str(exc)

    def refresh_tree(self) -> bool:
        """Read the open file's tree again after a writer changed it.

        While the writer holds the file (or it is half-written) the last tree stays: the
        slicer reports the file's state; the browser should not flicker. Returns False when
        the tree could not be read (the caller tries again later: a writer that crashed
        changes nothing on disk when it dies, so no change event would come).
        """
        if not self.file:
            return True
        try:
            self.tree = self._tree_of(self.file)
        except DashappError:
            return False
        return True

    def _key(self, relpath: str) -> str:
        return os.path.join(self.root, relpath)

    def _tree_of(self, relpath: str) -> Node:
        def read() -> Node:
            return read_tree(resolve(self.root, relpath), root=self.root)

        return bounded(read, key=self._key(relpath), what="reading the file's structure")

    @property
    def parent(self) -> str | None:
        """The folder above the listed one, or None at the root."""
        if not self.folder:
            return None
        return self.folder.rsplit("/", 1)[0] if "/" in self.folder else ""

    def open(self, relpath: str) -> None:
        """Open a folder (list it) or a file (read its tree), given relative to the root."""

        def where() -> tuple[str, bool]:
            path = resolve(self.root, relpath)
            return relative_to_root(self.root, path), path.is_dir()

        rel, is_dir = bounded(where, key=self._key(relpath), what="opening it")
        if is_dir:
            self.folder = rel
        else:
            folder = rel.rsplit("/", 1)[0] if "/" in rel else ""
            self.param.update(folder=folder, file=rel)
