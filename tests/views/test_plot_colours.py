"""The slice plot's Bokeh models for NaN, true/false data and the plot's aspect (issue 21, item 12).

Real HDF5 files written with h5py; the assertions are on the models BokehJS draws from.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dashapp.data import SliceImage, SliceStats, describe
from dashapp.state import SliceState
from dashapp.state.query import parse_query, to_query
from dashapp.views.palettes import nan_colour, palette
from dashapp.views.plot import AspectToggle, SlicePlot, wants_equal_aspect


def _image(values: np.ndarray) -> SliceImage:
    finite = np.isfinite(values) if values.dtype.kind == "f" else np.ones(values.shape, bool)
    stats = SliceStats(
        min=float(values[finite].min()), max=float(values[finite].max()),
        n_nan=int((~finite).sum()), size=values.size,
    )  # fmt: skip
    return SliceImage(
        values=values, x=(0.0, float(values.shape[1])), y=(0.0, float(values.shape[0])),
        rows=(0, values.shape[0]), cols=(0, values.shape[1]), step=1, downsampled=False,
        stats=stats,
    )  # fmt: skip


def _legend(plot: SlicePlot) -> list[str]:
    return [item.label.value for item in plot.legend.items]


def _swatch(plot: SlicePlot, label: str) -> str:
    """The fill colour of a legend entry's swatch (a row of the swatches' glyph)."""
    item = plot.swatches[label]
    return item.renderers[0].data_source.data["fill"][item.index]


def _rgb(colour: str) -> np.ndarray:
    colour = colour.lstrip("#")
    return np.array([int(colour[i : i + 2], 16) for i in (0, 2, 4)])


@pytest.mark.parametrize("cmap", ["fire", "gray", "cividis", "viridis"])
def test_nan_is_drawn_in_a_colour_of_its_own_and_named_in_the_legend(tmp_path, cmap):
    path = tmp_path / "det.h5"
    values = np.linspace(0, 1, 12 * 16, dtype="f4").reshape(12, 16)
    values[3:6, 4:9] = np.nan
    with h5py.File(path, "w") as f:
        f["frame"] = values
    info = describe(path, "/frame")
    plot = SlicePlot.create()
    plot.set_labels(info, (0, 1))
    plot.draw(_image(values))
    plot.set_colour(cmap, False, "linear", (0.0, 1.0))
    nan = plot.image_mapper.nan_color
    # not transparent (the background showed through: near white), not a colour of the map
    assert nan == nan_colour(cmap)
    assert nan.startswith("#")
    far = min(np.linalg.norm(_rgb(nan) - _rgb(c)) for c in palette(cmap))
    assert far >= 60, (cmap, nan)
    assert np.linalg.norm(_rgb(nan) - _rgb(plot.figure.background_fill_color)) > 100
    assert _legend(plot) == ["NaN"]
    assert plot.legend in plot.figure.right
    assert _swatch(plot, "NaN") == nan
    # a slice without NaN has no legend (and no space taken by one)
    plot.draw(_image(np.nan_to_num(values)))
    plot.set_colour(cmap, False, "linear", (0.0, 1.0))
    assert _legend(plot) == []
    assert plot.figure.right == [plot.colorbars["linear"]]


def test_bool_data_get_two_colours_and_a_false_true_legend(tmp_path):
    path = tmp_path / "mask.h5"
    yy, xx = np.mgrid[0:20, 0:30]
    mask = (xx - 15) ** 2 + (yy - 10) ** 2 < 36
    with h5py.File(path, "w") as f:
        f["mask"] = mask
        f["float"] = mask.astype("f4")
    info = describe(path, "/mask")
    plot = SlicePlot.create()
    plot.set_labels(info, (0, 1))
    plot.draw(_image(mask))
    # whatever the colour-limit mode gave (robust limits of a mostly-False slice are 0 ... 0)
    plot.set_colour("fire", False, "linear", (-0.5, 0.5))
    assert len(plot.image_mapper.palette) == 2
    assert _legend(plot) == ["False", "True"]
    assert plot.colorbars["linear"] not in plot.figure.right  # no continuous colour bar
    assert plot.legend in plot.figure.right
    false, true = _swatch(plot, "False"), _swatch(plot, "True")
    assert [false, true] == list(plot.image_mapper.palette)
    data = plot.source.data
    assert data["bool"] == [True]
    assert (data["lo"][0], data["hi"][0]) == (0.0, 1.0)
    # reversing the colour map swaps the two colours
    plot.set_colour("fire", True, "linear", (-0.5, 0.5))
    assert list(plot.image_mapper.palette) == [true, false]
    # a float dataset afterwards is back to a colour bar
    plot.set_labels(describe(path, "/float"), (0, 1))
    plot.draw(_image(mask.astype("f4")))
    plot.set_colour("fire", False, "linear", (0.0, 1.0))
    assert len(plot.image_mapper.palette) == 256
    assert plot.figure.right == [plot.colorbars["linear"]]
    assert plot.source.data["bool"] == [False]


def _nxdata(path, units: tuple[str, str], coords=True) -> None:
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs.update({"NX_class": "NXdata", "signal": "signal", "axes": ["row", "col"]})
        data["signal"] = np.ones((40, 90), "f4")
        if coords:
            data["row"] = np.linspace(-5, 5, 40)
            data["col"] = np.linspace(10, 60, 90)
            data["row"].attrs["units"], data["col"].attrs["units"] = units


@pytest.mark.parametrize(
    ("units", "coords", "equal"),
    [
        (("deg", "deg"), True, False),  # NeXus angles: chi and two-theta
        (("degrees", "degrees"), True, False),
        (("deg", "eV"), True, False),
        (("mm", "mm"), True, True),
        (("m", "M"), True, True),
        (("", ""), True, False),  # coordinates of unknown units
        (("", ""), False, True),  # array indices: pixels of an image
    ],
)
def test_equal_aspect_by_default_only_for_pixels_or_a_shared_length(tmp_path, units, coords, equal):
    path = tmp_path / "nx.h5"
    _nxdata(path, units, coords)
    info = describe(path, "/entry/data/signal")
    x, y = info.axes[1].extent(), info.axes[0].extent()
    assert wants_equal_aspect(info, (0, 1), x, y) is equal
    # the user's choice wins either way
    assert wants_equal_aspect(info, (0, 1), x, y, "equal") is True
    assert wants_equal_aspect(info, (0, 1), x, y, "auto") is False


def test_the_aspect_buttons_show_and_set_the_states_aspect(tmp_path):
    _nxdata(tmp_path / "nx.h5", ("deg", "deg"))
    state = SliceState(root=str(tmp_path), file="nx.h5", dataset="/entry/data/signal")
    toggle = AspectToggle(state=state)
    buttons = toggle.__panel__()
    assert state.aspect is None
    assert buttons.value == "auto"  # chosen from the units: angles fill the frame
    buttons.value = "equal"  # a person presses "1:1"
    assert state.aspect == "equal"
    assert to_query(state)["aspect"] == "equal"
    _, view, problems = parse_query({"aspect": "equal"})
    assert view == {"aspect": "equal"}
    assert not problems
    state.aspect = "auto"  # a link or a notebook sets it
    assert buttons.value == "auto"
    assert parse_query({"aspect": "square"})[2]  # a bad value is named, not used
    # a new dataset chooses again from its axes
    state.dataset = "/entry/data/row"
    assert state.aspect is None


def test_no_picture_draws_nothing():
    """Before a dataset opens (and after :meth:`SlicePlot.clear`) the plot shows no cell: an
    empty plot, not one big cell in the NaN colour."""
    plot = SlicePlot.create()
    data = plot.source.data
    assert data["dw"] == [0.0]
    assert data["dh"] == [0.0]
    plot.clear()
    assert plot.source.data["dw"] == [0.0]
