"""The file browser: folders and HDF5 files under the root, and the tree of the open file."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import panel as pn
import panel_material_ui as pmui
import param

from ..data import DashappError, Entry, Node
from ..data.fsguard import bounded
from ..state import BrowserState
from ..state.query import default_dataset as _default_dataset
from .icons import REFRESH
from .session import on_session
from .text import TextAlert, as_markdown, escape

__all__ = ["PAGE", "FileBrowser", "entry_items", "tree_items"]

_KIND_ICONS = {
    "group": "folder",
    "dataset": "grid_on",
    "soft": "shortcut",
    "external": "link",
    "broken": "link_off",
    "datatype": "category",
    "more": "more_horiz",
}


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


#: Folder entries shown at once. A tree of 10,000 rows took the browser most of a minute to
#: draw and as long again per click (docs/performance.md); past this many, a last row shows
#: the next page.
PAGE = 500


def entry_items(entries: list[Entry], parent: str | None, limit: int | None = PAGE) -> list[dict]:
    """Tree items for a folder listing: '..' first (when not at the root), folders, files.

    At most ``limit`` entries (None: all); a last row ``more:<n>`` offers the next page.
    """
    rest = len(entries) - limit if limit is not None and len(entries) > limit else 0
    if rest:
        entries = entries[:limit]
    items: list[dict] = []
    if parent is not None:
        items.append(
            {
                "id": "dir:" + parent,
                "label": "..",
                "icon": "arrow_upward",
                "secondary": "parent folder",
            }
        )
    for e in entries:
        if e.kind == "folder":
            item = {"id": "dir:" + e.path, "label": e.name, "file_type": "folder"}
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.mtime)) if e.mtime else ""
            item = {
                "id": "file:" + e.path,
                "label": e.name,
                "icon": "description",
                "secondary": f"{_size(e.size)} · {stamp}",
            }
        if e.problem:
            item["secondary"] = f"⚠ {e.problem}"
            # A pipe or device stays clickable: the click says in full why it does not open.
            item["disabled"] = not e.special
        items.append(item)
    if rest:
        items.append(
            {
                "id": f"more:{limit + PAGE}",
                "label": f"… {rest:,} more",
                "icon": "more_horiz",
                "secondary": f"show {min(rest, PAGE):,} more (sorted by name)",
            }
        )
    return items


def tree_items(node: Node) -> list[dict]:
    """Tree items for the structure of an HDF5 file (the root group's children)."""

    def item(n: Node) -> dict:
        secondary = n.summary
        if n.problem:
            secondary = (
                f"⚠ {n.problem}" if n.kind in ("broken", "more") else f"{secondary} · ⚠ {n.problem}"
            )
        out = {
            "id": n.path,
            "label": n.name,
            "secondary": secondary,
            "icon": _KIND_ICONS.get(n.kind, "help"),
        }
        if n.kind == "dataset" and n.viewable:
            out["icon"] = "image"
        if n.kind == "more":
            out["selectable"] = False
        if n.children:
            out["items"] = [item(c) for c in n.children]
        return out

    return [item(c) for c in node.children]


def _expanded_paths(items: list[dict], limit: int = 150) -> list[tuple[int, ...]]:
    """Open groups breadth-first while fewer than ``limit`` rows are visible."""
    visible = len(items)
    out: list[tuple[int, ...]] = []
    frontier = [((i,), it) for i, it in enumerate(items)]
    while frontier:
        nxt = []
        for path, it in frontier:
            children = it.get("items") or []
            if children and visible + len(children) <= limit:
                out.append(path)
                visible += len(children)
                nxt.extend(((*path, j), c) for j, c in enumerate(children))
        frontier = nxt
    return out


def _attrs_html(node: Node) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(k)}</code></td><td>{escape(v)}</td></tr>"
        for k, v in node.attrs.items()
    )
    head = f"<b>{escape(node.path)}</b><br><span>{escape(node.summary)}</span>"
    if node.problem:
        head += f"<br><span class='dashapp-problem'>⚠ {escape(node.problem)}</span>"
    if not rows:
        return head
    return f"{head}<table class='dashapp-attrs'>{rows}</table>"


