"""The file tree: groups, datasets, attributes, links (good and broken) and virtual datasets."""

from __future__ import annotations

import contextlib

import h5py
import hdf5plugin
import numpy as np
import pytest

from dashapp.data import BrokenLink, OutsideRoot, read_tree
from dashapp.data import tree as tree_mod
from dashapp.data.files import open_file
from dashapp.data.tree import get_object


@pytest.fixture
def linked(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with h5py.File(root / "data.h5", "w") as f:
        f["frames"] = np.arange(60, dtype="u2").reshape(3, 4, 5)
    with h5py.File(tmp_path / "outside.h5", "w") as f:
        f["secret"] = np.ones((4, 4))
    layout = h5py.VirtualLayout(shape=(2, 4, 5), dtype="f8")
    layout[0] = h5py.VirtualSource("data.h5", "frames", shape=(3, 4, 5))[0]
    layout[1] = h5py.VirtualSource("gone.h5", "frames", shape=(3, 4, 5))[0]
    with h5py.File(root / "main.h5", "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "data"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "image"
        data.create_dataset(
            "image", data=np.zeros((10, 20), "f4"), chunks=(5, 5), compression="gzip", shuffle=True
        )
        data.create_dataset("title", data="run 42")
        data.create_dataset("records", data=np.zeros(3, dtype=[("x", "f4"), ("n", "i4")]))
        data.create_dataset(
            "blosc", data=np.zeros((8, 8), "f4"), chunks=(4, 4), **hdf5plugin.Blosc(cname="lz4")
        )
        f["soft_ok"] = h5py.SoftLink("/entry/data/image")
        f["soft_broken"] = h5py.SoftLink("/entry/nowhere")
        f["ext_ok"] = h5py.ExternalLink("data.h5", "/frames")
        f["ext_missing"] = h5py.ExternalLink("absent.h5", "/frames")
        f["ext_outside"] = h5py.ExternalLink(str(tmp_path / "outside.h5"), "/secret")
        f.create_virtual_dataset("vds", layout, fillvalue=-1)
        f.attrs["array_attr"] = np.arange(5)
        f.attrs["bytes_attr"] = np.bytes_(b"binary")
    return root


def test_tree_lists_everything_with_details(linked):
    tree = read_tree(linked / "main.h5", root=linked)
    image = tree.find("/entry/data/image")
    assert image.kind == "dataset"
    assert image.shape == (10, 20)
    assert image.dtype == "float32"
    assert image.chunks == (5, 5)
    assert image.compression == "gzip(4)+shuffle"
    assert image.viewable
    assert image.summary == "10 × 20, float32, chunks 5×5, gzip(4)+shuffle"
    assert tree.find("/entry").nx_class == "NXentry"
    assert tree.find("/entry/data").attrs["signal"] == "image"
    assert tree.attrs["array_attr"] == "[0 1 2 3 4]"
    assert tree.attrs["bytes_attr"] == "binary"
    title = tree.find("/entry/data/title")
    assert title.dtype == "string"
    assert not title.viewable
    assert tree.find("/entry/data/records").dtype == "compound{x, n}"
    assert "blosc" in tree.find("/entry/data/blosc").compression


def test_links_are_marked_and_broken_ones_are_not_fatal(linked):
    tree = read_tree(linked / "main.h5", root=linked)
    soft = tree.find("/soft_ok")
    assert (soft.kind, soft.link, soft.target, soft.viewable) == (
        "dataset",
        "soft",
        "/entry/data/image",
        True,
    )
    broken = tree.find("/soft_broken")
    assert broken.kind == "broken"
    assert "does not exist" in broken.problem
    ext = tree.find("/ext_ok")
    assert (ext.kind, ext.link, ext.shape) == ("dataset", "external", (3, 4, 5))
    missing = tree.find("/ext_missing")
    assert missing.kind == "broken"
    assert "absent.h5, which does not exist" in missing.problem
    outside = tree.find("/ext_outside")
    assert outside.kind == "broken"
    assert "outside the root" in outside.problem


def test_virtual_dataset_with_missing_source_is_marked(linked):
    vds = read_tree(linked / "main.h5", root=linked).find("/vds")
    assert vds.virtual
    assert vds.viewable
    assert "1 virtual source file(s) missing" in vds.problem
    assert "gone.h5" in vds.problem


def test_get_object_follows_links_only_inside_root(linked):
    with open_file(linked / "main.h5") as f, contextlib.ExitStack() as stack:
        assert get_object(f, "/ext_ok", linked, stack).shape == (3, 4, 5)
        assert get_object(f, "/soft_ok", linked).shape == (10, 20)
        with pytest.raises(OutsideRoot):
            get_object(f, "/ext_outside", linked, stack)
        with pytest.raises(BrokenLink, match=r"absent\.h5, which does not exist"):
            get_object(f, "/ext_missing", linked, stack)
        with pytest.raises(BrokenLink, match="soft link"):
            get_object(f, "/soft_broken", linked)


def test_huge_groups_are_cut_off_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(tree_mod, "MAX_CHILDREN", 10)
    path = tmp_path / "many.h5"
    with h5py.File(path, "w") as f:
        for i in range(25):
            f.create_group(f"iter_{i:04d}")
    tree = read_tree(path)
    assert len(tree.children) == 11
    assert tree.children[-1].kind == "more"
    assert "15 members not listed" in tree.children[-1].problem
