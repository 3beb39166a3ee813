"""In the browser: views, a snapshot and a note land on the timeline, which restores a view."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from .test_slicer_browser import TIMEOUT, wait_for_picture, wait_query

pytestmark = pytest.mark.browser


def test_timeline_records_and_restores(serve, page: Page, tmp_path):
    server = serve(None, env={"DASHAPP_WORKSPACE": str(tmp_path / "workspace")})
    page.goto(server.url + "?file=inversion/model.h5&dataset=/true_model&axis=2&index=30")
    wait_for_picture(page)
    time.sleep(2.5)  # stayed on this view longer than the 2 s debounce: it is recorded
    page.locator(".dashapp-snapshot button").first.click()
    expect(page.locator(".dashapp-message").first).to_contain_text(
        "Snapshot saved", timeout=TIMEOUT
    )
    page.get_by_role("button", name="x", exact=True).click()  # move away
    page.get_by_role("button", name="y", exact=True).click()
    wait_query(page, axis="1")

    page.locator(".bk-tab").filter(has_text="Timeline").click()
    page.locator(".dashapp-note-text textarea").first.fill("dipping fault visible at x index 30")
    page.locator(".dashapp-add-note button").first.click()
    timeline = page.locator(".dashapp-timeline").first
    expect(timeline).to_contain_text("dipping fault visible", timeout=TIMEOUT)
    expect(timeline).to_contain_text("Snapshot", timeout=TIMEOUT)
    expect(page.locator(".dashapp-event-snapshot img").first).to_be_visible()
    expect(page.locator(".dashapp-event-file").first).to_be_visible()

    # Show only snapshots, then restore that view: the slicer goes back to axis 2, index 30.
    page.get_by_role("button", name="snapshot", exact=True).click()
    expect(page.locator(".dashapp-event-note")).to_have_count(0, timeout=TIMEOUT)
    page.locator(".dashapp-restore button").first.click()
    wait_query(page, axis="2", index="30", dataset="/true_model")
    wait_for_picture(page)


def test_a_long_timeline_scrolls_in_its_tab_and_leaves_the_plot_on_screen(
    serve, page: Page, tmp_path
):
    # A workspace that has been used for a while: the timeline is far taller than the screen.
    from dashapp.provenance import Record

    workspace = tmp_path / "workspace"
    record = Record(workspace)
    for i in range(80):
        record.note(f"note {i}: looked at the fault again")
    record.close()
    server = serve(None, env={"DASHAPP_WORKSPACE": str(workspace)})
    page.goto(server.url + "?file=inversion/model.h5&dataset=/true_model&axis=2&index=30")
    wait_for_picture(page)
    viewport = page.viewport_size["height"]
    plot = page.locator(".dashapp-plot").first.bounding_box()
    # The tabs share one box: before, the slicer's plot stretched to the timeline's height.
    assert plot["height"] < viewport, plot
    page.locator(".bk-tab").filter(has_text="Timeline").click()
    timeline = page.locator(".dashapp-timeline").first
    expect(timeline).to_contain_text("note 79", timeout=TIMEOUT)
    assert timeline.bounding_box()["height"] > viewport  # tall, and scrolled inside its tab
    page.locator(".bk-tab").filter(has_text="Slicer").click()
    assert page.locator(".dashapp-plot").first.bounding_box()["height"] < viewport
