"""The Dask dashboard route of the app's server (``dask/...``), without a browser.

A real ``dashapp serve`` (which registers the route): a request without the access token is
refused like the app's pages, and with it, no running cluster is said in words. The browser
test (tests/browser/test_cluster_browser.py) opens a real dashboard through it.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from dashapp.cluster.proxy import dashboard_base

from ..conftest import TEST_TOKEN


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_route_asks_for_the_token_and_says_when_no_cluster_runs(serve):
    server = serve(None, dashapp_serve=True)
    url = f"http://127.0.0.1:{server.port}/dask/status"
    code, text = _get(url)
    assert code == 403
    assert "access token" in text
    code, text = _get(url, "not-the-token")
    assert code == 403
    code, text = _get(url, TEST_TOKEN)
    assert code == 404
    assert "No Dask cluster is running" in text


@pytest.mark.parametrize(
    ("info", "base"),
    [
        ({"status": "running", "dashboard_link": "http://10.0.0.5:8787/status"},
         "http://10.0.0.5:8787"),
        ({"status": "none", "dashboard_link": "http://10.0.0.5:8787/status"}, None),
        ({"status": "running", "dashboard_link": None}, None),
        ({"status": "running", "dashboard_link": "file:///etc/passwd"}, None),
    ],
)  # fmt: skip
def test_the_target_is_the_running_clusters_dashboard_only(info, base):
    assert dashboard_base(info) == base
