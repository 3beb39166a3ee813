"""The built-in demo workspace looks like an inversion: padded mesh, layered model, 4-D history."""

from __future__ import annotations

import numpy as np

from dashapp.data import describe, is_uniform, list_folder, read_tree
from dashapp.demo import ensure_demo_workspace


def test_demo_workspace_is_written_once(tmp_path):
    root = ensure_demo_workspace(tmp_path / "demo")
    stamp = (root / "inversion" / "model.h5").stat().st_mtime_ns
    assert ensure_demo_workspace(tmp_path / "demo") == root
    assert (root / "inversion" / "model.h5").stat().st_mtime_ns == stamp
    assert [e.name for e in list_folder(root)] == ["inversion", "survey"]


def test_demo_model_has_metre_scales_and_an_iteration_history(tmp_path):
    root = ensure_demo_workspace(tmp_path / "demo")
    model = root / "inversion" / "model.h5"
    info = describe(model, "/true_model")
    assert [a.units for a in info.axes] == ["m", "m", "m"]
    x = info.axes[2].coords
    assert not is_uniform(x)  # padding cells grow towards the edges
    assert np.allclose(np.diff(x)[40:60], 25.0)  # 25 m core cells
    history = describe(model, "/model_history")
    assert history.ndim == 4
    assert history.axes[0].name == "iteration"
    tree = read_tree(model)
    assert tree.find("/misfit").shape == (history.shape[0],)
    # a layered earth with bodies: many distinct conductivities, spanning decades
    from dashapp.data.files import open_file

    with open_file(model) as f:
        sigma = f["true_model"][()]
    assert sigma.max() / sigma.min() > 1000
    assert len(np.unique(sigma)) >= 5


def test_demo_survey_has_every_kind_of_value(tmp_path):
    root = ensure_demo_workspace(tmp_path / "demo")
    tree = read_tree(root / "survey" / "data.h5")
    kinds = {n.name: n.dtype for n in tree.walk() if n.kind == "dataset"}
    assert kinds["active"] == "bool"
    assert kinds["em_response"] == "complex64"
    assert kinds["station_count"] == "uint8"
