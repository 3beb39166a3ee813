"""Widgets tuned for scrubbing: a slider step costs the server as little as Panel allows.

Four costs Panel adds to every change of a widget's value, each removed here for the
scrubbing widgets only (measured with nine sessions dragging on one server; see
docs/performance.md, "Trimming Panel's per-step work"):

- **the 50 ms hold.** Panel holds every change from the browser for 50 ms
  (``Syncable._debounce``) to gather attributes changed together into one batch. A slice
  slider changes one attribute per key press or drag step, so the hold was 50 ms added to
  every step. Here it is 0 ms: the change runs on the server's next event-loop turn
  (``value`` and ``value_throttled`` arriving in the same turn are still handled together).
- **the busy counter.** Each browser event is registered in Panel's process-wide busy list
  (``state._add_busy_event``), which re-validates every parameter of ``pn.state`` twice per
  event, for the busy indicator. The slicer page has no busy indicator; value changes of
  these widgets are left out of the count (Panel's own ``_busy__ignore`` hook).
- **the read-only dance.** Panel lifts the read-only and constant flags of every parameter
  of the slider (~50) around each update from the browser; here only those of the
  parameters the step changes (``value``, ``value_throttled``).
- **the design lookup.** Each property sent to the browser first asks the design (Material
  UI here) for the component's stylesheets, resolving the theme's CSS path on disk, and then
  uses them only if ``stylesheets`` itself changed. Here it is asked only then.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import panel as pn
import param
from panel.reactive import _syncing

from .text import escape

__all__ = ["ScrubSlider", "StatusText"]

log = logging.getLogger(__name__)


_STEP_EVENTS = frozenset({"value", "value_throttled"})


@contextmanager
def _editable(obj: Any, names: Iterable[str]) -> Iterator[None]:
    """Lift the read-only and constant flags of ``obj``'s parameters ``names`` for a while."""
    params = [obj.param[name] for name in names]
    saved = [(p.readonly, p.constant) for p in params]
    for p in params:
        p.readonly = p.constant = False
    try:
        yield
    finally:
        for p, (readonly, constant) in zip(params, saved, strict=True):
            p.readonly, p.constant = readonly, constant


class _Lean:
    """Mixin for Panel components updated at every scrub step."""

    _busy__ignore: ClassVar[list[str]] = sorted(_STEP_EVENTS)

    def _update_properties(self, *events: Any, doc: Any) -> dict[str, Any]:
        if any(event.name == "stylesheets" for event in events):
            return super()._update_properties(*events, doc=doc)
        return self._process_param_change({event.name: event.new for event in events})


class _PromptIntSlider(_Lean, pn.widgets.IntSlider):
    """An IntSlider whose browser changes are processed without Panel's 50 ms hold."""

    _debounce = 0

    def _process_events(self, events: dict[str, Any]) -> None:
        # Panel's version lifts the read-only and constant flags of all ~50 parameters of
        # the widget around each update (``edit_readonly``), for ``value_throttled``, the one
        # constant among those a step changes. Here only the changed ones are lifted.
        if not events or not set(events) <= _STEP_EVENTS or pn.config.throttled:
            return super()._process_events(events)
        doc = pn.state.curdoc
        if doc is not None:
            self._in_process__events[doc] = events
        try:
            params = self._process_property_change(dict(events))
            with _editable(self, params), _syncing(self, list(params)):
                self.param.update(**params)
        except Exception:  # (as Panel's own: log which widget, then let Panel handle it)
            log.exception("Callback failed for object named %r changing %s", self.name, events)
            raise
        finally:
            if doc is not None:
                self._in_process__events.pop(doc, None)


class _PromptIntInput(_Lean, pn.widgets.IntInput):
    """The slider's number box, echoing each step without the design lookup."""


class ScrubSlider(_Lean, pn.widgets.EditableIntSlider):
    """An :class:`~panel.widgets.EditableIntSlider` (slider plus number box) for scrubbing.

    Its ``label`` is text: Panel puts an editable slider's label into a ``StaticText`` (a Bokeh
    ``Div``) as HTML, and the slicer's labels are axis names from the file (a dimension
    scale's ``long_name``), so the label is escaped here (:func:`~dashapp.views.text.escape`).
    """

    _slider_widget = _PromptIntSlider
    _input_widget = _PromptIntInput

    @param.depends("label", watch=True)
    def _update_name(self) -> None:
        # Panel's version passes the label to the StaticText unescaped.
        label = f"{escape(self.label)}:" if self.label else ""
        margin = (0, 10, 0, 0) if self.label else (0, 0, 0, 0)
        self._label.param.update(margin=margin, value=label)


class StatusText(pn.pane.HTML):
    """An HTML pane whose text changes at every step: only the text is sent.

    Panel's HTML pane recomputes and re-sends all of its properties (and the design's
    stylesheets) when its object changes; the status line under the plot changes at every
    slice step, and nothing but its text does.
    """

    def _update(self, ref: str, model: Any) -> None:
        text = self._process_param_change({"object": self.object}).get("text")
        if text is None or self.enable_streaming:
            return super()._update(ref, model)
        model.update(text=text)
