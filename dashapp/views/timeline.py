"""The provenance timeline: what happened in this workspace, notes, snapshots, restorable views.

Science Capsule's timeline is the model: events in time order (newest first), filtered by kind
and by file, notes searchable; a view or a snapshot restores the slicer to that view with one
click. Snapshots are rendered on the server (matplotlib, from the very image and colours the
plot shows), so they need no browser and look the same everywhere.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import panel as pn
import param

from ..data import SliceImage
from ..provenance import Event, Record, same_root
from .icons import KIND_ICONS, inline
from .palettes import palette
from .session import poll
from .text import escape, for_matplotlib

__all__ = ["TimelinePane", "render_snapshot"]

_KIND_ICONS = {kind: inline(svg) for kind, svg in KIND_ICONS.items()}  # (no emoji font needed)


def render_snapshot(
    image: SliceImage,
    limits: tuple[float, float],
    cmap: str,
    reverse: bool,
    scale: str,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    clabel: str = "",
) -> bytes:
    """A PNG of a slice as the plot shows it: same values, extent, colours, limits and scale."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.colors import ListedColormap, LogNorm, Normalize
    from matplotlib.figure import Figure

    colours = ListedColormap(list(palette(cmap, reverse))).with_extremes(bad=(0, 0, 0, 0))
    lo, hi = limits
    norm = LogNorm(lo, hi) if scale == "log" and lo > 0 else Normalize(lo, hi)
    fig = Figure(figsize=(7, 5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    values = np.ma.masked_invalid(image.values)
    shown = ax.imshow(
        values,
        origin="lower",
        cmap=colours,
        norm=norm,
        interpolation="nearest",
        extent=(image.x[0], image.x[1], image.y[0], image.y[1]),
        aspect="auto",
    )
    # labels from the file: text, never mathtext (a stray "$" would fail the snapshot)
    ax.set_xlabel(for_matplotlib(xlabel))
    ax.set_ylabel(for_matplotlib(ylabel))
    ax.set_title(for_matplotlib(title), fontsize=9)
    fig.colorbar(shown, ax=ax, label=for_matplotlib(clabel))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


class TimelinePane(pn.viewable.Viewer):
    """Events of a :class:`~dashapp.provenance.Record`, filters, a note box, restore buttons.

    With ``root`` (the folder the server serves), events recorded under another root are left
    out: a workspace shared through ``$DASHAPP_WORKSPACE`` holds other servers' views, whose
    links name files this server does not have.
    """

    kinds = param.ListSelector(
        default=[], objects=list(_KIND_ICONS), doc="Show only these kinds of event (none: all)."
    )
    file = param.String(default="", doc="Show only events about this file ('' for all).")
    text = param.String(default="", doc="Show only events whose text contains this.")

    def __init__(
        self,
        record: Record,
        on_restore: Callable[[dict[str, str]], None] | None = None,
        read_only: bool = False,
        limit: int = 150,
        root: str | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.record = record
        self.root = root
        self.on_restore = on_restore
        self.limit = limit
        self._kinds = pn.widgets.CheckButtonGroup.from_param(
            self.param.kinds, label="Kinds", variant="outline"
        )
        # fixed widths in a wrapping box: stretched in a row beside the kind buttons, the
        # file list got what was left (22 px, no name readable)
        self._file = pn.widgets.Select(
            label="File", options={"all files": ""}, width=300, css_classes=["dashapp-file-filter"]
        )
        self._text = pn.widgets.TextInput.from_param(
            self.param.text, label="Search", placeholder="search notes and titles", width=260
        )
        self._note = pn.widgets.TextAreaInput(
            placeholder="Write a note about what you see…",
            height=80,
            sizing_mode="stretch_width",
            css_classes=["dashapp-note-text"],
        )
        self._images = pn.widgets.FileInput(accept="image/*", multiple=True)
        self._add = pn.widgets.Button(
            label="Add note", color="primary", css_classes=["dashapp-add-note"]
        )
        self._list = pn.Column(sizing_mode="stretch_width", css_classes=["dashapp-timeline"])
        self._count = pn.pane.HTML("", sizing_mode="stretch_width")
        self._file.param.watch(lambda e: setattr(self, "file", e.new or ""), "value")
        self._add.on_click(self._on_note)
        self.param.watch(self.refresh, ["kinds", "file", "text"])
        self._seen = -1
        self._poll = None
        #: Cards by event id: a refresh sends the browser only the new events' cards.
        self._cards: dict[str, pn.viewable.Viewable] = {}
        #: While False (e.g. another tab is shown), refreshes wait until it is shown again:
        #: rebuilding the list on every recorded view would cost the slider its frame rate.
        self.shown = True
        self._stale = False
        note_box = pn.Column(self._note, pn.Row(self._images, self._add), visible=not read_only)
        self._layout = pn.Column(
            "### Timeline",
            note_box,
            pn.FlexBox(
                self._kinds, self._file, self._text, align_items="end", sizing_mode="stretch_width"
            ),
            self._count,
            self._list,
            sizing_mode="stretch_width",
        )
        self.refresh()

    def __panel__(self) -> pn.viewable.Viewable:
        if self._poll is None:
            try:  # other sessions write to the same record: look for their events
                self._poll = poll(self._maybe_refresh, 3000)
            except (RuntimeError, AttributeError):  # a destroyed document: nothing to refresh
                self._poll = None
        return self._layout

    def _maybe_refresh(self) -> None:
        try:
            size = self.record.path.stat().st_size
        except OSError:
            size = 0
        if size != self._seen:
            self.refresh()

    def _on_note(self, event: Any = None) -> None:
        text = (self._note.value or "").strip()
        images = []
        if self._images.value:
            values = (
                self._images.value if isinstance(self._images.value, list) else [self._images.value]
            )
            images = [v for v in values if v]
        if not text and not images:
            return
        self.record.note(text, images=images)
        self.record.flush(5)
        self._note.value = ""
        self.refresh()

    def show(self, shown: bool) -> None:
        """Tell the pane whether it is on screen; it catches up when it comes back."""
        self.shown = shown
        if shown and self._stale:
            self.refresh()

    def refresh(self, *events: Any) -> None:
        """Read the record and redraw the list (newest first)."""
        if not self.shown:
            self._stale = True
            return
        self._stale = False
        try:
            self._seen = self.record.path.stat().st_size
        except OSError:
            self._seen = 0
        all_events = self.record.events()
        others = 0
        if self.root is not None:
            mine = [e for e in all_events if same_root(e, self.root)]
            others, all_events = len(all_events) - len(mine), mine
        files = sorted({e.file for e in all_events if e.file})
        self._file.options = {"all files": "", **{f: f for f in files}}
        shown = [
            e for e in all_events
            if (not self.kinds or e.kind in self.kinds)
            and (not self.file or e.file == self.file)
            and (not self.text or self.text.lower() in _searchable(e))
        ]  # fmt: skip
        self._count.object = f"{len(shown)} of {len(all_events)} events" + (
            f" ({others} of other folders served with this workspace not shown)" if others else ""
        )
        wanted = list(reversed(shown[-self.limit :]))
        cards = {e.id: self._cards.get(e.id) or self._card(e) for e in wanted}
        self._cards = cards
        objects = [cards[e.id] for e in wanted]
        if objects != list(self._list.objects):
            self._list.objects = objects

    def _card(self, event: Event) -> pn.viewable.Viewable:
        icon = _KIND_ICONS.get(event.kind, "•")  # (• is in every text font)
        when = event.time.replace("T", " ")[:19]
        body = f"<b>{icon} {escape(event.title)}</b> <small>{escape(when)}</small>"
        if event.kind == "note" and event.data.get("text"):
            body += f"<div>{escape(event.data['text'])}</div>"
        if event.file:
            body += f"<div><small><code>{escape(event.file)}</code></small></div>"
        for rel in event.attachments:
            if rel.lower().endswith(".png"):
                try:
                    data = self.record.attachment_path(rel).read_bytes()
                except (OSError, ValueError):  # missing, or not an attachment: the card says so
                    body += f"<div><small>(missing {escape(rel)})</small></div>"
                    continue
                b64 = base64.b64encode(data).decode()
                body += (
                    f'<div><img src="data:image/png;base64,{b64}" style="max-width:320px"></div>'
                )
        card = pn.pane.HTML(
            body,
            sizing_mode="stretch_width",
            css_classes=["dashapp-event", f"dashapp-event-{event.kind}"],
        )
        if event.kind in ("view", "snapshot") and event.link and self.on_restore:
            button = pn.widgets.Button(
                label="Restore this view", width=150, css_classes=["dashapp-restore"]
            )
            button.on_click(lambda e, q=event.query: self.on_restore(q))
            return pn.Row(card, button, sizing_mode="stretch_width")
        return card


def _searchable(event: Event) -> str:
    return " ".join([event.title, str(event.data.get("text", "")), event.file or ""]).lower()
