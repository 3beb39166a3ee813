"""In the browser: views, a snapshot and a note land on the timeline, which restores a view."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import token_cookies

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


def _cube(folder, name: str):
    import h5py
    import numpy as np

    folder.mkdir()
    with h5py.File(folder / name, "w") as f:
        f["cube"] = np.arange(6 * 7 * 8, dtype="f4").reshape(6, 7, 8)
    return folder


def test_each_served_folder_has_its_own_timeline_and_restores_restore(
    serve, browser, page: Page, tmp_path
):
    """Two servers of two folders share one cache folder (as they do for one user). A page
    load is not a session start (nor a new "Opened" line for the same unchanged file); the
    File filter is wide enough to read; and restoring a view whose link names no colour map
    shows the default one, not the one picked since."""
    from dashapp.provenance import Record, default_workspace

    patient = {"DASHAPP_FS_TIMEOUT": "60"}  # a busy 2-core machine: cold first reads are slow
    a = _cube(tmp_path / "alpha", "a.h5")
    b = _cube(tmp_path / "beta", "b.h5")
    # A view recorded in beta's timeline by an older dashapp: its link names no colour map.
    old = Record(default_workspace(b))
    old.view("file=b.h5&dataset=/cube&axis=0&index=2", {}, file="b.h5", root=b)
    old.close()
    server_a = serve(a, env=patient)
    server_b = serve(b, env=patient)

    # Someone looks at alpha's file on the first server, long enough for it to be recorded.
    other = browser.new_context(storage_state={"cookies": token_cookies(), "origins": []})
    page_a = other.new_page()
    page_a.goto(server_a.url + "?file=a.h5&dataset=/cube&axis=1&index=3", timeout=120_000)
    expect(page_a.locator(".dashapp-status-text").first).to_be_visible(timeout=120_000)
    page_a.locator(".noUi-handle").first.focus()
    page_a.keyboard.press("ArrowRight")
    wait_query(page_a, index="4")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # alpha's server recorded that view (after 2 s)
        if any("a.h5" in e.title for e in Record(default_workspace(a)).events(kinds="view")):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("alpha's view was not recorded")

    # On the second server, three page loads (a reload each), then a colour map picked.
    for _ in range(3):
        page.goto(server_b.url + "?file=b.h5&dataset=/cube&axis=0&index=4", timeout=120_000)
        expect(page.locator(".dashapp-status-text").first).to_be_visible(timeout=120_000)
    page.locator(".bk-PaletteSelect .bk-input").first.click()
    page.get_by_text("kbc", exact=True).first.click()
    wait_query(page, cmap="kbc")

    page.locator(".bk-tab").filter(has_text="Timeline").click()
    timeline = page.locator(".dashapp-timeline").first
    expect(timeline).to_contain_text("b.h5", timeout=TIMEOUT)
    page.screenshot(path="/tmp/dashapp-test-artifacts/timeline-per-root.png")
    expect(timeline).to_contain_text("Server started: beta")
    expect(timeline).not_to_contain_text("a.h5")  # alpha's views are alpha's timeline's
    expect(page.locator(".dashapp-event-session")).to_have_count(1)  # the server's start
    expect(page.locator(".dashapp-event-file")).to_have_count(1)  # b.h5, unchanged: once
    width = page.locator(".dashapp-file-filter select").first.bounding_box()["width"]
    assert width > 150, width  # 22 px before: no file name readable
    page.locator(".dashapp-file-filter select").first.select_option("b.h5")

    # Restore the old view: index 2, and the default colour map (its link names none).
    restore = page.locator(".dashapp-restore button").last  # oldest last: the old view
    restore.click()
    q = wait_query(page, index="2", axis="0")
    assert q["cmap"] == "fire", q
    other.close()
