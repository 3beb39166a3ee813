"""One route, ``/slicer``, whichever way the slicer is served; old ``/slicer_app`` links redirect.

What a person did: copied a view's link from ``panel serve apps/slicer.py`` (``/slicer?...``)
and opened it on a ``dashapp serve`` server (404 before), and opened an old ``dashapp serve``
link (``/slicer_app?...``). Both must show the same view. (Through the JupyterLab proxy:
tests/jupyter/test_jupyter.py.)
"""

from __future__ import annotations

import urllib.request
from urllib.parse import parse_qs, urlparse

import h5py
import numpy as np
import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

TIMEOUT = 60_000
LINK = "file=runs/vol.h5&dataset=/volume&axis=1&index=3&cmap=fire"


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "data"
    (root / "runs").mkdir(parents=True)
    with h5py.File(root / "runs" / "vol.h5", "w") as f:
        f["volume"] = np.arange(6 * 10 * 12, dtype="f4").reshape(6, 10, 12)
    return root


def _shows_the_view(page: Page) -> None:
    expect(page.locator(".dashapp-title").first).to_contain_text("/volume", timeout=TIMEOUT)
    status = page.locator(".dashapp-status-text").first
    expect(status).to_contain_text("index 3 of 10", timeout=TIMEOUT)
    query = parse_qs(urlparse(page.url).query)
    assert query["file"] == ["runs/vol.h5"]
    assert query["axis"] == ["1"]
    assert query["index"] == ["3"]


@pytest.mark.parametrize("way", ["panel serve apps/slicer.py", "dashapp serve"])
def test_the_same_link_opens_the_same_view_however_served(serve, page: Page, root, way):
    server = serve(root, dashapp_serve=way == "dashapp serve")
    base = f"http://127.0.0.1:{server.port}"
    page.goto(f"{base}/slicer?{LINK}")
    _shows_the_view(page)
    assert urlparse(page.url).path == "/slicer"
    page.screenshot(path=f"/tmp/core-route-{way.split()[0]}.png")
    assert server.alive()


def test_an_old_slicer_app_link_lands_on_slicer_with_the_same_view(serve, page: Page, root):
    server = serve(root, dashapp_serve=True)
    base = f"http://127.0.0.1:{server.port}"
    page.goto(f"{base}/slicer_app?{LINK}")
    _shows_the_view(page)
    assert urlparse(page.url).path == "/slicer"  # redirected, the query kept
    page.screenshot(path="/tmp/core-route-old-link.png")


def test_the_redirect_keeps_the_query_and_asks_nothing(serve, root):
    server = serve(root, dashapp_serve=True)

    class NoFollow(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoFollow)
    for old in ("/slicer_app", "/slicer_app/"):
        try:
            opener.open(f"http://127.0.0.1:{server.port}{old}?{LINK}", timeout=30)
        except urllib.error.HTTPError as exc:
            assert exc.code == 302
            assert exc.headers["Location"] == f"/slicer?{LINK}"
        else:
            raise AssertionError("no redirect")
