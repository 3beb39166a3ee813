"""Widgets tuned for scrubbing: slider changes reach the server's callbacks at once.

Panel holds every change from the browser for 50 ms (``Syncable._debounce``) before it runs
the widget's callbacks, to gather several attributes changed together into one batch. A
slice slider changes one attribute per key press or drag step, so the hold is 50 ms added to
every step: half of what a press may take, key to pixels, on the target of issue 3. Here
the hold is 0 ms: the change runs on the server's next event-loop turn. (``value`` and
``value_throttled`` arriving in the same turn are still handled together.)
"""

from __future__ import annotations

import panel as pn

__all__ = ["ScrubSlider"]


class _PromptIntSlider(pn.widgets.IntSlider):
    """An IntSlider whose browser changes are processed without Panel's 50 ms hold."""

    _debounce = 0


class ScrubSlider(pn.widgets.EditableIntSlider):
    """An :class:`~panel.widgets.EditableIntSlider` (slider plus number box) for scrubbing."""

    _slider_widget = _PromptIntSlider
