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
