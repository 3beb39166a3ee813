"""In Chromium: the token URL opens the app and stays in the cookie, not in the address bar;
without the token there is only the token page; a viewer sees the cluster's shell fields
read-only. Fresh browser contexts (no cookie) stand for someone else's browser."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import h5py
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect

from ..conftest import TEST_TOKEN
from .test_slicer_browser import TIMEOUT, wait_for_picture

pytestmark = pytest.mark.browser


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    with h5py.File(root / "run.h5", "w") as f:
        f["volume"] = np.random.default_rng(0).random((6, 40, 50), dtype=np.float32)
    with h5py.File(root / "neighbour.h5", "w") as f:  # in no link: only a listing shows it
        f["x"] = np.zeros((2, 3, 4))
    return root


@pytest.fixture
def stranger(browser: Browser):
    """A browser that never opened the token URL (no cookie)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield context.new_page()
    context.close()


def _query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.evaluate("window.location.href")).query)


def test_token_url_opens_the_app_and_a_stranger_gets_the_token_page(
    serve, data_root, stranger: Page
):
    server = serve(data_root, dashapp_serve=True)
    deep = "?file=run.h5&dataset=/volume&axis=0&index=2"
    stranger.goto(server.url + deep)
    expect(stranger.get_by_text("This server needs its access token")).to_be_visible()
    assert stranger.locator("canvas").count() == 0
    assert "neighbour.h5" not in stranger.content()  # no listing, no tree
    stranger.locator("input[name=token]").fill("not-the-token")
    stranger.get_by_role("button", name="Open").click()
    expect(stranger.get_by_text("That is not this server's token")).to_be_visible()

    # The owner pastes the token (or opens the printed URL): the deep link opens.
    stranger.locator("input[name=token]").fill(TEST_TOKEN)
    stranger.get_by_role("button", name="Open").click()
    expect(stranger.locator(".dashapp-title").first).to_contain_text("/volume", timeout=TIMEOUT)
    wait_for_picture(stranger)
    assert "token" not in _query(stranger)  # a shared view link never carries the token
    assert _query(stranger)["file"] == ["run.h5"]
    # links inside the app and new pages of this browser keep working (the cookie)
    stranger.goto(server.url + "?file=run.h5&dataset=/volume&axis=1&index=3")
    expect(stranger.locator(".dashapp-title").first).to_contain_text("/volume", timeout=TIMEOUT)
    wait_for_picture(stranger)


def test_printed_url_opens_the_app_without_the_token_in_the_address(
    serve, data_root, stranger: Page
):
    server = serve(data_root, dashapp_serve=True)
    stranger.goto(f"{server.url}?token={TEST_TOKEN}&file=run.h5&dataset=/volume")
    expect(stranger.locator(".dashapp-title").first).to_contain_text("/volume", timeout=TIMEOUT)
    wait_for_picture(stranger)
    assert "token" not in _query(stranger)


def test_panel_serve_asks_for_the_token_in_the_page(serve, data_root, stranger: Page):
    """``panel serve apps/slicer.py`` (no auth module): the page asks; the token is kept."""
    server = serve(data_root)
    stranger.goto(server.url + "?file=run.h5&dataset=/volume")
    expect(stranger.get_by_text("This server needs its access token")).to_be_visible(
        timeout=TIMEOUT
    )
    expect(stranger.locator(".dashapp-title")).to_have_count(0)
    stranger.locator("input[name=token]").fill(TEST_TOKEN)
    stranger.locator("button", has_text="Open").click()
    expect(stranger.locator(".dashapp-title").first).to_contain_text("/volume", timeout=TIMEOUT)
    wait_for_picture(stranger)
    for _ in range(50):
        if "token" not in _query(stranger):
            break
        stranger.wait_for_timeout(100)
    assert "token" not in _query(stranger)
    assert _query(stranger)["file"] == ["run.h5"]
    stranger.goto(server.url + "?file=run.h5&dataset=/volume&axis=2")  # the cookie lets it in
    expect(stranger.locator(".dashapp-title").first).to_contain_text("/volume", timeout=TIMEOUT)


def test_a_viewer_sees_the_clusters_shell_fields_read_only(
    serve, data_root, stranger: Page, page: Page
):
    server = serve(data_root, dashapp_serve=True, options=["--allow-viewers"])
    for who, expected_disabled in ((stranger, True), (page, False)):
        who.goto(server.url)
        who.locator(".bk-tab").filter(has_text="Dask cluster").click()
        kind = who.locator("select").first
        expect(kind).to_be_visible(timeout=TIMEOUT)
        kind.select_option("slurm")
        prologue = who.get_by_label("Shell commands run before the workers start, one per line")
        expect(prologue).to_be_visible(timeout=TIMEOUT)
        if expected_disabled:
            expect(prologue).to_be_disabled()
            expect(who.locator(".dashapp-cluster-viewer").first).to_be_visible()
            options = kind.locator("option").all_inner_texts()
            assert "connect" not in options
        else:
            expect(prologue).to_be_enabled()
            expect(who.locator(".dashapp-cluster-viewer")).to_be_hidden()
