"""In the browser: the page in a narrow window (a JupyterLab tab), and the "Copy link" button.

A JupyterLab tab beside Lab's own file browser is 800-1000 px wide; the slicer page there gave
the plot ~140 px between its fixed file browser and controls. Now a narrow window opens with
both folded away (each unfolds with a click), and "Copy link" gives the view's link: to the
clipboard, and as text to select where the browser gives no clipboard access.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.conftest import token_cookies

from .test_slicer_browser import ARTIFACTS, TIMEOUT, status, wait_for_picture, wait_query

pytestmark = pytest.mark.browser

#: A cold server's first read on a busy 2-core machine can pass the 10 s filesystem deadline.
PATIENT = {"DASHAPP_FS_TIMEOUT": "60"}
LINK = "?file=inversion/model.h5&dataset=/true_model&axis=1&index=20&cmap=bgy"


@contextlib.contextmanager
def window(browser: Browser, width: int, **kwargs) -> Iterator[BrowserContext]:
    """A browser window ``width`` px wide holding the test servers' token cookie."""
    context = browser.new_context(
        viewport={"width": width, "height": 900},
        storage_state={"cookies": token_cookies(), "origins": []},
        **kwargs,
    )
    try:
        yield context
    finally:
        context.close()


def shown(page: Page, link: str) -> None:
    """Open ``link`` and wait for its picture (a cold server on a busy machine may take long)."""
    page.goto(link, timeout=120_000)
    try:
        page.locator(".dashapp-status-text").first.wait_for(timeout=120_000)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / f"layout-failed-{int(time.time())}.png"))
        raise
    wait_for_picture(page)


def plot_width(page: Page) -> float:
    return page.locator(".dashapp-plot").first.bounding_box()["width"]


def controls(page: Page):
    return page.locator(".dashapp-controls").first


def test_a_narrow_window_gives_the_plot_the_width_and_folds_the_rest(
    serve, browser: Browser, tmp_path
):
    server = serve(None, env=PATIENT)
    with window(browser, 800) as context:
        page = context.new_page()
        shown(page, server.url + LINK)
        page.screenshot(path=str(ARTIFACTS / "layout-800.png"))
        # The file browser and the controls are folded away: the plot has the width.
        assert plot_width(page) > 0.8 * 800, plot_width(page)
        expect(page.locator("#sidebar")).not_to_be_visible()
        expect(controls(page)).not_to_be_visible()
        # Each unfolds with a click, and folds again.
        page.get_by_role("button", name="Show controls").click()
        expect(controls(page)).to_be_visible(timeout=TIMEOUT)
        expect(page.get_by_role("button", name="x", exact=True)).to_be_visible()
        page.get_by_role("button", name="Hide controls").click()
        expect(controls(page)).not_to_be_visible(timeout=TIMEOUT)
        page.locator("#sidebar-toggle").click()
        expect(page.get_by_text("model.h5", exact=True)).to_be_visible(timeout=TIMEOUT)
        # The demo's first page opens on its picture: the plot has the width there too.
        shown(page, server.url)
        assert plot_width(page) > 0.8 * 800, plot_width(page)
        # A folder of one's own, no file open yet: the file browser stays, to pick one.
        (tmp_path / "runs").mkdir()
        own = serve(tmp_path, env=PATIENT)
        page.goto(own.url, timeout=120_000)
        expect(page.get_by_text("runs", exact=True)).to_be_visible(timeout=120_000)
        expect(page.locator("#sidebar")).to_be_visible()

    with window(browser, 1400) as context:  # a full screen: everything shown, as before
        page = context.new_page()
        shown(page, server.url + LINK)
        page.screenshot(path=str(ARTIFACTS / "layout-1400.png"))
        expect(page.locator("#sidebar")).to_be_visible()
        expect(controls(page)).to_be_visible()
        expect(page.get_by_text("model.h5", exact=True)).to_be_visible()
        assert plot_width(page) > 550, plot_width(page)


def copy_link(page: Page) -> str:
    """Click "Copy link"; the link shown as text (it is also on the clipboard when allowed)."""
    page.get_by_role("button", name="Copy link").click()
    box = page.locator(".dashapp-link input").first
    expect(box).to_be_visible(timeout=TIMEOUT)
    deadline = time.monotonic() + 10
    while not box.input_value() and time.monotonic() < deadline:
        time.sleep(0.1)
    return box.input_value()


def test_copy_link_opens_the_same_view_in_a_new_page(serve, browser: Browser):
    server = serve(None, env=PATIENT)
    origin = f"http://127.0.0.1:{server.port}"
    with window(browser, 900) as context:  # a JupyterLab tab's width
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
        page = context.new_page()
        shown(page, server.url + LINK)
        # Change the view after opening it: one slice further, with the keyboard.
        page.get_by_role("button", name="Show controls").click()
        handle = page.locator(".noUi-handle").first
        expect(handle).to_be_visible(timeout=TIMEOUT)
        handle.focus()
        page.keyboard.press("ArrowRight")
        wait_query(page, index="21")
        text = copy_link(page)
        expect(page.locator(".dashapp-link-note").first).to_contain_text("copied to the clipboard")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == text
        assert copied.startswith(server.url + "?")
        assert "token" not in copied

        other = context.new_page()  # a new page (a colleague, another tab) opens that link
        shown(other, copied)
        expect(other.locator(".dashapp-title").first).to_contain_text("inversion/model.h5")
        expect(other.locator(".dashapp-title").first).to_contain_text("/true_model")
        q = wait_query(other, file="inversion/model.h5", dataset="/true_model", axis="1")
        assert (q["index"], q["cmap"]) == ("21", "bgy")
        assert "index 21 of 96" in status(other)
        other.get_by_role("button", name="Show controls").click()
        expect(other.locator(".bk-PaletteSelect").first).to_contain_text("bgy")


def test_without_clipboard_access_the_link_is_shown_to_select(serve, browser: Browser):
    server = serve(None, env=PATIENT)
    with window(browser, 1400) as context:  # no clipboard permission granted
        context.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
        context.add_init_script("document.execCommand = () => false")
        page = context.new_page()
        shown(page, server.url + LINK)
        text = copy_link(page)
        expect(page.locator(".dashapp-link-note").first).to_contain_text("Copy the link from")
        assert text.startswith(server.url + "?file=inversion/model.h5")
        expect(page.locator(".dashapp-link input").first).to_be_enabled()  # to select and copy
