"""The root is the root, seen in a browser: a link out of the root gets a sentence, no data."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

TIMEOUT = 30_000
SECRET = "TOP SECRET"


def test_soft_link_through_external_link_out_of_the_root_is_refused_in_the_page(
    serve, page: Page, tmp_path
):
    root = tmp_path / "root"
    root.mkdir()
    with h5py.File(tmp_path / "outside.h5", "w") as f:
        f["secret"] = SECRET
        f["image"] = np.full((8, 8), 1000.0)
        f["image"].attrs["long_name"] = SECRET
    with h5py.File(root / "a.h5", "w") as f:
        f["ext"] = h5py.ExternalLink(str(tmp_path / "outside.h5"), "/")
        f["s"] = h5py.SoftLink("/ext/secret")
        f["i"] = h5py.SoftLink("/ext/image")
        f["model"] = np.zeros((4, 5, 6), "f4")
    server = serve(root)
    for name in ("s", "i"):
        page.goto(server.url + f"?file=a.h5&dataset=/{name}")
        error = page.locator(".dashapp-error").first
        expect(error).to_contain_text(f"/{name} is a soft link to /ext/", timeout=TIMEOUT)
        expect(error).to_contain_text("/ext is an external link to")
        expect(error).to_contain_text("outside the root folder")
        expect(page.get_by_text(SECRET)).to_have_count(0)  # (pierces the shadow DOM)
    assert server.alive()


@pytest.mark.parametrize("named", ["/", '/<img src=x onerror="window.__xss=1">'])
def test_a_capsule_naming_root_slash_is_not_served(serve, page: Page, tmp_path, named):
    """``dashapp serve --capsule C`` where C's manifest says ``"root": "/"`` and packs nothing:
    the page says why; it never lists the machine's folders, and the root it quotes is text."""
    import json
    import zipfile

    capsule = tmp_path / "evil.capsule.zip"
    with zipfile.ZipFile(capsule, "w") as zf:
        zf.writestr("record.jsonl", "")
        manifest = {"format": "dashapp-capsule", "version": 1, "dashapp": "0.1.0", "root": named}
        zf.writestr("manifest.json", json.dumps(manifest))
    server = serve(None, options=["--args", "--capsule", str(capsule)])
    page.goto(server.url)
    expect(page.get_by_text("input files were not packed").first).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("etc", exact=True)).to_have_count(0)
    assert page.evaluate("window.__xss") is None
    expect(page.locator("img[src=x]")).to_have_count(0)
    assert server.alive()
