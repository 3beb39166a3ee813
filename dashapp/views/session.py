"""Handing work from background threads back to a browser session's document."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import panel as pn

__all__ = ["on_session", "poll", "release_links"]

log = logging.getLogger(__name__)


def on_session(doc: Any, fn: Callable[[], Any], delay: float = 0.0) -> bool:
    """Run ``fn`` on ``doc``'s event loop with its lock held (after ``delay`` seconds).

    Returns False, and drops ``fn``, if the session has ended: a read or a file change that
    finishes after its browser tab closed is nothing to show (Bokeh raises AttributeError on
    a destroyed document, which once filled the server log with tracebacks).
    """
    wrapped = pn.state._handle_exception_wrapper(fn, doc)
    try:
        if delay:
            doc.add_timeout_callback(wrapped, int(delay * 1000))
        else:
            doc.add_next_tick_callback(wrapped)
    except (AttributeError, RuntimeError, ValueError) as exc:
        log.debug("session gone, dropped %r: %s", fn, exc)
        return False
    return True


def poll(fn: Callable[[], Any], period_ms: int) -> Any:
    """Call ``fn`` every ``period_ms`` on the session's event loop; return the callback.

    As ``pn.state.add_periodic_callback`` (stopped with the session), but a background task
    in Panel's terms: it does not enter Panel's process-wide busy count. Each entry and exit
    there re-validates every parameter of ``pn.state``; with ten sessions each polling a pane
    that was most of what the server did between slider steps, for a busy indicator the
    app does not show.
    """
    cb = pn.state.add_periodic_callback(fn, period=period_ms, start=False)
    cb._background = True  # PeriodicCallback(background=True), which add_periodic_callback lacks
    cb.start()
    return cb


def release_links(*viewables: Any) -> int:
    """Drop Panel's JS links and callbacks whose source is in ``viewables`` (or inside them).

    Panel keeps every ``jscallback``/``jslink`` in a process-wide registry keyed weakly by the
    source widget, but the callback holds its ``args`` strongly. An
    :class:`~panel.widgets.EditableIntSlider` registers a callback on its number box whose
    args hold the slider, which holds the number box: the entry never goes away, and with it
    the whole page the slider was on (measured: every page ever opened stayed in the server's
    memory, ~8 MB each). Call this when a session ends or a widget is discarded. Returns how
    many sources were dropped.
    """
    from panel.links import Callback

    dropped = 0
    for viewable in viewables:
        if viewable is None:
            continue
        if isinstance(viewable, pn.viewable.Viewer):
            viewable = viewable.__panel__()
        try:
            objects = viewable.select()
        except (AttributeError, TypeError):  # not a Panel layout or widget
            objects = [viewable]
        for obj in objects:
            if Callback.registry.pop(obj, None) is not None:
                dropped += 1
    return dropped
