"""The slicer's controls in Chromium, doing what a person did (issue 21, items 4, 6 and 12).

End after changing the normal axis, Follow latest on and off, one numbering for the iteration
slider, the status line and the "newer data" badge, the "Reverse colours" label, and robust
colour limits while zooming.
"""

from __future__ import annotations

import re
import time

import h5py
import numpy as np
import pytest
from playwright.sync_api import Page, expect

from ..writers import Writer
from .test_slicer_browser import (
    TIMEOUT,
    query,
    status,
    view_in_browser,
    wait_for_picture,
    wait_query,
)

pytestmark = pytest.mark.browser


def _volume(root, shape=(48, 96, 112)):
    root.mkdir(exist_ok=True)
    with h5py.File(root / "v.h5", "w") as f:
        f["v"] = np.random.default_rng(0).random(shape, dtype="f4") + 1.0


def test_end_after_changing_the_normal_axis_goes_to_the_last_slice_of_that_axis(
    serve, page: Page, tmp_path
):
    """Item 4: End after switching the normal axis jumped to the first axis's last index."""
    root = tmp_path / "data"
    _volume(root)
    server = serve(root)
    page.goto(server.url + "?file=v.h5&dataset=/v")
    wait_for_picture(page)
    for button, last in (("dim 2", 111), ("dim 1", 95), ("dim 0", 47)):
        page.get_by_role("button", name=button, exact=True).click()
        wait_query(page, axis=button[-1])
        handle = page.locator(".dashapp-index .noUi-handle").first
        handle.focus()
        page.keyboard.press("End")
        wait_query(page, index=str(last))
        expect(page.locator(".dashapp-status-text").first).to_contain_text(
            f"index {last} of {last + 1}", timeout=TIMEOUT
        )
        page.keyboard.press("Home")
        wait_query(page, index="0")
        page.screenshot(path=f"/tmp/feed-end-{button[-1]}.png")


def _button_colour(page: Page, name: str) -> str:
    return page.get_by_role("button", name=name).evaluate(
        "b => getComputedStyle(b).backgroundColor"
    )


def test_follow_latest_looks_different_when_on_and_counts_as_the_slider(
    serve, page: Page, tmp_path
):
    """Item 6: the toggle looked the same on and off; the badge counted differently."""
    root = tmp_path / "runs"
    root.mkdir()
    writer = Writer(root / "live.h5", "append")
    try:
        server = serve(root)
        page.goto(server.url + "?file=live.h5&dataset=/model&axis=1&index=3")
        wait_for_picture(page)
        off = page.get_by_role("button", name="Follow latest")
        expect(off).to_have_text("Follow latest: off", timeout=TIMEOUT)
        colour_off = _button_colour(page, "Follow latest")
        writer.step()
        writer.step()  # three iterations: indices 0, 1, 2
        badge = page.locator(".dashapp-newer").first
        expect(badge).to_contain_text("dim 0 up to index 2", timeout=TIMEOUT)
        iteration = page.locator(".dashapp-dim-0 .bk-input").first
        expect(iteration).to_have_value("0", timeout=TIMEOUT)
        off.click()
        expect(off).to_have_text("Follow latest: on", timeout=TIMEOUT)
        expect(iteration).to_have_value("2", timeout=TIMEOUT)  # the badge's number
        expect(page.locator(".dashapp-status-text").first).to_contain_text(
            "dim 0: index 2 of 3", timeout=TIMEOUT
        )
        time.sleep(0.5)  # (the button's colour transition)
        assert _button_colour(page, "Follow latest") != colour_off
        page.screenshot(path="/tmp/feed-follow-on.png")
        off.click()
        expect(off).to_have_text("Follow latest: off", timeout=TIMEOUT)
    finally:
        writer.close()


def test_an_iteration_scale_is_counted_as_its_slider_counts(serve, page: Page, tmp_path):
    """Item 6: a 1-based iteration scale made the status say 8 where the slider said 7."""
    root = tmp_path / "runs"
    root.mkdir()
    with h5py.File(root / "inv.h5", "w") as f:
        it = f.create_dataset("iteration", data=np.arange(1, 10, dtype="i4"))
        it.make_scale("iteration")
        m = f.create_dataset("model", data=np.random.default_rng(1).random((9, 6, 8, 10)))
        m.dims[0].attach_scale(it)
    server = serve(root)
    page.goto(server.url + "?file=inv.h5&dataset=/model&axis=1&index=2&d0=7")
    wait_for_picture(page)
    expect(page.locator(".dashapp-dim-0 .bk-input").first).to_have_value("7", timeout=TIMEOUT)
    text = status(page)
    assert "iteration: index 7 of 9" in text
    assert "8" not in text.split(" · ")[1]  # no second count of the same position
    page.screenshot(path="/tmp/feed-numbering.png")


def test_clicking_the_reverse_colours_label_reverses_the_colours(serve, page: Page, tmp_path):
    """Item 12: a click on the words "Reverse colours" did nothing."""
    root = tmp_path / "data"
    _volume(root, (8, 20, 30))
    server = serve(root)
    page.goto(server.url + "?file=v.h5&dataset=/v")
    before = wait_for_picture(page)
    palette = view_in_browser(page)["palette"]
    page.get_by_text("Reverse colours").first.click()
    wait_query(page, cmap="fire_r")
    wait_for_picture(page, not_equal=before)
    assert view_in_browser(page)["palette"] != palette
    expect(page.get_by_text("Reverse colours").first).to_have_text("Reverse colours: on")
    page.screenshot(path="/tmp/feed-reverse.png")


def test_robust_limits_stay_those_of_the_slice_when_zooming(serve, page: Page, tmp_path):
    """Item 12: robust colour limits changed on zoom; now they are the whole slice's, and the
    status line says so."""
    root = tmp_path / "data"
    root.mkdir()
    with h5py.File(root / "ramp.h5", "w") as f:  # values rise left to right: a zoom matters
        f["ramp"] = np.broadcast_to(np.linspace(0, 100, 200, dtype="f4"), (4, 150, 200)).copy()
    server = serve(root)
    page.goto(server.url + "?file=ramp.h5&dataset=/ramp&scale=linear")
    wait_for_picture(page)
    whole = view_in_browser(page)
    colour = status(page).split(" · ")[-1]
    box = page.locator(".dashapp-plot canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    for _ in range(5):
        page.mouse.wheel(0, -300)  # zoom in with the wheel, on the left (low) part
        time.sleep(0.2)
    deadline = time.monotonic() + 20
    while "zoom" not in query(page) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "zoom" in query(page)
    expect(page.locator(".dashapp-status-text").first).to_contain_text(
        "(of the whole slice)", timeout=TIMEOUT
    )
    zoomed = view_in_browser(page)
    assert (zoomed["low"], zoomed["high"]) == (whole["low"], whole["high"])
    assert re.sub(r" \(of the whole slice\)", "", status(page).split(" · ")[-1]) == colour
    page.screenshot(path="/tmp/feed-zoom.png")
