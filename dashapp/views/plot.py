"""The slice plot: a lean Bokeh figure with one image glyph, a colour bar and a hover readout.

The figure is built once per view; a new slice only replaces the image's data source, and a new
colour setting only touches the colour mapper, so the browser redraws one canvas and nothing is
re-laid out. (A HoloViews DynamicMap rebuilds more per frame; measured on this machine it costs
~70 ms more per slider step, see docs/performance.md.) The functions that turn data and
settings into model properties are pure, and tested without a browser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import panel as pn
import param
from bokeh.models import (
    BoxZoomTool,
    ColorBar,
    ColumnDataSource,
    CustomJS,
    CustomJSHover,
    CustomJSTransform,
    HoverTool,
    Legend,
    LegendItem,
    LinearColorMapper,
    LogColorMapper,
    PanTool,
    Range1d,
    ResetTool,
    SaveTool,
    WheelZoomTool,
)
from bokeh.plotting import figure
from bokeh.transform import transform

from .. import settings
from ..data import DatasetInfo, SliceImage
from .palettes import bool_colours, nan_colour, palette
from .text import plain

__all__ = [
    "ASPECT_OPTIONS",
    "LENGTH_UNITS",
    "AspectToggle",
    "SlicePlot",
    "decoded",
    "encode16",
    "equal_aspect_ranges",
    "hover_tooltips",
    "image_data",
    "normalise",
]

#: Frame size assumed before the browser reports the real one.
DEFAULT_FRAME = (560, 760)


def normalise(values: np.ndarray, limits: tuple[float, float], scale: str = "linear") -> np.ndarray:
    """``values`` mapped so the colour limits land on 0 and 1 (in log space for ``log``).

    Values outside the limits go below 0 or above 1 (the palette's ends); NaN stays NaN; on
    the log scale values <= 0 become -inf (the low end, as a log colour mapper shows them).
    float64 stays float64 (wide integers keep their precision in the hover readout), anything
    else becomes float32.
    """
    dtype = np.float64 if values.dtype == np.float64 else np.float32
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        values, lo, hi = _on_scale(values, limits, scale, dtype)
        span = hi - lo if hi > lo else 1.0
        out = np.subtract(values, dtype(lo), dtype=dtype)
        out *= dtype(1.0 / span)
    return out


def _on_scale(
    values: np.ndarray, limits: tuple[float, float], scale: str, dtype: type
) -> tuple[np.ndarray, float, float]:
    """``values`` and ``limits`` in the space the colours are linear in: as they are, or on the
    log scale their ``log10`` (as ``dtype``; values <= 0 become -inf, NaN stays NaN)."""
    lo, hi = float(limits[0]), float(limits[1])
    if scale != "log":
        return values, lo, hi
    lo, hi = math.log10(lo) if lo > 0 else 0.0, math.log10(hi) if hi > 0 else 1.0
    logs = np.log10(values, dtype=dtype)
    logs[values <= 0] = -np.inf
    return logs, lo, hi


#: Bits per value of the pictures sent: 16 (:func:`encode16`, where it loses nothing a palette
#: shows) or 32 (float32 always); ``DASHAPP_FRAME_BITS``.
FRAME_BITS = settings.current().frame_bits

#: 16-bit frame codes: ``0`` is -inf, ``1 .. CODES`` the finite values, then +inf and NaN.
CODES = 65532
#: The codes of +inf and NaN.
POS_INF_CODE, NAN_CODE = CODES + 1, CODES + 2

#: A 16-bit frame is sent only if one code step is at most this fraction of the colour range
#: (16 codes per colour of a 256-colour palette): a slice whose values reach far outside its
#: colour limits (outliers under ``robust`` limits) goes as float32 instead.
MAX_STEP = 1 / 4096


def encode16(
    values: np.ndarray, limits: tuple[float, float], scale: str = "linear"
) -> tuple[np.ndarray, dict[str, float]] | None:
    """``values`` as 16-bit codes for the browser, or None where float32 must be sent.

    The codes span the slice's own finite range (on the log scale, of ``log10``), so hover
    still reads values outside the colour limits; ``1 + round((t - t0) / dt)`` for a value
    ``t``, with ``0``, ``CODES + 1`` and ``CODES + 2`` for -inf, +inf and NaN (and values <= 0
    on the log scale as -inf, as :func:`normalise`). Integer slices spanning at most
    :data:`CODES` values get one code per integer: exact. Returns ``(codes, numbers)``:
    ``t0`` and ``dt``, and ``qa``, ``qb`` such that ``qa + qb * code`` is the value
    :func:`normalise` gives. None for float64 values (kept exact for the hover readout) and
    when a code step would exceed :data:`MAX_STEP` of the colour range.
    """
    if values.dtype == np.float64 or values.dtype.kind not in "biuf" or values.ndim != 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t, lo, hi = _on_scale(values, limits, scale, np.float32)
        finite = np.isfinite(t) if t.dtype.kind == "f" else None
        pick = t[finite] if finite is not None and not finite.all() else t
        t0 = float(pick.min()) if pick.size else 0.0
        t1 = float(pick.max()) if pick.size else 0.0
        span = hi - lo if hi > lo else 1.0
        if t.dtype.kind in "biu" and t1 - t0 <= CODES:
            dt = 1.0  # one code per integer: exact
        else:
            dt = (t1 - t0) / (CODES - 1) if t1 > t0 else 0.0
            if dt / span > MAX_STEP:
                return None
        # (wide integers in float64: float32 would round 2e9 to a multiple of 128)
        work = np.float64 if t.dtype.kind in "iu" and t.dtype.itemsize >= 4 else np.float32
        scaled = np.subtract(t, work(t0), dtype=work)
        if dt:
            scaled *= work(1.0 / dt)
        scaled += work(1.5)  # 1 + rounding, by truncation below
        if finite is not None:
            special = {"nan": NAN_CODE + 0.5, "posinf": POS_INF_CODE + 0.5, "neginf": 0.5}
            np.nan_to_num(scaled, copy=False, **special)
        np.clip(scaled, 0, NAN_CODE, out=scaled)
        codes = scaled.astype(np.uint16)
    numbers = {"t0": t0, "dt": dt, "qa": (t0 - dt - lo) / span, "qb": dt / span}
    return codes, numbers


def decoded(data: dict[str, list]) -> np.ndarray:
    """The normalised values the browser colours, from :func:`image_data`'s ``data``: 16-bit
    codes decoded as the glyph's transform does (:data:`_DECODE_JS`), float frames as sent."""
    image = np.asarray(data["image"][0])
    if image.dtype != np.uint16:
        return image
    out = data["qa"][0] + data["qb"][0] * image.astype(np.float32)
    out[image == 0] = -np.inf
    out[image == POS_INF_CODE] = np.inf
    out[image == NAN_CODE] = np.nan
    return out


def image_data(
    image: SliceImage,
    limits: tuple[float, float] = (0.0, 1.0),
    scale: str = "linear",
    bits16: bool | None = None,
    boolean: bool = False,
) -> dict[str, list]:
    """The ``ColumnDataSource`` data that draws ``image`` at its physical extent, its values
    normalised to ``limits`` on ``scale``, with what the hover readout needs to show the data
    values.

    The values go as 16-bit codes (:func:`encode16`; half the bytes of float32, decoded to
    normalised values in the browser by the glyph's transform, :data:`_DECODE_JS`) where that
    loses nothing a palette can show, else (or with ``bits16=False``; the default is
    :data:`FRAME_BITS`) as float32 (float64 for float64 data) normalised by :func:`normalise`.
    ``boolean`` marks true/false data, which the hover readout shows as ``False``/``True``.
    """
    if bits16 is None:
        bits16 = FRAME_BITS == 16
    coded = encode16(image.values, limits, scale) if bits16 else None
    if coded is None:
        data, numbers = normalise(image.values, limits, scale), {}
    else:
        data, numbers = coded
    nan = float("nan")
    return {
        "image": [data],
        "x": [image.x[0]],
        "y": [image.y[0]],
        "dw": [image.x[1] - image.x[0]],
        "dh": [image.y[1] - image.y[0]],
        "lo": [float(limits[0])],
        "hi": [float(limits[1])],
        "log": [scale == "log"],
        "bool": [bool(boolean)],
        **{k: [numbers.get(k, nan)] for k in ("t0", "dt", "qa", "qb")},
    }


def equal_aspect_ranges(
    x: tuple[float, float], y: tuple[float, float], frame: tuple[int, int]
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Widen the shorter of two ranges so one data unit spans as many pixels across as up.

    ``frame`` is the plot area in pixels, ``(height, width)``.
    """
    h, w = max(frame[0], 1), max(frame[1], 1)
    dx, dy = x[1] - x[0], y[1] - y[0]
    per_px = max(dx / w, dy / h)
    cx, cy = (x[0] + x[1]) / 2, (y[0] + y[1]) / 2
    return (cx - per_px * w / 2, cx + per_px * w / 2), (cy - per_px * h / 2, cy + per_px * h / 2)


def covered_pixels(
    x: tuple[float, float],
    y: tuple[float, float],
    view_x: tuple[float, float],
    view_y: tuple[float, float],
    frame: tuple[int, int],
) -> tuple[int, int]:
    """Screen pixels ``(height, width)`` that the data extent ``x``/``y`` covers in a view.

    This is what a slice is read at: no more cells than the screen can show, so a 4096-wide
    slice in a 500-pixel-wide view is read from the pyramid level with 512 cells.
    """

    def along(lo_hi: tuple[float, float], view: tuple[float, float], px: int) -> int:
        lo, hi = sorted(lo_hi)
        v0, v1 = sorted(view)
        if v1 <= v0:
            return max(1, px)
        inside = max(0.0, min(hi, v1) - max(lo, v0))
        return max(1, math.ceil(px * inside / (v1 - v0)))

    return along(y, view_y, frame[0]), along(x, view_x, frame[1])


#: Units of length (lower case): two axes in the same one of these are drawn with equal aspect
#: by default. Angles (``deg``, ``rad``), energies, times and mixed units are not: one degree
#: across and one up are not the same thing, and a square plot of them hides nothing.
LENGTH_UNITS = frozenset(
    {"m", "km", "cm", "mm", "um", "µm", "μm", "micron", "microns", "micrometre", "micrometer",
     "nm", "pm", "a", "å", "ang", "angstrom", "angstroms", "metre", "metres", "meter", "meters",
     "pixel", "pixels", "px"}
)  # fmt: skip


#: The aspect buttons' labels and the ``SliceState.aspect`` each sets.
ASPECT_OPTIONS = (("1:1", "equal"), ("fill", "auto"))


def wants_equal_aspect(
    info: DatasetInfo,
    display: tuple[int, int],
    x: tuple[float, float],
    y: tuple[float, float],
    aspect: str | None = None,
) -> bool:
    """Whether one data unit spans as many pixels across as up.

    ``aspect`` is the user's choice (``"equal"`` or ``"auto"``, the frame filled); without one
    (None) equal aspect is chosen when both axes are array indices (an image's pixels) or share
    a unit of length (:data:`LENGTH_UNITS`: metres and metres, not degrees and degrees, nor
    degrees and eV), and their extents are within a factor 20 of each other.
    """
    if aspect in ("equal", "auto"):
        return aspect == "equal"
    row, col = info.axes[display[0]], info.axes[display[1]]
    if row.coords is None and col.coords is None:
        same = True  # both index axes: pixels of an image
    elif row.coords is not None and col.coords is not None:
        unit = row.units.strip().lower()
        same = unit == col.units.strip().lower() and unit in LENGTH_UNITS
    else:
        same = False
    dx, dy = abs(x[1] - x[0]), abs(y[1] - y[0])
    if not same or dx == 0 or dy == 0:
        return False
    return 1 / 20 <= dx / dy <= 20


def hover_tooltips(info: DatasetInfo, display: tuple[int, int]) -> list[tuple[str, str]]:
    """Hover readout: the two coordinates with their names and units, and the value.

    The names and units (from the file) are the labels, which Bokeh shows as text; the values
    are fixed templates (``$x``, ``@image``): file text must never go there.
    """
    row, col = info.axes[display[0]], info.axes[display[1]]

    def label(axis) -> str:
        return axis.name + (f" ({axis.units})" if axis.units else "")

    value = info.name or "value"
    if info.units:
        value += f" ({info.units})"
    return [
        (label(col), "$x{0,0.[00]}"),
        (label(row), "$y{0,0.[00]}"),
        (value, "@image{custom}"),
    ]


@dataclass
class SlicePlot:
    """The Bokeh models of one slice view.

    One image glyph whose colour mapper never changes: the data it is sent are the slice's
    values *normalised* to the colour limits (0 at the low limit, 1 at the high one; in log
    space for the log scale), so the browser maps each frame once. A mapper whose ``low`` and
    ``high`` changed would have BokehJS colour-map the image again for each of them: with the
    per-slice limits of ``robust`` and ``auto`` that was two extra passes per frame, ~20 ms
    each on a 512 x 512 image without a GPU. The colour bars have mappers of their own (one
    linear, one log) that carry the real limits; only the one in use is in the plot's layout
    (a hidden colour bar still takes space). The hover readout turns the normalised value back
    into the data value in the browser (:data:`_HOVER_JS`).

    NaN cells are drawn in a colour that is not in the colour map (:func:`~.palettes.nan_colour`,
    mid grey for most maps), named in a legend beside the colour bar while the slice has any,
    and read ``NaN`` in the hover. True/false data get two colours of the map and a
    ``False``/``True`` legend instead of a colour bar.
    """

    figure: object
    source: ColumnDataSource
    renderer: object
    #: The image glyph's mapper: palette over 0..1, never moved.
    image_mapper: LinearColorMapper
    linear: LinearColorMapper
    log: LogColorMapper
    colorbars: dict[str, ColorBar]
    hover: HoverTool
    #: Swatches beside the colour bar: ``False``/``True`` for true/false data, ``NaN``.
    legend: Legend
    #: The legend's entries by label, each with a square swatch of its colour.
    swatches: dict[str, LegendItem]
    #: Full extent of the plane and whether to fit the view to it (see :meth:`set_extent`).
    extent: ColumnDataSource
    #: The slice drawn (its raw values) and the limits and scale it was normalised with.
    image: SliceImage | None = None
    drawn: tuple | None = None
    shown_scale: str = "linear"
    #: ``(image, (limits, scale), data)`` made ahead by :meth:`prepare`, until sent.
    prepared: tuple | None = None
    #: The data kind of the dataset shown (``DatasetInfo.kind``): ``bool`` gets two colours.
    kind: str = ""

    @classmethod
    def create(cls) -> SlicePlot:
        """Build the figure: image glyph, colour bars, pan/zoom/reset/save tools and hover."""
        source = ColumnDataSource(image_data(_empty(), (0.0, 1.0), "linear"))
        colours = palette("fire")
        image_mapper = LinearColorMapper(
            palette=colours, low=0, high=1, nan_color=nan_colour("fire"), name="slice-image-mapper"
        )
        linear = LinearColorMapper(palette=colours, low=0, high=1, name="slice-bar-linear")
        log = LogColorMapper(palette=colours, low=1, high=10, name="slice-bar-log")
        value = CustomJSHover(args={"src": source}, code=_HOVER_JS)
        hover = HoverTool(
            tooltips=[("x", "$x"), ("y", "$y"), ("value", "@image{custom}")],
            formatters={"@image": value},
        )
        wheel = WheelZoomTool()
        fig = figure(
            x_range=Range1d(0, 1),
            y_range=Range1d(0, 1),
            tools=[
                PanTool(),
                wheel,
                BoxZoomTool(match_aspect=True),
                ResetTool(),
                SaveTool(),
                hover,
            ],
            active_scroll=wheel,
            sizing_mode="stretch_both",
            min_height=320,
            min_width=320,
            toolbar_location="above",
            output_backend="canvas",
            name="slice-plot",
            css_classes=["dashapp-plot"],
        )
        decode = CustomJSTransform(args={"src": source}, v_func=_DECODE_JS)
        renderer = fig.image(
            image=transform("image", decode),
            x="x",
            y="y",
            dw="dw",
            dh="dh",
            source=source,
            color_mapper=image_mapper,
            name="slice-image",
        )
        colorbars = {
            # Explicit styles: a colour bar added later does not get the page theme's defaults.
            scale: ColorBar(
                color_mapper=mapper,
                width=14,
                title_standoff=8,
                padding=8,
                name=f"slice-colorbar-{scale}",
                title_text_font_style="normal",
                title_text_font_size="13px",
                major_label_text_font_size="11px",
                major_label_text_color="#333333",
                title_text_color="#333333",
                background_fill_color="#ffffff",
                label_standoff=6,
            )
            for scale, mapper in (("linear", linear), ("log", log))
        }
        fig.add_layout(colorbars["linear"], "right")
        # One glyph for all swatches, a row each, at NaN coordinates: never drawn in the plot,
        # but not empty (BokehJS draws no legend swatch for a glyph without data). It joins
        # the page only when a legend is first shown: every message to the browser costs a
        # pass over the page's models.
        labels = ("False", "True", "NaN")
        nan = [float("nan")] * len(labels)
        swatch = fig.quad(
            left="left", right="right", top="top", bottom="bottom", fill_color="fill",
            line_color="#333333",
            source=ColumnDataSource({
                "left": nan, "right": nan, "top": nan, "bottom": nan,
                "fill": [colours[51], colours[204], nan_colour("fire")],
            }, name="slice-swatches"),
        )  # fmt: skip
        swatch.update(nonselection_glyph=None, muted_glyph=None)
        fig.renderers = [r for r in fig.renderers if r is not swatch]
        swatches = {
            label: LegendItem(label=label, renderers=[swatch], index=i)
            for i, label in enumerate(labels)
        }
        legend = Legend(
            items=[],
            name="slice-legend",
            location="top_left",
            padding=4,
            margin=0,
            spacing=2,
            label_text_font_size="11px",
            label_text_color="#333333",
            border_line_color=None,
            background_fill_color="#ffffff",
        )
        hover.renderers = [renderer]
        fig.grid.visible = False
        fig.background_fill_color = "#f4f4f4"
        extent = ColumnDataSource(
            {"x0": [0.0], "x1": [1.0], "y0": [0.0], "y1": [1.0], "equal": [False], "fit": [True]},
            name="slice-extent",
        )
        # Fit the ranges in the browser, where the frame's true size is known at every layout
        # change (the colour bar's tick labels alone move it by tens of pixels).
        fit = CustomJS(args={"fig": fig, "ext": extent}, code=_FIT_JS)
        # ... and lay the figure out again when its box changes size because a neighbour did
        # (BokehJS redraws on window resizes, not when a title above it wraps to more lines:
        # the canvas kept its old height and ran under the status line below it).
        follow_box = CustomJS(args={"fig": fig}, code=_FOLLOW_BOX_JS)
        for attr in ("inner_width", "inner_height"):
            fig.js_on_change(attr, fit)
            fig.js_on_change(attr, follow_box)
        extent.js_on_change("data", fit)
        return cls(
            fig, source, renderer, image_mapper, linear, log, colorbars, hover, legend, swatches,
            extent,
        )  # fmt: skip

    @property
    def scale(self) -> str:
        """The colour scale shown: ``linear`` or ``log``."""
        return self.shown_scale

    @property
    def colorbar(self) -> ColorBar:
        """The colour bar shown."""
        return self.colorbars[self.scale]

    @property
    def mapper(self) -> LinearColorMapper | LogColorMapper:
        """The mapper of the colour bar shown: palette and the real colour limits."""
        return self.log if self.scale == "log" else self.linear

    def draw(self, image: SliceImage | None, prepared: tuple | None = None) -> None:
        """Take a new slice; it reaches the browser at the next :meth:`set_colour` (with the
        data of :meth:`prepare` if made for this slice and those settings)."""
        self.image = image
        self.drawn = None
        self.prepared = prepared if prepared is not None and prepared[0] is image else None

    @property
    def boolean(self) -> bool:
        """True when the dataset shown holds true/false values."""
        return self.kind == "bool"

    def _key(self, limits: tuple[float, float], scale: str) -> tuple:
        # true/false data: False at 0, True at 1, whatever the colour-limit mode says (and
        # the kind is part of the key: the data of a float slice read before it was known
        # are not a true/false picture, even under the same limits)
        if self.boolean:
            return (0.0, 1.0), "linear", True
        return (float(limits[0]), float(limits[1])), scale, False

    def prepare(self, image: SliceImage, limits: tuple[float, float], scale: str) -> tuple:
        """:func:`image_data` for ``image`` under ``limits`` and ``scale``, ahead of
        :meth:`draw` (e.g. in the thread that read the slice)."""
        key = self._key(limits, scale)
        return image, key, image_data(image, *key[:2], boolean=key[2])

    def set_colour(self, cmap: str, reverse: bool, scale: str, limits: tuple[float, float]) -> None:
        """Apply a colour map, scale and limits; sends the image only if it was normalised
        with other limits (or is new): a palette change alone sends no data."""
        colours = palette(cmap, reverse)
        for m in (self.linear, self.log):
            if tuple(m.palette) != colours:
                m.palette = colours
        key = self._key(limits, scale)
        limits, scale = key[:2]
        shown = bool_colours(cmap, reverse) if self.boolean else colours
        if tuple(self.image_mapper.palette) != shown:
            self.image_mapper.palette = list(shown)
        nan = nan_colour(cmap)
        if self.image_mapper.nan_color != nan:
            self.image_mapper.nan_color = nan
        bar = self.log if scale == "log" else self.linear
        if (bar.low, bar.high) != limits:
            bar.update(low=limits[0], high=limits[1])
        self.shown_scale = scale
        self._set_side(shown, nan)
        if self.drawn != key:
            self.drawn = key
            ready = self.prepared
            if ready is not None and ready[1] == key:
                self.source.data = ready[2]
            else:
                data = image_data(self.image or _empty(), limits, scale, boolean=self.boolean)
                self.source.data = data
            self.prepared = None

    def _set_side(self, colours: tuple[str, ...], nan: str) -> None:
        """The colour bar and the legend beside the plot: only what changed is sent (a new
        item re-lays the figure out, so it happens when NaN appear or go, not per frame)."""
        stats = self.image.stats if self.image is not None else None
        labels = ["False", "True"] if self.boolean else []
        if stats is not None and stats.n_nan > 0:
            labels.append("NaN")
        fills = [colours[0], colours[-1], nan]
        source = self.swatches["NaN"].renderers[0].data_source
        if list(source.data["fill"]) != fills:
            source.patch({"fill": [(slice(0, 3), fills)]})
        items = [self.swatches[label] for label in labels]
        swatch = self.swatches["NaN"].renderers[0]
        if items and swatch not in self.figure.renderers:
            self.figure.renderers = [*self.figure.renderers, swatch]
        if list(self.legend.items) != items:
            self.legend.items = items
        right = [] if self.boolean else [self.colorbars[self.shown_scale]]
        if items:
            right.append(self.legend)
        if list(self.figure.right) != right:
            self.figure.right = right

    def clear(self) -> None:
        """Show nothing (e.g. while a new dataset opens)."""
        self.image = None
        self.drawn = self.prepared = None
        self.source.data = image_data(_empty(), (0.0, 1.0), "linear")

    def set_labels(self, info: DatasetInfo, display: tuple[int, int]) -> None:
        """Axis titles, colour bar title and hover readout for a dataset and plane.

        The names and units come from the file: the titles are :func:`~.text.plain` text (a
        string would be typeset as TeX between ``$$``), and the names are only the tooltip's
        labels (text), never its value templates.
        """
        row, col = info.axes[display[0]], info.axes[display[1]]
        self.kind = info.kind
        self.figure.xaxis.axis_label = plain(col.label)
        self.figure.yaxis.axis_label = plain(row.label)
        for bar in self.colorbars.values():
            bar.title = plain(info.title)
        self.hover.tooltips = hover_tooltips(info, display)

    def set_extent(
        self, x: tuple[float, float], y: tuple[float, float], equal: bool, fit: bool
    ) -> None:
        """The plane's full extent; with ``fit`` the browser shows all of it.

        With ``equal`` one data unit spans as many pixels across as up. The browser recomputes
        the fitted ranges whenever the plot's frame changes size.
        """
        self.extent.data = {
            "x0": [x[0]],
            "x1": [x[1]],
            "y0": [y[0]],
            "y1": [y[1]],
            "equal": [bool(equal)],
            "fit": [bool(fit)],
        }

    def set_ranges(self, x: tuple[float, float], y: tuple[float, float], reset: bool) -> None:
        """Show ``x``/``y``; with ``reset`` they also become what the reset tool returns to."""
        xr, yr = self.figure.x_range, self.figure.y_range
        if reset:
            xr.update(reset_start=x[0], reset_end=x[1])
            yr.update(reset_start=y[0], reset_end=y[1])
        xr.update(start=x[0], end=x[1])
        yr.update(start=y[0], end=y[1])


_HOVER_JS = """
const d = src.data;
if (value == null || Number.isNaN(value)) return 'NaN';
const lo = d.lo[0], hi = d.hi[0];
// true/false data: 0 and 1, or (downsampled by mean) the share of true cells under the pixel
const yesno = (v) => v <= 0 ? 'False' : v >= 1 ? 'True' : `${Math.round(v * 100)}% True`;
const boolean = d.bool != null && d.bool[0];
let v;
const dt = d.dt[0];
if (Number.isFinite(dt)) {  // a 16-bit frame: value is a code (see encode16)
  if (value >= NAN_CODE) return 'NaN';
  if (value == POS_INF_CODE) return 'inf';
  if (value == 0) return d.log[0] ? '≤ 0' : '-inf';
  const t = d.t0[0] + (value - 1) * dt;
  if (boolean) return yesno(t);
  if (dt === 1 && !d.log[0]) return String(t);  // one code per integer: exact
  v = d.log[0] ? Math.pow(10, t) : t;
  // no more digits than a code step resolves
  const q = d.log[0] ? v * Math.LN10 * dt : dt;
  if (q > 0) {
    const p = Math.pow(10, Math.floor(Math.log10(q)));
    v = Number((Math.round(v / p) * p).toPrecision(12));
  }
  return String(Number(v.toPrecision(5)));
}
if (d.log[0]) {
  if (value === -Infinity) return '≤ 0';
  const a = Math.log10(lo), b = Math.log10(hi);
  v = Math.pow(10, a + value * (b - a));
} else {
  v = lo + value * (hi - lo);
  if (boolean) return yesno(v);
}
return String(Number(v.toPrecision(5)));
""".replace("NAN_CODE", str(NAN_CODE)).replace("POS_INF_CODE", str(POS_INF_CODE))

#: The image glyph's transform: 16-bit codes (:func:`encode16`) to the normalised float32 values
#: the fixed 0..1 colour mapper expects; float frames pass through.
_DECODE_JS = """
const out = new Array(xs.length);
for (let k = 0; k < xs.length; k++) {
  const q = xs[k];
  if (!(q instanceof Uint16Array)) { out[k] = q; continue; }
  const a = src.data.qa[k], b = src.data.qb[k];
  const f = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) {
    const c = q[i];
    if (c === 0) f[i] = -Infinity;
    else if (c < POS_INF_CODE) f[i] = a + b * c;
    else f[i] = c === POS_INF_CODE ? Infinity : NaN;
  }
  f.shape = q.shape;
  f.dimension = q.dimension;
  f.dtype = "float32";
  out[k] = f;
}
return out;
""".replace("POS_INF_CODE", str(POS_INF_CODE))


#: Once the figure is on the page: watch its box and, when the canvas no longer has the box's
#: size, have BokehJS lay the figure out again (cheap: it runs only when the box changes).
_FOLLOW_BOX_JS = """
let view = null;
for (const root of Bokeh.index) {
  view = root.owner.find_one(fig);
  if (view != null) break;
}
if (view == null || view._dashapp_follows_box) return;
view._dashapp_follows_box = true;
const check = () => {
  const layout = view.layout;
  if (layout == null || view.el == null || !view.el.isConnected) return;
  const box = view.el.getBoundingClientRect();
  if (box.width < 1 || box.height < 1) return;
  if (Math.abs(layout.bbox.height - box.height) > 2 || Math.abs(layout.bbox.width - box.width) > 2)
    view.invalidate_layout();
};
new ResizeObserver(() => requestAnimationFrame(check)).observe(view.el);
"""

_FIT_JS = """
const d = ext.data;
const w = fig.inner_width, h = fig.inner_height;
if (!(w > 0) || !(h > 0)) return;
const x0 = d.x0[0], x1 = d.x1[0], y0 = d.y0[0], y1 = d.y1[0];
let X0 = x0, X1 = x1, Y0 = y0, Y1 = y1;
if (d.equal[0]) {
  const per = Math.max((x1 - x0) / w, (y1 - y0) / h);
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  X0 = cx - per * w / 2; X1 = cx + per * w / 2;
  Y0 = cy - per * h / 2; Y1 = cy + per * h / 2;
}
fig.x_range.setv({reset_start: X0, reset_end: X1});
fig.y_range.setv({reset_start: Y0, reset_end: Y1});
if (d.fit[0]) {
  fig.x_range.setv({start: X0, end: X1});
  fig.y_range.setv({start: Y0, end: Y1});
}
"""


def _empty() -> SliceImage:
    """No picture: one NaN cell of no size (a drawn NaN cell would show the NaN colour)."""
    from ..data import SliceStats

    return SliceImage(
        values=np.full((1, 1), np.nan, dtype=np.float32),
        x=(0.0, 0.0),
        y=(0.0, 0.0),
        rows=(0, 1),
        cols=(0, 1),
        step=1,
        downsampled=False,
        stats=SliceStats(),
    )


class AspectToggle(pn.viewable.Viewer):
    """The plot's aspect as two buttons, ``1:1`` (equal aspect) and ``fill``, on a
    :class:`~dashapp.state.SliceState`'s ``aspect``.

    The buttons show the aspect in use, including the one chosen from the axes' units while
    the user has chosen none (:func:`wants_equal_aspect`); pressing one makes it the choice.
    """

    state = param.ClassSelector(class_=object, doc="The SliceState whose aspect is shown.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._buttons = pn.widgets.RadioButtonGroup(
            name="Aspect",
            options=dict(ASPECT_OPTIONS),
            value="equal",
            variant="outline",
            sizing_mode="stretch_width",
            css_classes=["dashapp-aspect"],
        )
        self._buttons.param.watch(self._chosen, "value")
        self.state.param.watch(self._show, ["aspect", "info", "display"])
        self._show()

    @property
    def equal(self) -> bool:
        """True when the plot is drawn with equal aspect."""
        st = self.state
        if st.info is None:
            return st.aspect != "auto"
        display = (int(st.display[0]), int(st.display[1]))
        row, col = st.info.axes[display[0]], st.info.axes[display[1]]
        return wants_equal_aspect(st.info, display, col.extent(), row.extent(), st.aspect)

    def _show(self, *events: param.parameterized.Event) -> None:
        shown = "equal" if self.equal else "auto"
        if self._buttons.value != shown:
            self._buttons.value = shown

    def _chosen(self, event: param.parameterized.Event) -> None:
        if event.new != ("equal" if self.equal else "auto"):
            self.state.aspect = event.new

    def __panel__(self) -> pn.viewable.Viewable:
        return self._buttons
