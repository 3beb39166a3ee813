"""SliceState: loading, defaults, rules between settings, colour limits."""

from __future__ import annotations

import math

import pytest

from dashapp.data import SliceStats, ValueRange
from dashapp.state import SliceState, resolve_limits, suggest_scale

from ..fixtures import write_history, write_volume


@pytest.fixture
def root(tmp_path):
    write_volume(tmp_path / "vol.h5")
    write_history(tmp_path / "vol.h5")
    with open(tmp_path / "old.hdf", "wb") as fh:
        fh.write(b"\x0e\x03\x13\x01" + bytes(200))
    return tmp_path


def test_opening_a_dataset_sets_defaults(root):
    st = SliceState(root=str(root), file="vol.h5", dataset="/model")
    assert st.error == ""
    assert st.info.shape == (20, 30, 40)
    assert (st.axis, st.display, st.index) == (0, (1, 2), 10)
    assert st.position_label() == "z = 105 m (index 10 of 20)"
    assert st.indices == {}


def test_changing_axis_picks_the_plane_and_clamps_the_index(root):
    st = SliceState(root=str(root), file="vol.h5", dataset="/model")
    st.param.update(axis=2, index=35)
    assert st.display == (0, 1)
    assert st.index == 35
    st.axis = 0
    assert st.display == (1, 2)
    assert st.index == 19  # clamped to the 20 slices along z
    st.x_range, st.y_range = (0, 10), (0, 10)
    st.axis = 1
    assert (st.x_range, st.y_range) == (None, None)  # a new plane shows everything


def test_four_dims_get_a_slider_per_other_dim(root):
    st = SliceState(root=str(root), file="vol.h5", dataset="/history")
    assert (st.axis, st.display, st.indices) == (1, (2, 3), {0: 0})
    st.indices = {0: 3}
    st.display = (3, 2)  # transposed
    assert st.full_indices() == (3, st.index, 0, 0)
    req = st.request((300, 400))
    assert (req.display, req.indices, req.plot_size) == ((3, 2), (3, st.index, 0, 0), (300, 400))


def test_view_settings_given_at_creation_survive_loading(root):
    st = SliceState(
        root=str(root),
        file="vol.h5",
        dataset="/model",
        axis=2,
        index=7,
        cmap="kbc",
        reverse=True,
        clim="auto",
    )
    assert (st.axis, st.index, st.cmap, st.reverse, st.clim) == (2, 7, "kbc", True, "auto")


def test_apply_view_clamps_and_explains(root):
    st = SliceState(root=str(root), file="vol.h5", dataset="/history")
    notes = st.apply_view(axis=9, index=500, indices={0: 99, 2: 1})
    assert st.axis == 1
    assert st.index == 5
    assert st.indices == {0: 3}
    assert any("axis=9 does not exist" in n for n in notes)
    assert any("index=500 is outside 0-5; showing index 5" in n for n in notes)
    assert any("d0=99 is outside 0-3; showing index 3" in n for n in notes)
    assert any("d2=1: dim 2 has no slider" in n for n in notes)


def test_bad_files_and_datasets_set_a_clear_error(root):
    st = SliceState(root=str(root), file="old.hdf", dataset="/x")
    assert "HDF4" in st.error
    assert st.info is None
    st.param.update(file="vol.h5", dataset="/z")
    assert "1-D" in st.error
    st.param.update(file="../vol.h5", dataset="/model")
    assert "climbs out" in st.error
    st.param.update(file="vol.h5", dataset="/model")
    assert st.error == ""
    assert st.info is not None


def test_manual_limits_and_switching_back(root):
    st = SliceState(root=str(root), file="vol.h5", dataset="/model")
    st.apply_view(vmin=1, vmax=2)
    assert (st.clim, st.vmin, st.vmax) == ("manual", 1.0, 2.0)
    st.clim = "robust"
    assert (st.vmin, st.vmax) == (None, None)


STATS = SliceStats(min=-1.0, max=9.0, p2=0.0, p98=8.0, pos_min=0.5, size=100)


@pytest.mark.parametrize(
    ("clim", "scale", "kw", "limits"),
    [
        ("auto", "linear", {}, (-1.0, 9.0)),
        ("robust", "linear", {}, (0.0, 8.0)),
        ("robust", "log", {}, (0.5, 8.0)),
        ("auto", "log", {}, (0.5, 9.0)),
        ("manual", "linear", {"vmin": 2, "vmax": 3}, (2.0, 3.0)),
        ("manual", "linear", {"vmin": 3, "vmax": 2}, (2.0, 3.0)),
        (
            "global",
            "linear",
            {"global_range": ValueRange(-5, 50, 0, 40, 0.1, 10, 100)},
            (-5.0, 50.0),
        ),
        ("global", "log", {"global_range": ValueRange(-5, 50, 0, 40, 0.1, 10, 100)}, (0.1, 50.0)),
        ("global", "linear", {}, (-1.0, 9.0)),  # not estimated yet: per-slice meanwhile
    ],
)
def test_resolve_limits(clim, scale, kw, limits):
    assert resolve_limits(clim, scale, STATS, **kw) == limits


def test_degenerate_limits_are_widened():
    const = SliceStats(min=3.0, max=3.0, p2=3.0, p98=3.0, pos_min=3.0, size=10)
    lo, hi = resolve_limits("auto", "linear", const)
    assert lo < 3.0 < hi
    empty = SliceStats(size=10, n_nan=10)
    assert resolve_limits("auto", "linear", empty) == (0.0, 1.0)
    negative = SliceStats(min=-5.0, max=-1.0, p2=-5.0, p98=-1.0, size=10)
    lo, hi = resolve_limits("auto", "log", negative)
    assert 0 < lo < hi
    assert all(math.isfinite(v) for v in (lo, hi))


@pytest.mark.parametrize(
    ("lo", "hi", "scale"),
    [(1e-4, 1.0, "log"), (1.0, 99.0, "linear"), (0.0, 1e6, "linear"), (-1.0, 1e6, "linear")],
)
def test_suggest_scale(lo, hi, scale):
    assert suggest_scale(SliceStats(min=lo, max=hi, size=4)) == scale


def test_a_scale_given_explicitly_is_kept(root):
    st = SliceState(root=str(root), file="vol.h5", dataset="/model", scale="linear")
    assert not st.auto_scale
    st.dataset = "/history"
    assert st.auto_scale  # a new dataset gets a fresh guess
