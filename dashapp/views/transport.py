"""Server → browser messages: a fix for updates Panel could leave unsent until the next event.

Panel (1.9) sends the model changes made inside ``pn.io.hold`` / ``unlocked`` straight to the
websocket, unless a write is still in flight: then it queues the message
(``panel.io.document._WRITE_MSGS``), marks the document blocked (``_WRITE_BLOCK``) and starts
a task, ``_dispatch_msgs``, that sends the queue. A task that finds the document unblocked
returns without sending. The race: task A sends its queue and awaits the writes; meanwhile
a new update is queued and task B started; A resumes, sees nothing *it* has left over, and
unblocks the document; B then starts, finds the document unblocked, and returns. The new
update, a slice's picture, stays in the queue until some later event happens to flush it.

Found with ``benchmarks/sessions_bench.py`` (the scrubbing phase's timeouts): with eight
sessions dragging their sliders at once, 5-8 of 1,200 steps never got their picture; in a
browser, the picture for where the hand stopped would not appear until the next touch,
which breaks "the final position is always what is shown".

:func:`flush_stranded_updates` wraps ``_dispatch_msgs``: after each run, if updates are
queued for a document that is no longer blocked, it blocks it again and sends them. Nothing
else changes; a Panel without these internals is left alone.
"""

from __future__ import annotations

import logging

__all__ = ["flush_stranded_updates"]

log = logging.getLogger(__name__)

_MARK = "_dashapp_flushes_stranded"


def flush_stranded_updates() -> bool:
    """Make Panel send updates its write queue would otherwise strand (idempotent).

    Returns True when Panel's dispatcher is (now) wrapped, False when this Panel does not
    have the internals the fix is for.
    """
    try:
        from panel.io import document as pdoc

        dispatch = pdoc._dispatch_msgs
        write_msgs, write_block = pdoc._WRITE_MSGS, pdoc._WRITE_BLOCK
        schedule = pdoc._dispatch_write_task
    except (ImportError, AttributeError):  # pragma: no cover - a Panel without the race
        log.info("panel.io.document has no write queue: nothing to fix")
        return False
    if getattr(dispatch, _MARK, False):
        return True

    async def _dispatch_msgs(doc):
        await dispatch(doc)
        if write_msgs.get(doc) and doc not in write_block:
            write_block[doc] = True
            schedule(doc, pdoc._dispatch_msgs, doc)

    setattr(_dispatch_msgs, _MARK, True)
    _dispatch_msgs.__wrapped__ = dispatch
    # Panel refers to it by its module-global name (schedule_write_events, the re-tries).
    pdoc._dispatch_msgs = _dispatch_msgs
    return True
