"""In the browser: start a cluster from the form, see its workers, open its dashboard, run the
inversion sweep on it and watch the stitched model fill in in the slicer."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from ..conftest import token_cookies
from .test_slicer_browser import TIMEOUT, status, wait_for_picture, wait_query

pytestmark = pytest.mark.browser


def test_cluster_pane_and_sweep(serve, page: Page):
    server = serve(None)  # the demo workspace
    page.goto(server.url, timeout=120_000)  # (a busy CI machine: the first page is slow)
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
    page.get_by_role("button", name="Tiny (quick look)").click()
    page.locator(".dashapp-sweep-start button").first.click()
    # The Dask tab stays, its progress bar in view while the sweep runs (it used to switch
    # to the Slicer tab at once); the slicer follows the stitched model meanwhile.
    text = page.locator(".dashapp-sweep-text").first
    expect(text).to_contain_text("The slicer follows sweeps/sweep-dc-", timeout=TIMEOUT)
    bar = page.locator(".dashapp-sweep-progress").first
    for _ in range(6):  # while it runs: the progress bar is shown, the tab is not switched
        expect(bar).to_be_visible()
        expect(page.locator(".bk-tab.bk-active").first).to_have_text("Dask cluster")
        page.wait_for_timeout(500)
    expect(text).to_contain_text("finished: 12 of 12 stations", timeout=180_000)
    expect(page.locator(".bk-tab.bk-active").first).to_have_text("Dask cluster")
    page.locator(".bk-tab").filter(has_text="Slicer").click()
    expect(page.locator(".dashapp-title").first).to_contain_text("/model", timeout=TIMEOUT)
    q = wait_query(page, follow="true")  # the URL follows the view (debounced)
    assert q["file"].startswith("sweeps/sweep-dc-")
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
            page.goto(server.url, timeout=120_000)  # (a busy CI machine: the first page is slow)
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


#: Header titles or cells of the page's tables whose text does not fit (cut off).
_CUT = """() => {
  const cut = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.matches(".tabulator-col-title, .tabulator-cell") && el.offsetParent !== null
          && el.scrollWidth > el.clientWidth + 1) cut.push(el.innerText);
      if (el.matches(".tabulator-tableholder") && el.offsetParent !== null
          && el.scrollWidth > el.clientWidth + 1) cut.push("(the table scrolls sideways)");
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  return cut;
}"""


def test_the_dask_pane_at_first_sight_and_its_dashboard_link(serve, page: Page):
    """What a person sees in the Dask tab (1400 x 900, ``dashapp serve`` as the README says):
    placeholders in empty tables, no batch jobs for a local cluster, every column of the
    workers table readable, and a dashboard link that opens through the app's own port (not
    ``127.0.0.1:<dashboard port>``, unreachable through an SSH tunnel or JupyterLab's proxy)."""
    server = serve(None, dashapp_serve=True)
    page.goto(server.url, timeout=120_000)  # (a busy CI machine: the first page is slow)
    page.locator(".bk-tab").filter(has_text="Dask cluster").click()
    expect(page.get_by_text("No workers yet").first).to_be_visible(timeout=TIMEOUT)
    # The form says "local": a local cluster has no batch jobs, so no such table.
    expect(page.get_by_text("Batch jobs", exact=True)).to_be_hidden()
    expect(page.get_by_text("No batch jobs").first).to_be_hidden()
    page.locator(".dashapp-cluster-start button").first.click()
    summary = page.locator(".dashapp-cluster-summary").first
    expect(summary).to_contain_text("Workers: 2 of 2", timeout=90_000)
    expect(page.locator(".dashapp-workers .tabulator-row")).to_have_count(2, timeout=TIMEOUT)
    expect(page.get_by_text("No workers yet").first).to_be_hidden()
    expect(page.get_by_text("Batch jobs", exact=True)).to_be_hidden()
    page.wait_for_timeout(500)  # the table's layout after its rows arrived
    assert page.evaluate(_CUT) == []  # no column title or value cut off

    link = summary.get_by_role("link", name="Dask dashboard")
    with page.context.expect_page() as opened:
        link.click()
    dashboard = opened.value
    dashboard.wait_for_load_state()
    assert dashboard.url == f"http://127.0.0.1:{server.port}/dask/status", dashboard.url
    expect(dashboard).to_have_title(re.compile("Dask"), timeout=TIMEOUT)
    # Its plots draw (Bokeh fetches the document over its websocket: through the app's port).
    expect(dashboard.locator("canvas").first).to_be_visible(timeout=TIMEOUT)
    dashboard.close()

    page.locator(".dashapp-cluster-stop button").first.click()
    expect(summary).to_contain_text("Status: none", timeout=90_000)
    expect(page.get_by_text("No workers yet").first).to_be_visible(timeout=TIMEOUT)


def test_the_sweep_form_speaks_and_says_start_a_cluster_beside_its_button(serve, page: Page):
    """The sweep's toggles carry labels in words, and "Run the sweep" without a cluster says
    so next to the button, on screen (it used to appear below the fold)."""
    server = serve(None)
    page.goto(server.url, timeout=120_000)  # (a busy CI machine: the first page is slow)
    page.locator(".bk-tab").filter(has_text="Dask cluster").click()
    expect(page.get_by_text("Soundings").first).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_role("button", name="DC resistivity")).to_be_visible()
    expect(page.get_by_role("button", name="Frequency-domain EM")).to_be_visible()
    expect(page.get_by_text("Inversion size per station").first).to_be_visible()
    expect(page.get_by_role("button", name="Tiny (quick look)")).to_be_visible()

    go = page.locator(".dashapp-sweep-start button").first
    go.scroll_into_view_if_needed()
    go.click()
    hint = page.locator(".dashapp-sweep-hint").first
    expect(hint).to_contain_text("start one", timeout=TIMEOUT)
    expect(hint).to_be_in_viewport()
    near, seen = go.bounding_box(), hint.bounding_box()
    assert near is not None
    assert seen is not None
    assert abs((seen["y"] + seen["height"] / 2) - (near["y"] + near["height"] / 2)) < 60
