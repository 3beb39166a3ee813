"""In Chromium: a file whose every string is HTML runs no script and injects no element.

The file (tests/hostile.py) carries ``<img src=x onerror=...>``, ``<b id=injected>``,
``<script>``, ``<svg onload=...>``, Markdown links and TeX in its file name, a folder name,
group/dataset/attribute names, attribute values, ``units``, dimension scales' ``long_name``
and NeXus ``title``/``signal``/``axes``/``interpretation``. It is opened from the tree and by a
deep link, every tab is visited and the plot hovered; ``window.__xss`` must stay undefined, no
element with id ``injected`` may exist (Playwright's CSS locators pierce the shadow DOM), and
the payloads must be on the page as text.
"""

from __future__ import annotations

import contextlib
import time
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page, expect

from ..hostile import (
    COMPOUND,
    FILE_NAME,
    FOLDER_NAME,
    SCALED,
    SIGNAL,
    TEXT,
    hostile,
    write_hostile,
)
from .test_slicer_browser import TIMEOUT, hover_text, wait_for_picture

pytestmark = pytest.mark.browser


def assert_inert(page: Page, where: str) -> None:
    """No payload ran and none became an element."""
    assert page.evaluate("window.__xss") is None, f"script ran ({where})"
    assert page.locator("#injected").count() == 0, f"an element was injected ({where})"
    assert page.locator("img[src='x']").count() == 0, f"an image was injected ({where})"


def shown(page: Page, text: str) -> None:
    """``text`` is on the page, as text."""
    expect(page.get_by_text(text).first).to_be_attached(timeout=TIMEOUT)


def hover(page: Page) -> str:
    """Move the mouse over the plot until its hover readout shows; the readout's text."""
    box = page.locator(".dashapp-plot").first.bounding_box()
    for attempt in range(5):
        x, y = box["x"] + box["width"] * (0.4 + 0.03 * attempt), box["y"] + box["height"] * 0.5
        page.mouse.move(x - 5, y - 5)
        page.mouse.move(x, y, steps=5)
        with contextlib.suppress(AssertionError):
            return hover_text(page, timeout=3)
    raise AssertionError("no hover readout")


