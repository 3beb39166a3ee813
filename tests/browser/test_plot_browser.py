"""The slice plot as a person sees it in Chromium (issue 21, items 7 and 12).

A long title that wraps must not push the plot under the status line; NaN cells are drawn in a
colour of their own and read "NaN"; a mask (bool) gets two colours and a False/True legend;
NeXus angle axes fill the frame and a 1:1 button gives equal aspect. Real files, a real
``panel serve`` and Debian's Chromium.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.browser.test_slicer_browser import (
    TIMEOUT,
    hover_text,
    url,
    view_in_browser,
    wait_for_picture,
)

pytestmark = pytest.mark.browser

#: The class of the pressed button of a button group.
ACTIVE = re.compile(r"\bbk-active\b")

SCAN = (
    "beamtime_2026_december/sample_holder_position_07/scan_000123_temperature_ramp_300K_to_10K.h5"
)
LONG = (
    "detector_bank_one_corrected_for_flat_field_and_dead_time_and_normalised_to_monitor_"
    "counts_of_the_incident_beam"
)


def write_files(root: Path) -> None:
    """A scan with a long path and dataset name (and dead detector modules: NaN), a mask and
    a NeXus powder pattern on two angle axes."""
    scan = root / SCAN
    scan.parent.mkdir(parents=True)
    yy, xx = np.mgrid[0:64, 0:96]
    with h5py.File(scan, "w") as f:
        f["short"] = (xx + yy).astype("f4")
        frame = (xx * yy).astype("f4")
        frame[20:40, 30:60] = np.nan  # dead modules
        f[LONG] = frame
    with h5py.File(root / "mask.h5", "w") as f:
        f["mask"] = (xx - 48) ** 2 + (yy - 32) ** 2 < 20**2
    with h5py.File(root / "powder.nxs", "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs.update({"NX_class": "NXdata", "signal": "intensity", "axes": ["chi", "tth"]})
        chi, tth = np.linspace(-5, 5, 40), np.linspace(10, 130, 90)
        data["intensity"] = np.exp(-((tth[None, :] - 60) ** 2) / 50) + 0 * chi[:, None] + 0.1
        data["chi"], data["tth"] = chi, tth
        data["chi"].attrs["units"] = data["tth"].attrs["units"] = "deg"


def box(page: Page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


@pytest.mark.parametrize("width", [1400, 900])
def test_a_wrapping_title_does_not_put_the_plot_under_the_status_line(
    serve, page: Page, tmp_path, width
):
    write_files(tmp_path / "root")
    server = serve(tmp_path / "root")
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{server.url}?file={SCAN}&dataset=/short")
    wait_for_picture(page)
    if width < 1200:  # a narrow window opens with the file browser and controls folded away
        page.locator("#sidebar-toggle").click()
        page.get_by_role("button", name="Show controls").click()
        expect(page.locator(".dashapp-controls").first).to_be_visible(timeout=TIMEOUT)
    # Open the dataset with the long name from the file's tree: the title wraps to more lines.
    page.locator(".dashapp-tree").get_by_text(LONG[:30], exact=False).first.click()
    expect(page.locator(".dashapp-title").first).to_contain_text(LONG, timeout=TIMEOUT)
    wait_for_picture(page)
    time.sleep(1)
    title, canvas = box(page, ".dashapp-title"), box(page, ".dashapp-plot canvas")
    status, controls = box(page, ".dashapp-status"), box(page, ".dashapp-controls")
    page.screenshot(path=str(tmp_path / f"title-{width}.png"))
    assert title["height"] > 40  # it did wrap
    # nothing overlaps: title above the plot, the plot (and its x-axis label) above the status
    assert title["y"] + title["height"] <= canvas["y"] + 1
    assert canvas["y"] + canvas["height"] <= status["y"] + 1, (canvas, status)
    # and the title's long words wrap inside its column instead of running under the controls
    assert title["x"] + title["width"] <= controls["x"] + 1
    inner = page.locator(".dashapp-title").first.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
    assert inner


def _legend_labels(page: Page) -> list[str]:
    return page.evaluate("""() => {
      for (const doc of window.Bokeh.documents) {
        const fig = doc.get_model_by_name('slice-plot');
        if (!fig) continue;
        const legend = fig.right.find((m) => m.name === 'slice-legend');
        return legend ? legend.items.map((i) => i.label.value) : [];
      }
      return null;
    }""")


_TO_SCREEN_JS = """([fx, fy]) => {
  for (const doc of window.Bokeh.documents) {
    const fig = doc.get_model_by_name('slice-plot');
    if (!fig) continue;
    const ext = doc.get_model_by_name('slice-extent').data;
    const x = ext.x0[0] + fx * (ext.x1[0] - ext.x0[0]);
    const y = ext.y0[0] + fy * (ext.y1[0] - ext.y0[0]);
    for (const root of window.Bokeh.index) {
      const view = root.owner.find_one(fig);
      if (view) return [view.frame.x_scale.compute(x), view.frame.y_scale.compute(y)];
    }
  }
  return null;
}"""


def hover_at(page: Page, fx: float, fy: float) -> str:
    """Hover at a fraction ``(fx, fy)`` of the plane's extent (0, 0: bottom left); the value
    line of the readout."""
    sx, sy = page.evaluate(_TO_SCREEN_JS, [fx, fy])
    canvas = box(page, ".dashapp-plot canvas")
    page.mouse.move(canvas["x"] + sx, canvas["y"] + sy)
    text = hover_text(page)
    page.mouse.move(1, 1)  # away, so the next hover shows a fresh readout
    time.sleep(0.3)
    return text.strip().splitlines()[-1].split(":", 1)[1].strip()


@pytest.mark.parametrize("bits", [16, 32])
def test_nan_cells_have_a_colour_of_their_own_a_legend_and_read_nan(
    serve, page: Page, tmp_path, bits
):
    """NaN survives both ways of sending a slice: a 16-bit code of its own (decoded to NaN by
    the glyph's transform) and float32."""
    write_files(tmp_path / "root")
    server = serve(tmp_path / "root", env={"DASHAPP_FRAME_BITS": str(bits)})
    page.goto(f"{server.url}?file={SCAN}&dataset=/{LONG}")
    png = wait_for_picture(page)
    assert view_in_browser(page)["bits"] == bits
    # the dead modules (rows 20-40, columns 30-60 of 64 x 96) are mid grey, not the
    # near-white background (positions in the plane -> pixels of the plot, through BokehJS)
    sx, sy = page.evaluate(_TO_SCREEN_JS, [45 / 96, 30 / 64])
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    assert shot.getpixel((int(sx), int(sy))) == (128, 128, 128)
    sx, sy = page.evaluate(_TO_SCREEN_JS, [10 / 96, 10 / 64])
    assert shot.getpixel((int(sx), int(sy))) != (128, 128, 128)
    assert _legend_labels(page) == ["NaN"]  # beside the colour bar: what grey means
    assert hover_at(page, 45 / 96, 30 / 64) == "NaN"
    assert hover_at(page, 80.5 / 96, 50.5 / 64) == str(80 * 50)


def test_a_mask_gets_two_colours_and_a_false_true_legend(serve, page: Page, tmp_path):
    write_files(tmp_path / "root")
    server = serve(tmp_path / "root")
    page.goto(f"{server.url}?file=mask.h5&dataset=/mask")
    png = wait_for_picture(page)
    assert _legend_labels(page) == ["False", "True"]
    bars = page.evaluate("""() => {
      for (const doc of window.Bokeh.documents) {
        const fig = doc.get_model_by_name('slice-plot');
        if (fig) return fig.right.map((m) => m.name);
      }
    }""")
    assert bars == ["slice-legend"]  # no continuous colour bar
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    (ax, ay), (bx, by) = (page.evaluate(_TO_SCREEN_JS, p) for p in ([0.02, 0.02], [0.98, 0.98]))
    inside = shot.crop((int(ax), int(by), int(bx), int(ay)))
    counts = sorted((n for n, _ in inside.getcolors(maxcolors=1 << 20)), reverse=True)
    # two colours fill the image (a few blended pixels along the circle's edge at most)
    assert sum(counts[:2]) >= 0.97 * sum(counts), counts[:5]
    assert hover_at(page, 48.5 / 96, 32.5 / 64) == "True"
    assert hover_at(page, 2.5 / 96, 2.5 / 64) == "False"


def test_angle_axes_fill_the_frame_and_1_to_1_gives_equal_aspect(serve, page: Page, tmp_path):
    write_files(tmp_path / "root")
    server = serve(tmp_path / "root")
    page.goto(f"{server.url}?file=powder.nxs&dataset=/entry/data/intensity")
    wait_for_picture(page)
    view = view_in_browser(page)
    x0, x1, y0, y1 = view["extent"]
    # chi (deg) up, two-theta (deg) across: the plane fills the frame, not a thin strip
    assert view["x"] == pytest.approx([x0, x1])
    assert view["y"] == pytest.approx([y0, y1])
    buttons = page.locator(".dashapp-aspect")
    expect(buttons.get_by_role("button", name="fill")).to_have_class(ACTIVE)
    buttons.get_by_role("button", name="1:1").click()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "aspect=equal" not in url(page):
        time.sleep(0.1)
    assert "aspect=equal" in url(page)
    time.sleep(1)
    view = view_in_browser(page)
    frame = page.evaluate("""() => {
      for (const doc of window.Bokeh.documents) {
        const fig = doc.get_model_by_name('slice-plot');
        if (fig) return [fig.inner_width, fig.inner_height];
      }
    }""")
    per_x = (view["x"][1] - view["x"][0]) / frame[0]
    per_y = (view["y"][1] - view["y"][0]) / frame[1]
    assert per_x == pytest.approx(per_y, rel=0.02)  # one degree across = one degree up
    # the link keeps the choice
    page.goto(url(page))
    wait_for_picture(page)
    expect(buttons.get_by_role("button", name="1:1")).to_have_class(ACTIVE)