class FileBrowser(pn.viewable.Viewer):
    """Folder listing and HDF5 tree; picking a dataset calls ``on_pick(file, dataset)``."""

    state = param.ClassSelector(class_=BrowserState, doc="Folder and file shown.")

    def __init__(
        self, state: BrowserState, on_pick: Callable[[str, str], None] | None = None, **params
    ) -> None:
        super().__init__(state=state, **params)
        self._on_pick = on_pick
        self._where = pn.pane.HTML(
            "", sizing_mode="stretch_width", margin=(0, 5), css_classes=["dashapp-where"]
        )
        self._refresh = pn.widgets.Button(
            label="", icon=REFRESH, width=40, description="List the folder again", margin=(0, 5)
        )
        self._entries = pmui.Tree(
            items=[],
            multi_select=False,
            sizing_mode="stretch_width",
            max_height=320,
            css_classes=["dashapp-entries"],
            styles={"overflow-y": "auto"},
        )
        self._file_title = pn.pane.HTML("", sizing_mode="stretch_width", margin=(5, 5, 0, 5))
        self._tree = pmui.Tree(
            items=[], multi_select=False, sizing_mode="stretch_width", css_classes=["dashapp-tree"]
        )
        self._details = pn.pane.HTML(
            "",
            sizing_mode="stretch_width",
            margin=(5, 5),
            css_classes=["dashapp-details"],
            max_height=260,
            styles={"overflow-y": "auto", "font-size": "12px"},
        )
        self._error = TextAlert(
            "",
            alert_type="danger",
            visible=False,
            sizing_mode="stretch_width",
            css_classes=["dashapp-browser-error"],
        )
        self._entries.param.watch(self._on_entry, "value")
        self._tree.param.watch(self._on_node, "value")
        self._refresh.on_click(lambda _e: self.state.refresh())
        self._watch_id: int | None = None
        self._doc = None
        self._tree_due = 0.0
        self._limit = PAGE
        self._tree_retry = False
        self.state.param.watch(self._watch_folder, ["folder", "file"])
        self.state.param.watch(self._show_entries, ["entries", "folder"])
        self.state.param.watch(self._show_tree, ["tree", "file"])
        self.state.param.watch(self._show_error, ["error"])
        self._show_entries()
        self._show_tree()
        self._show_error()
        self._watch_folder()
        self._layout = pn.Column(
            pn.Row(self._where, self._refresh, sizing_mode="stretch_width"),
            self._entries,
            self._error,
            self._file_title,
            self._tree,
            self._details,
            sizing_mode="stretch_width",
            css_classes=["dashapp-browser"],
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def close(self) -> None:
        """Stop following the folder (the session ended): the process-wide watcher would
        otherwise keep this browser, and the whole page it belongs to, alive."""
        from ..data.watch import WATCHES

        WATCHES.unsubscribe(self._watch_id)
        self._watch_id = None
        self._doc = None

    def _watch_folder(self, *events) -> None:
        """Follow the listed folder and the open file: new files appear, new groups show."""
        from ..data import DashappError, resolve
        from ..data.watch import WATCHES

        WATCHES.unsubscribe(self._watch_id)
        self._watch_id = None
        doc = pn.state.curdoc
        self._doc = doc if doc is not None and doc.session_context is not None else None
        if self._doc is None:  # a notebook: the browser is a server-app feature
            return
        root, folder, file = self.state.root, self.state.folder, self.state.file

        def where() -> list:
            return [resolve(root, folder)] + ([resolve(root, file)] if file else [])

        try:
            paths = bounded(where, key=os.path.join(root, file or folder), what="watching it")
            self._watch_id = WATCHES.subscribe(paths, self._changed)
        except DashappError:
            return

    def _changed(self, paths: set) -> None:
        doc = self._doc
        if doc is not None:
            on_session(doc, lambda: self._on_disk_change(paths))

    def _on_disk_change(self, paths: set) -> None:
        from ..data import resolve

        self.state.refresh()
        st = self.state
        try:
            open_file = (
                bounded(resolve, st.root, st.file, key=os.path.join(st.root, st.file))
                if st.file
                else None
            )
        except (DashappError, OSError):  # gone or unreadable: the tree shows why
            open_file = None
        if open_file is not None and open_file in paths:
            self._tree_soon()

    def _tree_soon(self) -> None:
        """Read the tree again now or, within 2 s of the last read, once they have passed.

        The tree of a file being written changes with each iteration; a big file's tree takes
        a while to walk, so it is read at most every 2 s, and a change inside those 2 s is
        read at their end: the last change a writer makes is shown even if none follows.
        """
        if self._tree_retry:  # a read is already due
            return
        wait = self._tree_due - time.monotonic()
        if wait <= 0 or self._doc is None:
            self._refresh_tree()
        else:
            self._tree_retry = on_session(self._doc, self._retry_tree, wait)

    def _refresh_tree(self) -> None:
        """Read the tree again; while it cannot be read (a writer holds the file), try again
        every 2 s: a writer that dies without closing the file changes nothing on disk, so
        no change would ever bring the current shape."""
        self._tree_retry = False
        self._tree_due = time.monotonic() + 2.0
        if self.state.refresh_tree() or self._doc is None:
            return
        self._tree_retry = on_session(self._doc, self._retry_tree, 2.0)

    def _retry_tree(self) -> None:
        if self._tree_retry and self._doc is not None:
            self._refresh_tree()

    def _show_entries(self, *events) -> None:
        st = self.state
        crumbs = " / ".join(escape(p) for p in st.folder.split("/")) if st.folder else ""
        self._where.object = f"<b>Files</b> &nbsp;<code>/{crumbs}</code>"
        if not events or any(getattr(e, "name", None) == "folder" for e in events):
            self._limit = PAGE  # a new folder starts at its first page
        self._entries.items = entry_items(st.entries, st.parent, self._limit)

    def _show_tree(self, *events) -> None:
        st = self.state
        if st.tree is None:
            self._tree.items = []
            self._file_title.object = ""
            self._details.object = ""
            return
        items = tree_items(st.tree)
        self._tree.param.update(items=items, expanded=_expanded_paths(items))
        self._file_title.object = f"<b>{escape(st.file)}</b>"
        self._details.object = _attrs_html(st.tree) if st.tree.attrs else ""

    def _show_error(self, *events) -> None:
        self._error.object = as_markdown(self.state.error)
        self._error.visible = bool(self.state.error)

    @staticmethod
    def _clicked(widget: pmui.Tree, event, act: Callable[[str], None]) -> None:
        """Clear the selection ``event`` made, then ``act`` on the row clicked (its id).

        A row of these lists is a button, not a choice that stays: the tree widget reports a
        click only as a change of its selection, so a row left selected could not be clicked
        again, and after a new listing (a folder entered, ``..``) the row at the position just
        clicked stayed selected and ignored its clicks (issue 21). Clearing the selection
        makes every click on any row, the same row twice included, a change.

        Both happen on the next tick, the clearing first: while Panel applies the browser's
        change, a change of the same property is not sent back; and a new listing must not
        reach the browser before the clearing does, or a quick click on the row at the
        position just clicked would still be ignored.
        """
        if not event.new:
            return
        ident = event.new[0]["id"] if isinstance(event.new, list) else event.new["id"]

        def run() -> None:
            if widget.value or widget.active:
                widget.param.update(value=[], active=[])
            act(ident)

        doc = pn.state.curdoc
        if doc is None or doc.session_context is None or not on_session(doc, run):
            run()

    def _on_entry(self, event) -> None:
        self._clicked(self._entries, event, self._open_entry)

    def _open_entry(self, ident: str) -> None:
        kind, _, rel = ident.partition(":")
        if kind == "more":
            self._limit = int(rel)
            self._show_entries(None)
            return
        try:
            self.state.open(rel)
        except DashappError as exc:
            self.state.error = str(exc)
            return
        if kind == "file" and self._on_pick:
            best = _default_dataset(self.state.tree) if self.state.tree is not None else None
            self._on_pick(self.state.file, best or "")

    def _on_node(self, event) -> None:
        self._clicked(self._tree, event, self._open_node)

    def _open_node(self, ident: str) -> None:
        if self.state.tree is None:
            return
        node = self.state.tree.find(ident)
        if node is None:
            return
        self._details.object = _attrs_html(node)
        target = node.path
        if node.kind == "group" and "signal" in node.attrs:  # NeXus NXdata: show its signal
            target = f"{node.path}/{node.attrs['signal']}"
        elif node.kind in ("group", "more"):
            return
        if self._on_pick:
            self._on_pick(self.state.file, target)

    def select_file(self, relpath: str) -> None:
        """Open ``relpath`` in the browser (used when a deep link names a file)."""
        try:
            self.state.open(relpath)
        except DashappError as exc:
            self.state.error = str(exc)
