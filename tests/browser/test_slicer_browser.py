"""Playwright + Debian's Chromium against ``panel serve apps/slicer.py`` in a subprocess.

Assert on what a person sees: the plot's pixels change, the URL follows, a deep link reproduces
the picture, bad files give a message and other sessions carry on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from playwright.sync_api import Page, expect

from dashapp.views.plot import POS_INF_CODE

pytestmark = pytest.mark.browser

TIMEOUT = 30_000
ARTIFACTS = Path(os.environ.get("DASHAPP_TEST_ARTIFACTS", "/tmp/dashapp-test-artifacts"))
ARTIFACTS.mkdir(parents=True, exist_ok=True)


def plot_png(page: Page) -> bytes:
    """Pixels of the plot (image, axes and colour bar), without the toolbar."""
    return page.locator(".dashapp-plot canvas").first.screenshot()


def wait_for_picture(page: Page, not_equal: bytes | None = None, timeout: float = 30) -> bytes:
    """Wait until the plot shows a frame (different from ``not_equal``) and has settled."""
    page.locator(".dashapp-status-text").first.wait_for(timeout=TIMEOUT)
    deadline = time.monotonic() + timeout
    last = plot_png(page)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = plot_png(page)
        if now == last and (not_equal is None or now != not_equal):
            return now
        last = now
    page.screenshot(path=str(ARTIFACTS / f"failed-{int(time.time())}.png"))
    raise AssertionError("the picture did not change" if not_equal else "the plot never settled")


def url(page: Page) -> str:
    # page.url lags behind history.replaceState; ask the page itself
    return page.evaluate("window.location.href")


_VIEW_JS = """() => {
  for (const doc of window.Bokeh.documents) {
    const r = doc.get_model_by_name('slice-image');
    if (!r) continue;
    // the image holds values normalised to the colour limits (as 16-bit codes of them, see
    // dashapp.views.plot.encode16, or as floats): turn them back into data values
    const d = r.data_source.data, t = d.image[0], lo = d.lo[0], hi = d.hi[0], log = d.log[0];
    const a = log ? Math.log10(lo) : lo, b = log ? Math.log10(hi) : hi;
    const bits = t instanceof Uint16Array ? 16 : 32;
    const norm = (c) => bits == 32 ? c : c === 0 ? -Infinity :
      c < %(posinf)d ? d.qa[0] + d.qb[0] * c : c === %(posinf)d ? Infinity : NaN;
    const value = (c) => {
      const u = norm(c);
      return log ? Math.pow(10, a + u * (b - a)) : a + u * (b - a);
    };
    let sum = 0, n = 0;
    for (const u of t) { const v = value(u); if (Number.isFinite(v)) { sum += v; n += 1; } }
    // values at a 20 x 20 grid of fractional positions: the same places in any plot size
    const [h, w] = t.shape, samples = [];
    for (let i = 0; i < 20; i++)
      for (let j = 0; j < 20; j++)
        samples.push(value(t[Math.floor((i + 0.5) / 20 * h) * w + Math.floor((j + 0.5) / 20 * w)]));
    const m = doc.get_model_by_name(log ? 'slice-bar-log' : 'slice-bar-linear');
    const fig = doc.get_model_by_name('slice-plot');
    const ext = doc.get_model_by_name('slice-extent').data;
    return {scale: log ? 'log' : 'linear', shape: t.shape, sum, n, samples, bits,
            palette: m.palette.slice(0, 8), low: m.low, high: m.high,
            x: [fig.x_range.start, fig.x_range.end], y: [fig.y_range.start, fig.y_range.end],
            extent: [ext.x0[0], ext.x1[0], ext.y0[0], ext.y1[0]], fit: ext.fit[0]};
  }
  return null;
}""".replace("%(posinf)d", str(POS_INF_CODE))


def hover_text(page: Page, timeout: float = 10) -> str:
    """The text of the plot's hover tooltip (it lives in Bokeh's shadow DOM)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = page.evaluate(_TOOLTIP_JS)
        if text:
            return text
        time.sleep(0.2)
    raise AssertionError("no hover tooltip appeared")


_TOOLTIP_JS = """() => {
  const found = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.classList && el.classList.contains('bk-tooltip-content')) found.push(el.innerText);
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  return found.filter((t) => t && t.includes(':')).join('\\n');
}"""


def view_in_browser(page: Page) -> dict:
    """What the plot shows, read from BokehJS: data, colours and visible region."""
    return page.evaluate(_VIEW_JS)