def test_html_in_every_string_of_a_file_stays_text(serve, page: Page, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    write_hostile(root)
    server = serve(root, env={"DASHAPP_WORKSPACE": str(tmp_path / "workspace")})
    page.on("dialog", lambda d: d.dismiss())
    page.goto(server.url)

    # The folder and the file are listed by name; the folder opens.
    page.get_by_text(FOLDER_NAME, exact=True).click()
    expect(page.locator(".dashapp-where").first).to_contain_text(f"/{FOLDER_NAME}", timeout=TIMEOUT)
    assert_inert(page, "folder")
    page.goto(server.url)

    # Opened from the tree: the NeXus default (entry/data/signal) with hostile axes and units.
    page.get_by_text(FILE_NAME, exact=True).click()
    picture = wait_for_picture(page)
    expect(page.locator(".dashapp-title").first).to_contain_text(SIGNAL, timeout=TIMEOUT)
    shown(page, hostile("nxunits"))
    assert_inert(page, "NeXus signal")

    # The 4-D dataset whose dimension scales have hostile long_name and units: slider labels.
    page.locator(".dashapp-tree").get_by_text(SCALED, exact=True).click()
    wait_for_picture(page, not_equal=picture)
    expect(page.locator(".dashapp-index").first).to_contain_text(
        f"Slice along {hostile('long_name1')}", timeout=TIMEOUT
    )
    expect(page.locator(".dashapp-dim-0").first).to_contain_text(hostile("long_name0"))
    expect(page.locator(".dashapp-status-text").first).to_contain_text(hostile("unit1"))
    assert_inert(page, "dimension scales")

    # The hover readout names the axes and the value with their (hostile) names and units.
    readout = hover(page)
    assert hostile("long_name3") in readout
    assert hostile("long_name") + " (" + hostile("units") + ")" in readout
    assert_inert(page, "hover")

    # A text dataset's value and a broken link's target end up in the alert.
    page.locator(".dashapp-tree").get_by_text(TEXT, exact=True).click()
    expect(page.locator(".dashapp-error").first).to_contain_text("holds text", timeout=TIMEOUT)
    expect(page.locator(".dashapp-error").first).to_contain_text("<script>")
    page.locator(".dashapp-tree").get_by_text(hostile("soft"), exact=True).click()
    expect(page.locator(".dashapp-error").first).to_contain_text(
        hostile("nowhere"), timeout=TIMEOUT
    )
    page.locator(".dashapp-tree").get_by_text(COMPOUND, exact=True).click()
    expect(page.locator(".dashapp-error").first).to_contain_text(
        f"compound records (compound{{{hostile('field')}", timeout=TIMEOUT
    )
    assert_inert(page, "alerts")

    # Back to a picture; a snapshot and the recorded views go to the timeline.
    page.locator(".dashapp-tree").get_by_text(SCALED, exact=True).click()
    wait_for_picture(page)
    time.sleep(2.5)  # the view is recorded after 2 s on it
    page.locator(".dashapp-snapshot button").first.click()
    expect(page.locator(".dashapp-message").first).to_contain_text(
        "Snapshot saved", timeout=TIMEOUT
    )
    page.locator(".bk-tab").filter(has_text="Timeline").click()
    timeline = page.locator(".dashapp-timeline").first
    expect(timeline).to_contain_text(f"Snapshot: {FILE_NAME}", timeout=TIMEOUT)
    expect(page.locator(".dashapp-event-snapshot img").first).to_be_visible()
    assert_inert(page, "timeline")
    page.locator(".bk-tab").filter(has_text="Dask cluster").click()
    expect(page.locator(".dashapp-cluster-error, .bk-tab").first).to_be_attached()
    time.sleep(1)
    assert_inert(page, "cluster tab")
    page.locator(".bk-tab").filter(has_text="Slicer").click()

    # The attribute table of the dataset picked last (keys and values) shows them as text.
    shown(page, hostile("dskey"))
    expect(page.locator(".dashapp-details").first).to_contain_text("<script>")
    assert_inert(page, "attributes")

    # The same file by deep link, in a fresh page.
    link = server.url + "?" + urlencode({"file": FILE_NAME, "dataset": "/" + SCALED, "d0": 2})
    other = page.context.new_page()
    other.goto(link)
    wait_for_picture(other)
    expect(other.locator(".dashapp-title").first).to_contain_text(FILE_NAME, timeout=TIMEOUT)
    expect(other.locator(".dashapp-dim-0").first).to_contain_text(hostile("long_name0"))
    assert_inert(other, "deep link")
    assert_inert(page, "end")


def test_a_bad_link_says_what_it_left_out_and_still_shows_the_picture(serve, page: Page, tmp_path):
    from ..fixtures import write_volume

    root = tmp_path / "root"
    (root / "runs").mkdir(parents=True)
    write_volume(root / "runs" / "inv.h5", shape=(20, 30, 50))
    server = serve(root)
    page.goto(
        server.url + "?file=runs/inv.h5&dataset=&axis=99&index=-5&zoom=nan,1,2,3&vmin=1&vmax=0"
        "&cmap=nonexistent&scale=weird&foo=1"
    )
    picture = wait_for_picture(page)  # before: zoom=nan raised, and the page stayed blank
    message = page.locator(".dashapp-message").first
    for words in (
        "dataset= is empty; showing the file's default dataset /model",
        "axis=99 does not exist in a 3-D dataset; showing axis 0",
        "index=-5 is outside 0-19; showing index 0",
        "zoom='nan,1,2,3' is not 4 finite numbers",
        "vmin=1 is above vmax=0; swapped",
        "cmap='nonexistent' is not a colour map",
        "scale='weird' is not one of linear, log",
        "'foo' is not a setting of the slicer",
    ):
        expect(message).to_contain_text(words, timeout=TIMEOUT)
    expect(page.locator(".dashapp-title").first).to_contain_text("/model")
    status = page.locator(".dashapp-status-text").first.inner_text()
    assert "index 0 of 20" in status
    assert "colour manual: 0 … 1" in status

    # A file= no path can have: the message, and the page still browses and opens files.
    page.goto(server.url + "?file=" + "a" * 5000 + "&dataset=/model")
    expect(message).to_contain_text("(5,000 characters) is longer than any path", timeout=TIMEOUT)
    page.get_by_text("runs", exact=True).click()
    page.get_by_text("inv.h5", exact=True).click()
    wait_for_picture(page, not_equal=picture)
    expect(page.locator(".dashapp-title").first).to_contain_text("/model")
