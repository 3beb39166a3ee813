"""The scrub slider, through a real Bokeh server and Chromium: its changes skip Panel's hold.

Panel schedules every widget change from the browser ``_debounce`` ms later (50 ms by
default); :class:`dashapp.views.widgets.ScrubSlider` asks for 0 ms. The test serves a
ScrubSlider beside a plain EditableIntSlider in this process, presses → on each in Chromium,
and records the delay Panel asked the document for when each change arrived (a spy on
``Document.add_timeout_callback``; the server, the websocket and the browser are real). The
plain slider is the control: it shows the spy sees Panel's 50 ms hold where it applies.
"""

from __future__ import annotations

import contextlib
import socket
import time

import panel as pn
import pytest
from bokeh.document import Document
from playwright.sync_api import Page

from dashapp.views.widgets import ScrubSlider
from tests.conftest import free_port

pytestmark = pytest.mark.browser


def test_a_scrub_slider_change_is_handled_on_the_next_turn_not_after_panels_50_ms_hold(
    page: Page, monkeypatch
):
    delays: list[tuple[str, int]] = []
    add_timeout = Document.add_timeout_callback

    def spy(self, callback, timeout_milliseconds, *args, **kwargs):
        func = getattr(callback, "func", None)
        if getattr(func, "__name__", "") == "_change_coroutine":  # a widget change, scheduled
            delays.append((getattr(func.__self__, "name", ""), timeout_milliseconds))
        return add_timeout(self, callback, timeout_milliseconds, *args, **kwargs)

    monkeypatch.setattr(Document, "add_timeout_callback", spy)
    seen: dict[str, list[int]] = {"scrub": [], "plain": []}

    def app():
        scrub = ScrubSlider(name="scrub", start=0, end=10, value=0, css_classes=["scrub"])
        plain = pn.widgets.EditableIntSlider(
            name="plain", start=0, end=10, value=0, css_classes=["plain"]
        )
        scrub._slider.name, plain._slider.name = "scrub-slider", "plain-slider"
        scrub.param.watch(lambda e: seen["scrub"].append(e.new), "value")
        plain.param.watch(lambda e: seen["plain"].append(e.new), "value")
        return pn.Column(scrub, plain)

    port = free_port()
    server = pn.serve({"app": app}, port=port, threaded=True, show=False)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the server thread starts listening
            with contextlib.suppress(OSError), socket.create_connection(("localhost", port), 1):
                break
            time.sleep(0.1)
        page.goto(f"http://localhost:{port}/app")
        for which in ("scrub", "plain"):
            handle = page.locator(f".{which} .noUi-handle").first
            handle.wait_for(timeout=30_000)
            handle.focus()
            page.keyboard.press("ArrowRight")
            deadline = time.monotonic() + 30
            while not seen[which] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert seen[which] == [1], f"the {which} slider's press never reached the server"
    finally:
        server.stop()
    scrub = {d for name, d in delays if name == "scrub-slider"}
    plain = {d for name, d in delays if name == "plain-slider"}
    assert plain == {50}, f"control: Panel's hold for a plain slider was {plain}"
    assert scrub == {0}, f"the scrub slider's change waited {scrub} ms"
