"""Every character the page shows has a font on a machine without an emoji font (issue 21, item 12).

Debian's Chromium here has no emoji font: an emoji icon (📷, 📄, 🆕) drew as an empty box. The
test opens the slicer and the timeline as a person does, collects the text of the page (through
Bokeh's shadow DOM) and asks fontconfig, for every character that is not ASCII, whether an
installed font has it; the icons themselves are SVG.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache

import h5py
import numpy as np
import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_slicer_browser import TIMEOUT, wait_for_picture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("fc-list") is None, reason="needs fontconfig's fc-list"),
]

_TEXT_JS = """() => {
  const parts = [];
  const walk = (root) => {
    const it = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n = it.nextNode(); n; n = it.nextNode()) {
      const el = n.parentElement;
      if (el && el.closest('style, script')) continue;
      if (el && el.getClientRects().length) parts.push(n.textContent);
    }
    for (const el of root.querySelectorAll('*')) if (el.shadowRoot) walk(el.shadowRoot);
  };
  walk(document);
  return parts.join(' ');
}"""


@cache
def has_font(char: str) -> bool:
    """Whether an installed font has a glyph for ``char`` (fontconfig, as Chromium uses)."""
    out = subprocess.run(
        ["fc-list", f":charset={ord(char):x}", "family"], capture_output=True, text=True, check=True
    )
    return bool(out.stdout.strip())


def unrenderable(page: Page) -> set[str]:
    text = page.evaluate(_TEXT_JS)
    return {c for c in set(text) if ord(c) > 127 and not c.isspace() and not has_font(c)}


def test_icons_need_no_emoji_font(serve, page: Page, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with h5py.File(root / "scan.h5", "w") as f:
        f["frame"] = np.arange(48 * 64, dtype="f4").reshape(48, 64)
    server = serve(root)
    page.goto(f"{server.url}?file=scan.h5&dataset=/frame")
    wait_for_picture(page)
    snapshot = page.locator(".dashapp-snapshot").first
    expect(snapshot).to_contain_text("Snapshot of this view")
    assert unrenderable(page) == set()
    assert snapshot.locator("svg").count() == 1  # the camera, drawn as SVG
    snapshot.locator("button").first.click()
    page.get_by_text("Timeline", exact=True).first.click()
    expect(page.locator(".dashapp-event-snapshot").first).to_be_visible(timeout=TIMEOUT)
    cards = page.locator(".dashapp-event")
    assert cards.count() >= 3  # environment, session start, opened file, snapshot
    for i in range(cards.count()):
        assert cards.nth(i).locator("svg").count() >= 1, cards.nth(i).inner_text()
    assert unrenderable(page) == set()
    page.screenshot(path=str(tmp_path / "timeline.png"))
