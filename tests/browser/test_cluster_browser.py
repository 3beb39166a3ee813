"""In the browser: start a cluster from the form, see its workers, run the inversion sweep on
it and watch the stitched model fill in in the slicer."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from ..conftest import token_cookies
from .test_slicer_browser import TIMEOUT, status, wait_for_picture, wait_query

pytestmark = pytest.mark.browser


def test_cluster_pane_and_sweep(serve, page: Page):
    server = serve(None)  # the demo workspace
    page.goto(server.url)
    page.locator(".bk-tab").filter(has_text="Dask cluster").click()
    start = page.locator(".dashapp-cluster-start button").first
    expect(start).to_be_visible(timeout=TIMEOUT)
    start.click()  # a LocalCluster with the form's defaults (2 workers)
    summary = page.locator(".dashapp-cluster-summary").first
    expect(summary).to_contain_text("running", timeout=90_000)
    expect(summary).to_contain_text("Workers: 2 of 2", timeout=90_000)
    expect(page.locator(".dashapp-workers .tabulator-row")).to_have_count(2, timeout=TIMEOUT)
    expect(summary).to_contain_text("Dask dashboard")

    # A small sweep: 3 x 4 stations of quick inversions, on the cluster just started.
    page.get_by_label("Stations along y").fill("3")
    page.get_by_label("Stations along y").press("Enter")
    page.get_by_label("Stations along x").fill("4")
    page.get_by_label("Stations along x").press("Enter")
    page.get_by_role("button", name="tiny").click()
    page.locator(".dashapp-sweep-start button").first.click()
    # The slicer takes over and follows the stitched model as stations land.
    expect(page.locator(".dashapp-title").first).to_contain_text("/model", timeout=TIMEOUT)
    q = wait_query(page, follow="true")  # the URL follows the view (debounced)
    assert q["file"].startswith("sweeps/sweep-dc-")
    page.locator(".bk-tab").filter(has_text="Dask cluster").click()
    expect(page.locator(".dashapp-sweep-text").first).to_contain_text(
        "finished: 12 of 12 stations", timeout=180_000
    )
    page.locator(".bk-tab").filter(has_text="Slicer").click()
    wait_for_picture(page)
    assert "read" in status(page)

    page.locator(".bk-tab").filter(has_text="Dask cluster").click()
    page.locator(".dashapp-cluster-stop button").first.click()
    expect(summary).to_contain_text("Status: none", timeout=90_000)


def test_every_process_of_a_multi_process_server_shows_one_cluster(serve, browser):
    """``panel serve --num-procs 2``: a cluster started from one page is the cluster of every
    page, whichever process serves it, and a page can stop it for all.

    Which process serves a page is the kernel's choice; with six pages, all of them served by
    the starting page's process (when this test could not tell) happens 1 time in 32."""
    server = serve(None, options=["--num-procs", "2"])
    context = browser.new_context(storage_state={"cookies": token_cookies(), "origins": []})
    pages = []
    try:
        first = context.new_page()
        first.goto(server.url)
        first.locator(".bk-tab").filter(has_text="Dask cluster").click()
        first.locator(".dashapp-cluster-start button").first.click()
        summary = first.locator(".dashapp-cluster-summary").first
        expect(summary).to_contain_text("Workers: 2 of 2", timeout=90_000)
        address = first.locator(".dashapp-cluster-summary code").first.inner_text()
        assert re.fullmatch(r"tcp://[\w.-]+:\d+", address), address
        for _ in range(5):
            page = context.new_page()
            page.goto(server.url)
            page.locator(".bk-tab").filter(has_text="Dask cluster").click()
            s = page.locator(".dashapp-cluster-summary").first
            expect(s).to_contain_text("running", timeout=TIMEOUT)
            expect(s).to_contain_text(address, timeout=TIMEOUT)
            pages.append(page)
        # a stop from the last page stops it for every page
        last = pages[-1]
        last.locator(".dashapp-cluster-stop button").first.click()
        for page in [first, *pages]:
            expect(page.locator(".dashapp-cluster-summary").first).to_contain_text(
                "Status: none", timeout=90_000
            )
    finally:
        context.close()
