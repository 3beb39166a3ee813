"""Deep links: the URL query reproduces the view, and nonsense in it is explained, not fatal."""

from __future__ import annotations

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
