"""In the browser: the picture follows a real writer process appending iterations."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from ..writers import Writer
from .test_slicer_browser import TIMEOUT, plot_png, query, view_in_browser, wait_for_picture

pytestmark = pytest.mark.browser


def test_follow_latest_moves_the_iteration_slider_as_a_writer_appends(serve, page: Page, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    writer = Writer(root / "live.h5", "append")
    writer.step()  # two iterations on disk when the page opens
    try:
        server = serve(root)
        page.goto(server.url + "?file=live.h5&dataset=/model&axis=1&index=3")
        first = wait_for_picture(page)
        iteration = page.locator(".dashapp-dim-0 .bk-input").first
        expect(iteration).to_have_value("0", timeout=TIMEOUT)
        # Not following: the picture stays, a badge says newer data exists.
        writer.step()
        expect(page.locator(".dashapp-newer").first).to_contain_text("newer data", timeout=TIMEOUT)
        assert plot_png(page) == first
        # Follow latest: the slider jumps to the newest iteration and the picture changes.
        page.get_by_role("button", name="Follow latest").click()
        expect(iteration).to_have_value("2", timeout=TIMEOUT)
        second = wait_for_picture(page, not_equal=first)
        assert query(page)["follow"] == "true"
        for expected in ("3", "4"):
            writer.step()
            expect(iteration).to_have_value(expected, timeout=TIMEOUT)
        wait_for_picture(page, not_equal=second)
        assert query(page)["d0"] == "4"
        assert query(page)["index"] == "3"  # the user's slice stays
    finally:
        writer.close()


def test_a_writer_fault_keeps_the_last_picture_and_recovers(serve, page: Page, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    writer = Writer(root / "live.h5", "append")
    writer.step()
    writer.close()
    good = (root / "live.h5").read_bytes()
    server = serve(root)
    page.goto(server.url + "?file=live.h5&dataset=/model&axis=1&index=2&d0=1")
    wait_for_picture(page)
    shown = view_in_browser(page)
    (root / "live.h5").unlink()  # deleted under the viewer
    expect(page.locator(".dashapp-file-problem").first).to_contain_text(
        "does not exist", timeout=TIMEOUT
    )
    kept = view_in_browser(page)  # the same image data and colours are still drawn
    assert (kept["sum"], kept["n"], kept["palette"]) == (shown["sum"], shown["n"], shown["palette"])
    tmp = root / "live.h5.part"
    tmp.write_bytes(good)
    tmp.rename(root / "live.h5")  # written again, by rename
    deadline = time.monotonic() + 30
    while page.locator(".dashapp-file-problem").count() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert page.locator(".dashapp-file-problem").count() == 0
    assert server.alive()
