"""Text from files shown as text, whatever sink it lands in.

Every string a file can carry (file and folder names, dataset, group and attribute names,
attribute values, ``units``, ``long_name``, NeXus ``title``/``signal``/``axes``) was written by
someone else, and may hold HTML, script, Markdown or TeX. Each kind of sink on the page needs its
own treatment, and all of them are here so the views use one helper per sink:

=======================  ===========================  =========================================
sink                     helper                       why
=======================  ===========================  =========================================
HTML pane, Bokeh ``Div``  :func:`escape`               markup as entities; ``$`` and ``\\`` too,
(status line, titles,                                  or Bokeh's ``Div`` (a slider's label) and
slider labels)                                         Panel's panes typeset ``$$...$$`` as TeX
Markdown (``Alert``)     :func:`as_markdown` in a     raw HTML runs in a Markdown pane,
                         :class:`TextAlert`           ``[a](...)``, ``*``, ``#`` are syntax,
                                                       and its output is typeset as TeX
Bokeh text properties    :func:`plain`                axis labels and colour bar titles with
(axis label, colour bar)                               ``$$`` are typeset as TeX
matplotlib (snapshots)   :func:`for_matplotlib`       ``$...$`` is mathtext, and bad mathtext
                                                       raises
=======================  ===========================  =========================================

Sinks that are text already need nothing: Bokeh tooltip *labels* (not their values, which are
templates: never put file text there), ``Select`` options, button labels, input titles,
Tabulator's default string formatter, panel-material-ui's ``Tree`` labels.
"""

from __future__ import annotations

import html
import logging
import re
import string
from typing import ClassVar

import panel as pn
import param
from bokeh.models import PlainText

__all__ = ["TextAlert", "as_markdown", "escape", "for_matplotlib", "plain"]

_MATH = {ord("$"): "&#36;", ord("\\"): "&#92;"}


def escape(text: object) -> str:
    """``text`` for an HTML sink: ``<>&"'`` as entities, and ``$`` and ``\\`` as entities too
    (TeX delimiters: Bokeh's ``Div`` and Panel's panes typeset ``$$x$$``, ``\\(x\\)``).

    >>> escape('<b id="x">$$a$$</b>')
    '&lt;b id=&quot;x&quot;&gt;&#36;&#36;a&#36;&#36;&lt;/b&gt;'
    """
    return html.escape(str(text), quote=True).translate(_MATH)


_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")


def as_markdown(text: object) -> str:
    """``text`` for a Markdown sink (an ``Alert``): every ASCII punctuation character
    backslash-escaped, so no HTML, link, image, emphasis or heading comes out of it (CommonMark
    lets any ASCII punctuation be escaped). Show it in a :class:`TextAlert`.

    ``<b>[a](x)`` becomes ``\\<b\\>\\[a\\]\\(x\\)``, which Markdown shows as ``<b>[a](x)``.
    """
    return _PUNCTUATION.sub(r"\\\1", str(text))


def plain(text: object) -> PlainText:
    """``text`` for a Bokeh text property (axis label, colour bar title): never typeset."""
    return PlainText(text=str(text))


def for_matplotlib(text: object) -> str:
    """``text`` for a matplotlib label or title: ``$`` escaped, so it is never mathtext."""
    return str(text).replace("$", r"\$")


def problem_text(exc: BaseException, doing: str = "") -> str:
    """The sentence an alert shows for ``exc``: the one place where errors meet the page.

    A :class:`~dashapp.errors.DashappError` carries a sentence written for the person: it is
    shown as it is. Anything else is a bug or a failure dashapp did not foresee: it is logged
    with its traceback (for whoever runs the server), and the person gets what failed and the
    error's own words. Put the result through :func:`as_markdown` (it quotes files).
    """
    from ..errors import DashappError

    if isinstance(exc, DashappError):
        return str(exc)
    logging.getLogger("dashapp").error("unexpected error %s", doing, exc_info=exc)
    what = f"{doing} failed" if doing else "Something failed"
    return f"{what}: {type(exc).__name__}: {exc} (the server log has the details)."


class TextAlert(pn.pane.Alert):
    """An ``Alert`` for messages that quote files (put them through :func:`as_markdown`).

    The browser typesets ``$$...$$`` and ``\\(...\\)`` in a Markdown pane's HTML as TeX
    unless the model's ``disable_math`` is set, and Panel 1.9's Markdown pane has the
    ``disable_math`` parameter but never sends it to the model (its ``_rename`` drops it).
    Here it is sent, and on by default.
    """

    disable_math = param.Boolean(default=True, doc="Never typeset TeX in the message.")

    _rename: ClassVar[dict[str, str | None]] = {"disable_math": "disable_math"}
