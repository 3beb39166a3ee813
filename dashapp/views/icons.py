"""Icons as inline SVG: drawn by the browser itself, with no icon font, emoji font or CDN.

Emoji (📷, 📄, 🆕, ...) showed as empty boxes where no emoji font is installed (Debian's
Chromium, many HPC login nodes), and Bokeh's named icons (``icon="camera"``) load the Tabler
web font from a CDN, which an offline compute node cannot reach. These few outline icons (24 x 24,
in the style of Tabler's, ``currentColor`` so they take the text's colour) go into a button
(``pn.widgets.Button(icon=CAMERA)``: Panel makes an SVG icon of them) or into HTML (:func:`inline`).
"""

from __future__ import annotations

__all__ = ["CAMERA", "KIND_ICONS", "PLAY", "REFRESH", "inline"]


def _svg(body: str) -> str:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="24" height="24" viewBox="0 0 24 24" '
        'fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" '
        f'stroke-linejoin="round">{body}</svg>'
    )


#: A camera: take a snapshot.
CAMERA = _svg(
    '<path d="M5 7h2l2-3h6l2 3h2a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V9a2 2 0 0 1 2-2"/>'
    '<circle cx="12" cy="13" r="3.5"/>'
)
#: A triangle pointing right: start (a run).
PLAY = _svg('<path d="M7 4v16l13-8z"/>')
#: A circular arrow: list again.
REFRESH = _svg('<path d="M20 11A8 8 0 1 0 18 17"/><path d="M20 5v6h-6"/>')

#: One icon per kind of timeline event (see :mod:`dashapp.provenance`).
KIND_ICONS = {
    "environment": _svg('<rect x="3" y="7" width="18" height="13" rx="2"/><path d="M9 7V4h6v3"/>'),
    "session": _svg('<path d="M7 12h10M12 3v5M9 8h6v4a3 3 0 0 1-6 0zM12 15v6"/>'),
    "file": _svg('<path d="M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8z"/>'
                 '<path d="M14 3v5h5"/>'),
    "view": _svg('<path d="M2 12s4-7 10-7 10 7 10 7-4 7-10 7S2 12 2 12z"/>'
                 '<circle cx="12" cy="12" r="3"/>'),
    "cluster": _svg('<rect x="9" y="3" width="6" height="5"/>'
                    '<rect x="3" y="16" width="6" height="5"/>'
                    '<rect x="15" y="16" width="6" height="5"/><path d="M12 8v4M6 16v-4h12v4"/>'),
    "computation": _svg('<circle cx="12" cy="12" r="3"/><path d="M12 2v3M12 19v3M2 12h3M19 12h3'
                        'M4.9 4.9l2.1 2.1M17 17l2.1 2.1M4.9 19.1L7 17M17 7l2.1-2.1"/>'),
    "note": _svg('<path d="M4 20h4L19 9l-4-4L4 16z"/><path d="M13.5 6.5l4 4"/>'),
    "snapshot": CAMERA,
}  # fmt: skip


def inline(svg: str, size: int = 15) -> str:
    """``svg`` sized for a line of text (``size`` pixels), aligned with the text around it."""
    return svg.replace(
        'width="24" height="24"',
        f'width="{size}" height="{size}" style="vertical-align: -0.15em" aria-hidden="true"',
        1,
    )
