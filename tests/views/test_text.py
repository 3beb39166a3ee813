"""Text from files reaches the Bokeh models as text: escaped for HTML sinks, plain for Bokeh
text properties, backslash-escaped in Markdown alerts, never mathtext in snapshots.

(The browser test ``tests/browser/test_hostile_text.py`` checks the same file in Chromium.)
"""

from __future__ import annotations

import html
import re

import numpy as np
import panel as pn
import pytest
from bokeh.document import Document
from bokeh.models import Markup, PlainText

from dashapp import Slicer
from dashapp.data import SliceImage, SliceStats
from dashapp.views.text import TextAlert, as_markdown, escape, for_matplotlib, plain

from ..hostile import ATTR, COMPOUND, FILE_NAME, SCALED, SIGNAL, TAG, TEXT, hostile, write_hostile

#: The elements the views write themselves (with at most a class attribute).
_OURS = {"b", "i", "br", "span", "div", "code", "small", "hr", "p", "table", "tr", "td"}


def _foreign(text: str) -> list[str]:
    """Markup in ``text`` that the views did not write: other tags or attributes, a '<' left
    over, TeX delimiters (which the browser would typeset)."""
    bad = []
    for tag in re.finditer(r"<(/?)([a-zA-Z]+)([^<>]*)>", text):
        attrs = tag.group(3).strip()
        if tag.group(2) not in _OURS or (
            attrs and not re.fullmatch(r"class=['\"][\w -]*['\"]", attrs)
        ):
            bad.append(tag.group(0))
    rest = re.sub(r"<(/?)([a-zA-Z]+)([^<>]*)>", "", text)
    bad += re.findall(r"<|\$\$|\\\(|\\\[", rest)
    return bad


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("<b id=x>", "&lt;b id=x&gt;"),
        ("a\"b'c&d", "a&quot;b&#x27;c&amp;d"),
        ("$$x$$", "&#36;&#36;x&#36;&#36;"),
        (r"\(x\)", "&#92;(x&#92;)"),
    ],
)
def test_escape_for_html(text, expected):
    assert escape(text) == expected
    assert html.unescape(escape(text)) == text  # the browser shows the text itself


@pytest.mark.parametrize(
    "text",
    [
        "<img src=x onerror=alert(1)>",
        "[click](javascript:alert(1))",
        "![](http://elsewhere/x.png)",
        "# heading *em* _u_ `code` ~~s~~ | a | b |",
        "&amp; &lt; \\ $$x$$",
        ATTR,
    ],
)
def test_markdown_alert_shows_the_text_itself(text):
    alert = TextAlert(as_markdown(text))
    model = alert.get_root(Document())
    rendered = html.unescape(model.text)  # the HTML the browser gets
    assert model.disable_math  # no TeX typesetting of '$$' in the browser
    inner = re.fullmatch(r"<p>(.*)</p>\n", rendered, flags=re.S)
    assert inner is not None, rendered  # one paragraph: no heading, link, image, table
    assert "<" not in inner.group(1)  # no element at all
    assert html.unescape(inner.group(1)) == text  # what is shown is the text


def test_plain_text_for_bokeh_and_matplotlib():
    assert isinstance(plain("$$x$$"), PlainText)
    assert plain("$$x$$").text == "$$x$$"
    assert for_matplotlib("cost $5 $\\frac{") == "cost \\$5 \\$\\frac{"


@pytest.fixture
def hostile_file(tmp_path):
    return write_hostile(tmp_path)


def _html_sinks(root) -> list[tuple[str, str]]:
    """(model type, HTML the browser renders) of every model on the page that takes HTML:
    Panel's HTML and Markdown panes (their text travels escaped once more, and is decoded in
    the browser) and Bokeh ``Div`` s (a ``StaticText``: the label of an editable slider)."""
    from panel.models.markup import HTML

    out = []
    for model in root.select({"type": Markup}):
        text = html.unescape(model.text) if isinstance(model, HTML) else model.text
        out.append((type(model).__name__, text))
    return out


