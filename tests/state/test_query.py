"""Deep links: the URL query reproduces the view, and nonsense in it is explained, not fatal."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dashapp.state import SliceState, apply_query, parse_query, to_query

from ..fixtures import write_history, write_volume


@pytest.fixture
def root(tmp_path):
    (tmp_path / "runs").mkdir()
    write_volume(tmp_path / "runs" / "inv.h5", shape=(20, 30, 50))
    write_history(tmp_path / "runs" / "inv.h5")
    return tmp_path


def test_issue_example_link(root):
    st = SliceState(root=str(root))
    problems = apply_query(
        st, {"file": [b"runs/inv.h5"], "dataset": [b"/model"], "axis": [b"2"], "index": [b"40"],
             "cmap": [b"fire"]},
    )  # fmt: skip
    assert problems == []
    assert (st.file, st.dataset, st.axis, st.index, st.cmap) == (
        "runs/inv.h5",
        "/model",
        2,
        40,
        "fire",
    )


@pytest.mark.parametrize(
    "view",
    [
        {"axis": 1, "index": 12, "cmap": "kbc", "reverse": True},
        {"axis": 0, "index": 3, "clim": "manual", "vmin": -1.5, "vmax": 2.25, "scale": "log"},
        {"axis": 2, "index": 0, "agg": "max", "x_range": (10.0, 20.0), "y_range": (5.0, 9.5)},
        {"clim": "global", "cmap": "gray"},
    ],
)
def test_round_trip(root, view):
    st = SliceState(root=str(root), file="runs/inv.h5", dataset="/model", **view)
    query = to_query(st)
    again = SliceState(root=str(root))
    assert apply_query(again, query) == []
    for key in (
        "file",
        "dataset",
        "axis",
        "index",
        "display",
        "indices",
        "cmap",
        "reverse",
        "clim",
        "vmin",
        "vmax",
        "scale",
        "agg",
        "x_range",
        "y_range",
    ):
        assert getattr(again, key) == getattr(st, key), key


def test_round_trip_of_other_dims_and_transposed_planes(root):
    st = SliceState(
        root=str(root), file="runs/inv.h5", dataset="/history", axis=1, index=2, indices={0: 3}
    )
    st.display = (3, 2)
    query = to_query(st)
    assert query["d0"] == "3"
    assert query["dims"] == "3,2"
    again = SliceState(root=str(root))
    apply_query(again, query)
    assert (again.indices, again.display, again.index) == ({0: 3}, (3, 2), 2)


def test_nonsense_is_explained_and_ignored(root):
    opened, view, problems = parse_query(
        {"file": "runs/inv.h5", "axis": "two", "cmap": "jet", "clim": "wild", "zoom": "1,2,3",
         "vmin": "0"},
    )  # fmt: skip
    assert opened == {"file": "runs/inv.h5"}
    assert view == {}
    assert len(problems) == 5
    assert any("jet" in p for p in problems)


def test_link_to_a_file_outside_the_root_shows_an_error(root):
    st = SliceState(root=str(root))
    apply_query(st, {"file": "../../etc/passwd", "dataset": "/x"})
    assert "climbs out" in st.error
    assert st.info is None


# Every bad value of a link: a sentence naming the key and what was done, and the rest of the
# view still opens. (key=value pairs added to a good link to /model, 20 x 30 x 50)
BAD_VALUES = [
    # (extra query, words the problem must hold, expected state)
    ({"zoom": "nan,1,2,3"}, ["zoom='nan,1,2,3'", "showing the whole plane"], {"x_range": None}),
    ({"zoom": "inf,0,1,2"}, ["zoom=", "showing the whole plane"], {"x_range": None}),
    ({"zoom": "5,5,1,2"}, ["zoom=", "empty region", "whole plane"], {"x_range": None}),
    ({"vmin": "1", "vmax": "0"}, ["vmin=1 is above vmax=0", "swapped"],
     {"clim": "manual", "vmin": 0.0, "vmax": 1.0}),
    ({"vmin": "abc", "vmax": "1"}, ["vmin='abc'", "manual colour limits ignored"],
     {"clim": "robust", "vmin": None}),
    ({"vmin": "nan", "vmax": "1"}, ["vmin='nan'", "ignored"], {"vmin": None}),
    ({"vmax": "3"}, ["vmax without vmin", "ignored"], {"vmax": None}),
    ({"axis": "99"}, ["axis=99", "showing axis 0"], {"axis": 0}),
    ({"axis": "two"}, ["axis='two'", "ignored"], {"axis": 0}),
    ({"index": "-5"}, ["index=-5", "showing index 0"], {"index": 0}),
    ({"index": "9" * 30}, ["index=999", "showing index 29"], {"index": 29}),
    ({"dataset": "/history", "d0": "huge"}, ["d0='huge'", "ignored"], {"indices": {0: 0}}),
    ({"dataset": "/history", "d0": "1e400"}, ["d0='1e400'", "ignored"], {"indices": {0: 0}}),
    ({"dataset": "/history", "d0": "-1"}, ["d0=-1", "showing index 0"], {"indices": {0: 0}}),
    ({"d7": "1"}, ["d7=1", "no slider", "ignored"], {"indices": {}}),
    ({"cmap": "nonexistent"}, ["cmap='nonexistent'", "keeping fire"], {"cmap": "fire"}),
    ({"dims": "0,0"}, ["dims=0,0", "showing the default plane"], {"display": (0, 2)}),
    ({"dims": "1.5,2"}, ["dims='1.5,2'", "showing the default plane"], {"display": (0, 2)}),
    ({"dims": "7,8"}, ["dims=7,8", "showing the default plane"], {"display": (0, 2)}),
    ({"scale": "weird"}, ["scale='weird'", "ignored"], {"scale": "linear"}),
    ({"clim": "wild"}, ["clim='wild'", "ignored"], {"clim": "robust"}),
    ({"follow": "maybe"}, ["follow='maybe'", "ignored"], {"follow": False}),
    ({"dataset": ""}, ["dataset= is empty", "showing the file's default dataset /model"],
     {"dataset": "/model"}),
    ({"dataset": "/nope"}, ["dataset='/nope'", "does not exist",
                            "showing the file's default dataset /model"], {"dataset": "/model"}),
    ({"dataset": "/" + "x" * 5000}, ["dataset='/xxx", "5,001 characters", "default dataset"],
     {"dataset": "/model"}),
    ({"dataset": "/model\x00"}, ["dataset=", "NUL", "default dataset"], {"dataset": "/model"}),
    ({"foo": "1"}, ["'foo' is not a setting of the slicer; ignored"], {}),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "words", "expected"), BAD_VALUES)
def test_each_bad_value_is_named_and_the_rest_of_the_view_opens(root, extra, words, expected):
    st = SliceState(root=str(root))
    query = {"file": "runs/inv.h5", "dataset": "/model", "axis": "1", "cmap": "kbc", **extra}
    problems = apply_query(st, query)
    assert len(problems) == 1, problems
    for word in words:
        assert word in problems[0], (word, problems[0])
    assert st.info is not None  # the picture opens
    assert st.error == ""
    for key, value in expected.items():
        assert getattr(st, key) == value, key
    if "cmap" not in extra:
        assert st.cmap == "kbc"  # the rest of the link was applied
    if "axis" not in extra and st.ndim == 3:
        assert st.axis == 1


@pytest.mark.parametrize(
    ("file", "words"),
    [
        ("a" * 5000, ["file='aaa", "(5,000 characters)", "longer than any path", "no file"]),
        ("runs/" + "b" * 300 + ".h5", ["file=", "longer than 255 bytes", "no file"]),
        ("runs/inv.h5\x00.txt", ["file=", "NUL", "no file"]),
    ],
)
def test_a_file_value_no_path_can_have_is_refused_before_the_filesystem(root, file, words):
    st = SliceState(root=str(root))
    problems = apply_query(st, {"file": file, "dataset": "/model", "zoom": "nan,1,2,3"})
    assert len(problems) == 2, problems  # the file, and the zoom
    for word in words:
        assert word in problems[0]
    assert (st.file, st.info) == ("", None)


def test_a_link_to_a_dataset_that_is_no_image_says_why_as_a_click_does(root):
    with h5py.File(root / "runs" / "inv.h5", "a") as f:
        f["note"] = "a text dataset"
    st = SliceState(root=str(root))
    assert apply_query(st, {"file": "runs/inv.h5", "dataset": "/note"}) == []
    assert st.dataset == "/note"
    assert "holds text" in st.error


def test_a_link_without_a_dataset_opens_the_default_one_as_a_click_does(root):
    st = SliceState(root=str(root))
    assert apply_query(st, {"file": "runs/inv.h5", "axis": "2"}) == []
    assert (st.dataset, st.axis) == ("/model", 2)


def test_keys_of_the_server_are_not_reported_and_many_bad_keys_make_a_short_message(root):
    st = SliceState(root=str(root))
    query = {"file": "runs/inv.h5", "token": "s3cret", "bokeh-app-path": "/slicer"}
    assert apply_query(st, query) == []
    many = {"file": "runs/inv.h5", **{f"k{i}": "1" for i in range(10_000)}}
    problems = apply_query(st, many)
    assert len(problems) == 12
    assert problems[-1] == "and 9,989 more values that were ignored"
    assert st.dataset == "/model"


#: A value other than the default for every view setting (a new setting must be added here).
NOT_DEFAULT = {
    "axis": 1, "index": 4, "display": (3, 2), "indices": {0: 2}, "cmap": "kbc", "reverse": True,
    "clim": "manual", "vmin": 0.5, "vmax": 2.5, "scale": "log", "agg": "max", "part": "phase",
    "x_range": (1.0, 4.0), "y_range": (2.0, 5.0), "follow": True, "aspect": "auto",
}  # fmt: skip


def test_every_view_setting_goes_through_a_link_and_is_a_notebook_attribute(tmp_path):
    """VIEW_PARAMS is the one list: each setting round-trips through the URL (under the key it
    names) and reads and writes as ``slicer.<name>`` (``Slicer(...).follow`` once raised)."""
    from dashapp import Slicer
    from dashapp.state import VIEW_PARAMS
    from dashapp.state.query import QUERY_KEYS

    assert set(NOT_DEFAULT) == set(VIEW_PARAMS)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        values = np.arange(3 * 6 * 8 * 10).reshape(3, 6, 8, 10) * (1 + 1j)
        f.create_dataset("c", data=values.astype("c8"), chunks=(1, 3, 4, 5))
    st = SliceState(root=str(tmp_path), file="c.h5", dataset="/c", **NOT_DEFAULT)
    assert st.view() == NOT_DEFAULT
    query = to_query(st)
    for name, key in VIEW_PARAMS.items():
        assert key in QUERY_KEYS or key == "d<k>", name
        assert key in query or (key == "d<k>" and "d0" in query), name
    again = SliceState(root=str(tmp_path))
    assert apply_query(again, query) == []
    assert again.view() == NOT_DEFAULT

    slicer = Slicer(tmp_path / "c.h5", dataset="/c", **NOT_DEFAULT)
    for name, value in NOT_DEFAULT.items():
        assert getattr(slicer, name) == value, name
    slicer.follow = False
    assert slicer.state.follow is False
    slicer.index = 1
    assert slicer.state.index == 1
    slicer.close()
