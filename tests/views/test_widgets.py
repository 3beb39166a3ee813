"""The scrubbing widgets skip Panel's per-step design lookup and busy count, and still show
every step: each test runs a plain Panel widget through the same path as the control, so a
spy that saw nothing cannot pass for a saving.

(The 50 ms hold they also skip is tested through a real server and Chromium in
tests/browser/test_widgets_browser.py.)
"""

from __future__ import annotations

import panel as pn
import pytest
from bokeh.document import Document

import dashapp.views.browser  # noqa: F401  (the app's design, Material UI, as in the page)
from dashapp.views.widgets import ScrubSlider, StatusText


@pytest.fixture
def spies(monkeypatch):
    calls = {"design": 0, "busy": 0}
    design = pn.config.design  # a class: each component holds an instance
    params = design.params

    def counted_params(self, *args, **kwargs):
        calls["design"] += 1
        return params(self, *args, **kwargs)

    add_busy = pn.state._add_busy_event

    def counted_busy(event_id):
        calls["busy"] += 1
        return add_busy(event_id)

    monkeypatch.setattr(design, "params", counted_params)
    monkeypatch.setattr(pn.state, "_add_busy_event", counted_busy)
    return calls


def _model(widget, root):
    return widget._models[root.ref["id"]][0]


@pytest.mark.parametrize("kind", ["scrub", "plain (control)"])
def test_a_step_from_the_browser_reaches_the_value_and_the_number_box(kind, spies):
    cls = ScrubSlider if kind == "scrub" else pn.widgets.EditableIntSlider
    slider = cls(start=0, end=100, value=3)
    root = slider.get_root(Document())
    before = dict(spies)
    slider._slider._process_events({"value": 7})  # what Panel runs for the browser's change
    slider._slider._process_events({"value_throttled": 7})
    assert slider.value == 7
    assert slider._slider.value_throttled == 7
    assert _model(slider._value_edit, root).value == 7  # the number box shows the step
    design, busy = spies["design"] - before["design"], spies["busy"] - before["busy"]
    if kind == "scrub":
        assert (design, busy) == (0, 0)
        flags = slider._slider.param["value_throttled"]
        assert (flags.constant, flags.readonly) == (True, False)  # lifted for the step only
    else:  # the spies see Panel's work where it is done
        assert design > 0
        assert busy > 0


def test_the_design_still_styles_a_scrub_widget_whose_stylesheets_change(spies):
    slider = ScrubSlider(start=0, end=10, value=3)
    root = slider.get_root(Document())
    box = _model(slider._value_edit, root)
    design_sheets = [s for s in box.stylesheets if "Material Icons" in str(s)]
    assert design_sheets
    slider._value_edit.stylesheets = [":host { color: red; }"]
    assert spies["design"] > 0
    assert box.stylesheets[-1] == ":host { color: red; }"  # the design's sheets, then the new one
    assert [s for s in box.stylesheets if "Material Icons" in str(s)] == design_sheets


@pytest.mark.parametrize("kind", ["status", "plain (control)"])
def test_the_status_text_sends_its_text_alone(kind, spies):
    cls = StatusText if kind == "status" else pn.pane.HTML
    pane = cls("", css_classes=["dashapp-status"], margin=(0, 10))
    root = pane.get_root(Document())
    model = _model(pane, root)

    def looks():  # (Panel's own pane sends new, equal, ImportedStyleSheet models each time)
        sheets = [getattr(s, "url", s) for s in model.stylesheets]
        return sheets, list(model.css_classes)

    before_looks = looks()
    before = spies["design"]
    pane.object = '<div class="x">read 512 × 512 cells & more</div>'
    escaped = "&lt;div class=&quot;x&quot;&gt;read 512 × 512 cells &amp; more&lt;/div&gt;"
    assert model.text == escaped
    assert looks() == before_looks
    if kind == "status":
        assert spies["design"] == before
    else:
        assert spies["design"] > before