def test_slicer_models_hold_file_text_as_text(hostile_file):
    slicer = Slicer(hostile_file, dataset="/" + SCALED, root=hostile_file.parent, axis=1)
    root = pn.panel(slicer).get_root(Document())
    # slider labels (a Div each, HTML): the dimension scales' long_name, escaped
    labels = [t for _, t in _html_sinks(root) if "long_name" in t]
    assert any("Slice along" in t for t in labels)
    for _, text in _html_sinks(root):
        assert _foreign(text) == [], text
    # what those sinks show, decoded, is the names themselves
    shown = " ".join(html.unescape(re.sub(r"<[^>]+>", "", t)) for _, t in _html_sinks(root))
    assert hostile("long_name1") in shown  # the slice slider
    assert hostile("long_name0") in shown  # the other dims' sliders
    assert FILE_NAME in shown  # title
    # Bokeh text properties: PlainText, the text itself
    fig = slicer.plot.figure
    assert isinstance(fig.xaxis[0].axis_label, PlainText)
    assert fig.xaxis[0].axis_label.text == f"{hostile('long_name3')} ({hostile('unit3')})"
    assert isinstance(slicer.plot.colorbar.title, PlainText)
    assert slicer.plot.colorbar.title.text == f"{hostile('long_name')} ({hostile('units')})"
    # the hover readout: names only as labels (text); values are our fixed templates
    assert [value for _, value in slicer.plot.hover.tooltips] == [
        "$x{0,0.[00]}",
        "$y{0,0.[00]}",
        "@image{custom}",
    ]


@pytest.mark.parametrize(
    ("dataset", "quoted"),
    [(TEXT, ["holds text", ATTR[:150]]), (COMPOUND, ["compound records", hostile("field")])],
)
def test_error_alert_quotes_a_hostile_value_as_text(hostile_file, dataset, quoted):
    slicer = Slicer(hostile_file, dataset="/" + SCALED, root=hostile_file.parent)
    slicer.state.dataset = "/" + dataset
    alert = slicer._alert
    assert alert.visible
    model = alert.get_root(Document())
    rendered = html.unescape(model.text)
    assert model.disable_math
    for element in ("<script", "<img", "<svg", "<b id"):
        assert element not in rendered
    shown = html.unescape(re.sub(r"<[^>]+>", "", rendered))
    for text in quoted:  # (a value is quoted up to 200 characters)
        assert text in shown


def test_snapshot_of_a_file_with_dollars_in_its_names(hostile_file):
    """matplotlib reads '$...$' as mathtext: a label like '$\\frac{' failed the snapshot."""
    from dashapp.views.timeline import render_snapshot

    image = SliceImage(
        values=np.arange(16, dtype="f4").reshape(4, 4),
        x=(0.0, 1.0),
        y=(0.0, 1.0),
        rows=(0, 4),
        cols=(0, 4),
        step=1,
        downsampled=False,
        stats=SliceStats(),
    )
    png = render_snapshot(
        image,
        (0.0, 15.0),
        "fire",
        False,
        "linear",
        title=f"{FILE_NAME} : /{SIGNAL} $\\frac{{",
        xlabel="cost $5 $\\frac{",
        ylabel=hostile("y"),
        clabel="$$",
    )
    assert png.startswith(b"\x89PNG")


def test_page_header_escapes_its_title(tmp_path):
    """Panel writes a template's title into the page header unescaped (the tab's <title> is
    escaped by Bokeh): a capsule named with HTML is text in both."""
    from dashapp.views.app import SlicerApp

    app = SlicerApp(tmp_path)
    doc = app.template(title=f"dashapp · capsule {TAG}").server_doc(Document())
    assert doc.title == f"dashapp · capsule {TAG}"  # escaped by Bokeh's <title>
    header = doc.template_variables["app_title"]
    assert "<" not in header
    assert html.unescape(header) == f"dashapp · capsule {TAG}"