def same_view(a: dict, b: dict) -> None:
    """Two browsers show the same view: same data, colours and region (fitted to each frame)."""
    for key in ("scale", "palette", "low", "high", "extent", "fit"):
        assert a[key] == b[key], key
    # Each plot resamples the mesh to its own pixels, and two pages' frames can differ by a few
    # pixels (Bokeh sizes the colour bar by its labels), so compare values at the same places of
    # the plane: inside the model's cells they are equal; only samples on a cell edge may blend.
    same = [
        x == pytest.approx(y, rel=1e-5) or (x != x and y != y)  # NaN: outside the model
        for x, y in zip(a["samples"], b["samples"], strict=True)
    ]
    assert sum(same) >= 0.9 * len(same), (a["shape"], b["shape"], sum(same))
    assert a["sum"] / a["n"] == pytest.approx(b["sum"] / b["n"], rel=0.05)
    if a["fit"]:  # the whole plane, each fitted to its own frame
        for v in (a, b):
            x0, x1, y0, y1 = v["extent"]
            assert v["x"][0] <= x0 + 1e-6
            assert v["x"][1] >= x1 - 1e-6
            assert v["y"][0] <= y0 + 1e-6
            assert v["y"][1] >= y1 - 1e-6
    else:
        assert a["x"] == pytest.approx(b["x"])
        assert a["y"] == pytest.approx(b["y"])


def query(page: Page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(url(page)).query).items()}


def wait_query(page: Page, **expected: str) -> dict[str, str]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        q = query(page)
        if all(q.get(k) == v for k, v in expected.items()):
            return q
        time.sleep(0.1)
    raise AssertionError(f"URL {url(page)} never had {expected}")


def status(page: Page) -> str:
    return page.locator(".dashapp-status-text").first.inner_text()


def test_demo_browse_slice_and_share(serve, page: Page, context):
    server = serve(None)  # no root: the built-in demo workspace
    page.goto(server.url)
    # Browse: the demo's folders, then the inversion file; its largest image dataset opens.
    # (The demo's first page shows inversion/model.h5: up to its folders first.)
    page.locator(".dashapp-entries").get_by_text("..", exact=True).click()
    page.get_by_text("inversion", exact=True).click()
    page.get_by_text("model.h5", exact=True).click()
    expect(page.locator(".dashapp-title").first).to_contain_text("/model_history", timeout=TIMEOUT)
    first = wait_for_picture(page)
    wait_query(page, file="inversion/model.h5", dataset="/model_history")

    # Pick another dataset in the file's tree.
    page.locator(".dashapp-tree").get_by_text("true_model", exact=True).click()
    # conductivities spanning decades get a log colour scale
    wait_query(page, dataset="/true_model", axis="0", index="24", scale="log")
    shown = wait_for_picture(page, not_equal=first)

    # Change the normal axis: a vertical section, the URL follows.
    page.get_by_role("button", name="x", exact=True).click()
    wait_query(page, axis="2", index="24")
    shown = wait_for_picture(page, not_equal=shown)
    assert "x = " in status(page)

    # Move the slider with the keyboard, as a person would.
    handle = page.locator(".noUi-handle").first
    handle.focus()
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    wait_query(page, index="44")
    shown = wait_for_picture(page, not_equal=shown)
    assert "index 44 of 112" in status(page)

    # Change the colour map.
    page.locator(".bk-PaletteSelect .bk-input").first.click()
    page.get_by_text("kbc", exact=True).first.click()
    wait_query(page, cmap="kbc")
    shown = wait_for_picture(page, not_equal=shown)

    # Share: the same URL in a new page (a colleague) shows exactly the same picture.
    link = url(page)
    other = context.new_page()
    other.goto(link)
    expect(other.locator(".dashapp-title").first).to_contain_text("/true_model", timeout=TIMEOUT)
    wait_for_picture(other)
    assert query(other) == query(page)
    mine, theirs = status(page).split(" · "), status(other).split(" · ")
    assert (mine[0], mine[-1]) == (theirs[0], theirs[-1])  # position and colour limits
    same_view(view_in_browser(other), view_in_browser(page))


@pytest.mark.parametrize("bits", [16, 32])
def test_deep_link_with_zoom_other_dims_and_manual_limits(serve, page: Page, bits):
    server = serve(None, env={"DASHAPP_FRAME_BITS": str(bits)})
    page.goto(
        server.url + "?file=inversion/model.h5&dataset=/model_history&axis=1&index=30&d0=5"
        "&cmap=bgy_r&clim=manual&vmin=0.001&vmax=0.05&scale=log&zoom=-800,800,-900,-100"
    )
    wait_for_picture(page)
    text = status(page)
    assert "z = " in text
    assert "index 30 of 48" in text
    assert "iteration: index 5 of " in text  # one numbering: the slider's (d0=5)
    assert "colour manual: 0.001 … 0.05" in text
    q = query(page)
    view = view_in_browser(page)
    assert view["bits"] == bits  # 16: the slice went as codes, decoded in the browser
    # ... and is drawn: the glyph's decoding transform gave the colour mapper real values
    import io

    from PIL import Image

    shot = Image.open(io.BytesIO(page.locator(".dashapp-plot").first.screenshot()))
    w, h = shot.size  # a patch of the model around where the hover goes below
    patch = shot.convert("RGB").crop((int(0.35 * w), int(0.45 * h), int(0.55 * w), int(0.65 * h)))
    assert len(patch.getcolors(maxcolors=1 << 20)) > 10
    assert not view["fit"]
    assert view["x"] == pytest.approx([-800, 800])
    assert view["y"] == pytest.approx([-900, -100])
    assert view["scale"] == "log"
    assert (view["low"], view["high"]) == (0.001, 0.05)
    assert q["zoom"] == "-800,800,-900,-100"
    assert (q["d0"], q["cmap"], q["scale"]) == ("5", "bgy_r", "log")
    # the iteration slider shows the linked iteration
    expect(page.locator(".dashapp-dim-0 .bk-input").first).to_have_value("5")
    # The hover reads data values (the browser holds them normalised to the colour limits).
    box = page.locator(".dashapp-plot").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.55)
    readout = hover_text(page)
    pairs = (line.split(":", 1) for line in readout.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in pairs}
    x, y = float(fields["x (m)"]), float(fields["y (m)"])
    value = float(fields["recovered conductivity (S/m)"])
    # the model's value in the cell under the mouse (or a neighbour: a screen pixel can
    # straddle a cell edge), read from the file
    from dashapp.data import describe, open_file
    from dashapp.demo.workspace import default_demo_dir

    path = default_demo_dir() / "inversion" / "model.h5"
    info = describe(path, "/model_history")
    with open_file(path) as f:
        plane = f["model_history"][5, 30]  # iteration index 5, z index 30: (y, x)
    i = np.searchsorted(np.sort(info.axes[2].edges()), y) - 1
    j = np.searchsorted(np.sort(info.axes[3].edges()), x) - 1
    near = plane[max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
    assert np.isclose(near, value, rtol=1e-3).any(), (readout, near)


def test_bad_files_get_messages_and_other_sessions_carry_on(serve, page: Page, context, corpus):
    server = serve(corpus)
    page.goto(server.url + "?file=code/hdf4/NXtest.hdf&dataset=/entry")
    expect(page.locator(".dashapp-error").first).to_contain_text("HDF4", timeout=TIMEOUT)

    page.goto(server.url + "?file=Soleil/hdf5/file_1.nxs")
    expect(page.locator(".dashapp-message").first).to_contain_text(
        "empty (0 bytes)", timeout=TIMEOUT
    )
    page.goto(server.url + "?file=../../etc/passwd&dataset=/x")
    expect(page.locator(".dashapp-error").first).to_contain_text("climbs out", timeout=TIMEOUT)

    # A string dataset: a sentence, not a traceback.
    page.goto(server.url + "?file=code/hdf5/NXtest.h5&dataset=/entry/ch_data")
    expect(page.locator(".dashapp-error").first).to_contain_text("holds text", timeout=TIMEOUT)

    # Meanwhile another session views a real detector image.
    other = context.new_page()
    other.goto(
        server.url + "?file=code/hdf5/sans2009n012333.hdf&dataset=/entry1/SANS/detector/counts"
    )
    wait_for_picture(other)
    assert "read 128 × 128 cells" in status(other)
    assert server.alive()


def test_browsing_a_real_nexus_file(serve, page: Page, corpus):
    server = serve(corpus)
    page.goto(server.url)
    page.get_by_text("IPNS", exact=True).click()
    page.get_by_text("LRMECS", exact=True).click()
    page.get_by_text("hdf5", exact=True).click()
    page.get_by_text("lrcs3701.nx5", exact=True).click()
    expect(page.locator(".dashapp-title").first).to_contain_text(
        "/Histogram1/data/data", timeout=TIMEOUT
    )
    wait_for_picture(page)
    expect(page.locator(".dashapp-title").first).to_contain_text("148 × 750 · int32")
    assert "read 148 × 750 cells" in status(page)
