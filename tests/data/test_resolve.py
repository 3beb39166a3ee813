"""The root is the root: every HDF5 path is walked hop by hop and refused when a hop leaves it.

Each case writes real files with h5py in tmp_path: a served ``root/`` folder and, beside it, an
``outside.h5`` holding a string, 1-D values, an image and attributes that must never be shown.
The table lists each kind of hop (hard, soft, external, virtual source, external raw storage)
and whether it is refused or allowed, through :func:`describe` (what the slicer opens) and
:func:`read_tree` (what the browser lists).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

from dashapp.data import (
    BrokenLink,
    DashappError,
    NotFound,
    OutsideRoot,
    SliceRequest,
    Unsupported,
    describe,
    read_slice,
    read_tree,
)
from dashapp.data.series import series_members

SECRET = "TOP SECRET"


@pytest.fixture
def world(tmp_path, monkeypatch):
    """``tmp/root`` (served) and ``tmp/outside.h5``; the process works in ``tmp/work``."""
    root = tmp_path / "root"
    root.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # a server's working directory is not its root
    for var in ("HDF5_EXT_PREFIX", "HDF5_VDS_PREFIX", "HDF5_EXTFILE_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    with h5py.File(tmp_path / "outside.h5", "w") as f:
        f["secret"] = SECRET
        f["values"] = np.arange(10.0) + 1000
        f["image"] = np.full((4, 5), 1000.0)
        f["image"].attrs["password"] = SECRET
        f.attrs["owner"] = SECRET
    with h5py.File(root / "inside.h5", "w") as f:
        f.create_dataset("frames", data=np.arange(60.0).reshape(3, 4, 5), chunks=(1, 4, 5))
        f["note"] = "inside"
    return root


def _refusal(root, file, path) -> DashappError | None:
    try:
        info = describe(root / file, path, root=root)
    except DashappError as exc:
        return exc
    assert SECRET not in info.preview
    assert SECRET not in str(info.attrs)
    return None


def _write(path, **links) -> None:
    with h5py.File(path, "a") as f:
        for name, link in links.items():
            f[name] = link


# Each row: (name, how to build it, path opened, expected: None (allowed) or error kind).
CASES = []


def case(path: str, expected: type[Exception] | None, match: str = ""):
    def wrap(build):
        CASES.append(pytest.param(build, path, expected, match, id=build.__name__))
        return build

    return wrap


@case("/a", OutsideRoot, "/ext is an external link to .*outside.h5, which is outside the root")
def soft_link_through_external_link(root):
    _write(
        root / "a.h5",
        ext=h5py.ExternalLink(str(root.parent / "outside.h5"), "/"),
        a=h5py.SoftLink("/ext/values"),
    )


@case("/s", OutsideRoot, "/s is a soft link to /ext/secret; /ext is an external link")
def soft_link_through_external_link_to_a_string(root):
    _write(
        root / "a.h5",
        ext=h5py.ExternalLink(str(root.parent / "outside.h5"), "/"),
        s=h5py.SoftLink("/ext/secret"),
    )


@case("/i", OutsideRoot, "outside the root")
def soft_link_through_external_link_to_an_image_with_attributes(root):
    _write(
        root / "a.h5",
        ext=h5py.ExternalLink(str(root.parent / "outside.h5"), "/"),
        i=h5py.SoftLink("/ext/image"),
    )


@case("/g/x", OutsideRoot, "/g/x is a soft link to ext/values; /g/ext is an external link")
def relative_soft_link_through_external_link(root):
    with h5py.File(root / "a.h5", "w") as f:
        f.create_group("g")
        f["g/ext"] = h5py.ExternalLink(str(root.parent / "outside.h5"), "/")
        f["g/x"] = h5py.SoftLink("ext/values")  # relative to the group holding the link


@case("/g/x", BrokenLink, "/g/.. does not exist")
def soft_link_climbing_with_dotdot(root):
    with h5py.File(root / "a.h5", "w") as f:
        f.create_group("g")
        f["ext"] = h5py.ExternalLink(str(root.parent / "outside.h5"), "/")
        f["g/x"] = h5py.SoftLink("../ext/values")  # HDF5 has no "..": a name, and none is there


@case("/direct", OutsideRoot, "/direct is an external link to .*outside.h5, which is outside")
def external_link_straight_out(root):
    _write(root / "a.h5", direct=h5py.ExternalLink(str(root.parent / "outside.h5"), "/values"))


@case("/rel", OutsideRoot, "external link to ../outside.h5, which is outside the root")
def external_link_climbing_with_dotdot(root):
    _write(root / "a.h5", rel=h5py.ExternalLink("../outside.h5", "/values"))


@case("/rel", OutsideRoot, "outside the root")
def external_link_through_a_symlink_inside_the_root_pointing_out(root):
    os.symlink(root.parent / "outside.h5", root / "innocent.h5")
    _write(root / "a.h5", rel=h5py.ExternalLink("innocent.h5", "/values"))


@case("/rel", None)
def external_link_out_and_back_in_through_a_symlink(root):
    (root / "sub").mkdir()
    (root / "sub" / "inside.h5").symlink_to(root / "inside.h5")
    os.symlink(root / "sub", root.parent / "back")  # tmp/back -> tmp/root/sub
    _write(root / "a.h5", rel=h5py.ExternalLink("../back/inside.h5", "/frames"))


@case("/rel", None)
def external_link_inside_the_root(root):
    _write(root / "a.h5", rel=h5py.ExternalLink("inside.h5", "/frames"))


@case("/rel", None)
def external_link_with_a_moved_absolute_path_found_beside_the_file(root):
    # written elsewhere with an absolute path; copied here with its data file, as HDF5 finds it
    _write(root / "a.h5", rel=h5py.ExternalLink("/nonexistent/beamline/inside.h5", "/frames"))


@case("/rel", BrokenLink, "absent.h5, which does not exist")
def external_link_to_an_absent_file(root):
    _write(root / "a.h5", rel=h5py.ExternalLink("absent.h5", "/frames"))


@case("/rel/x", OutsideRoot, "/rel is an external link to inside.h5:/; /x is a soft link to /e")
def external_link_to_a_file_whose_link_leads_out(root):
    _write(root / "inside.h5", ext=h5py.ExternalLink(str(root.parent / "outside.h5"), "/"))
    _write(root / "inside.h5", x=h5py.SoftLink("/ext/values"))
    _write(root / "a.h5", rel=h5py.ExternalLink("inside.h5", "/"))


@case("/a", None)
def chain_of_soft_links(root):
    with h5py.File(root / "a.h5", "w") as f:
        f["data"] = np.ones((3, 4))
        f["c"] = h5py.SoftLink("/data")
        f["b"] = h5py.SoftLink("/c")
        f["a"] = h5py.SoftLink("/b")


@case("/a", OutsideRoot, "/a is a soft link to /b; /b is a soft link to /ext/values; /ext is")
def chain_of_soft_links_ending_through_an_external_link(root):
    _write(
        root / "a.h5",
        ext=h5py.ExternalLink(str(root.parent / "outside.h5"), "/"),
        b=h5py.SoftLink("/ext/values"),
        a=h5py.SoftLink("/b"),
    )


@case("/a", BrokenLink, "the links loop")
def soft_link_cycle(root):
    _write(root / "a.h5", a=h5py.SoftLink("/b"), b=h5py.SoftLink("/a"))


@case("/x", BrokenLink, "the links loop")
def soft_link_into_itself(root):
    _write(root / "a.h5", x=h5py.SoftLink("/x/y"))


@case("/self", BrokenLink, "the links loop")
def external_link_cycle_between_two_files(root):
    _write(root / "a.h5", self=h5py.ExternalLink("b.h5", "/other"))
    _write(root / "b.h5", other=h5py.ExternalLink("a.h5", "/self"))


@case("/gone", BrokenLink, "/nowhere does not exist")
def soft_link_to_nothing(root):
    _write(root / "a.h5", gone=h5py.SoftLink("/nowhere"))


def _vds(path, source_file, source_dset="values", shape=(10,), fill=-1.0) -> None:
    layout = h5py.VirtualLayout(shape=shape, dtype="f8")
    layout[...] = h5py.VirtualSource(source_file, source_dset, shape=shape)
    with h5py.File(path, "a") as f:
        f.create_virtual_dataset("vds", layout, fillvalue=fill)


@case("/vds", OutsideRoot, "virtual dataset reading its source .*outside.h5")
def virtual_source_outside_by_absolute_path(root):
    _vds(root / "a.h5", str(root.parent / "outside.h5"))


@case("/vds", OutsideRoot, "virtual dataset reading its source ../outside.h5")
def virtual_source_outside_by_dotdot(root):
    _vds(root / "a.h5", "../outside.h5")


@case("/vds", None)
def virtual_source_absent(root):
    _vds(root / "a.h5", "absent.h5")


@case("/vds", None)
def virtual_source_inside(root):
    _vds(root / "a.h5", "inside.h5", "frames", shape=(3, 4, 5))


@case("/vds", OutsideRoot, "from '.*work/outside.h5', which is outside the root")
def virtual_source_absent_here_but_in_the_working_directory(root):
    # HDF5 looks in the process's working directory last: it would read this file
    (root.parent / "work" / "outside.h5").write_bytes((root.parent / "outside.h5").read_bytes())
    _vds(root / "a.h5", "outside.h5")


@case("/vds", Unsupported, "reading /a of a.h5, and /a cannot be opened: /a is a soft link")
def virtual_source_in_the_same_file_through_a_soft_and_external_link(root):
    _write(
        root / "a.h5",
        ext=h5py.ExternalLink(str(root.parent / "outside.h5"), "/"),
        a=h5py.SoftLink("/ext/values"),
    )
    _vds(root / "a.h5", ".", "/a")


@case("/vds", Unsupported, "which dashapp does not follow inside a virtual dataset's source")
def virtual_source_file_inside_whose_dataset_is_an_external_link_out(root):
    _write(root / "inside.h5", out=h5py.ExternalLink(str(root.parent / "outside.h5"), "/values"))
    _vds(root / "a.h5", "inside.h5", "out")


@case("/vds", OutsideRoot, "outside the root")
def virtual_source_that_is_itself_virtual_reading_outside(root):
    _vds(root / "inner.h5", str(root.parent / "outside.h5"))
    _vds(root / "a.h5", "inner.h5", "vds")


def _external_storage(path, name) -> None:
    with h5py.File(path, "a") as f:
        f.create_dataset("raw", shape=(10,), dtype="f8", external=[(name, 0, 80)])


@case("/raw", OutsideRoot, "keeps its values in the raw file .*secret.bin")
def external_raw_storage_outside_by_absolute_path(root):
    (np.arange(10.0) + 1000).tofile(root.parent / "secret.bin")
    _external_storage(root / "a.h5", str(root.parent / "secret.bin"))


@case("/raw", OutsideRoot, "raw file raw.bin .*work/raw.bin'.*outside the root")
def external_raw_storage_relative_read_from_the_working_directory(root):
    # HDF5 reads relative raw file names from the working directory, not the file's folder
    (np.arange(10.0) + 1000).tofile(root.parent / "work" / "raw.bin")
    _external_storage(root / "a.h5", "raw.bin")


@case("/raw", None)
def external_raw_storage_inside(root):
    np.arange(10.0).tofile(root / "raw.bin")
    _external_storage(root / "a.h5", str(root / "raw.bin"))


@case("/ref", None)
def object_and_region_references_are_not_followed(root):
    with h5py.File(root / "a.h5", "w") as f:
        f["data"] = np.ones((4, 4))
        f.attrs["obj_ref"] = f["data"].ref
        f.attrs["region_ref"] = f["data"].regionref[1:2, 1:3]
        f.create_dataset("ref", data=[f["data"].ref], dtype=h5py.ref_dtype)


@pytest.mark.parametrize(("build", "path", "expected", "match"), CASES)
def test_each_hop(world, build, path, expected, match):
    build(world)
    error = _refusal(world, "a.h5", path)
    if expected is None:
        assert error is None, error
    else:
        assert isinstance(error, expected), repr(error)
        assert __import__("re").search(match, str(error)), str(error)
        assert SECRET not in str(error)
    # the browser's tree lists the same verdict, and nothing of the outside file
    tree = read_tree(world / "a.h5", root=world)
    node = tree.find(path) if path.count("/") == 1 else None
    shown = [f"{n.attrs} {n.problem} {n.shape}" for n in tree.walk()]
    assert SECRET not in " ".join(shown)
    if node is not None and expected is OutsideRoot:
        assert not node.viewable
        assert "outside the root" in node.problem


def test_soft_link_through_external_link_was_the_reported_leak(world):
    """The issue's case, end to end: no value, string or attribute of the outside file."""
    soft_link_through_external_link_to_a_string(world)
    _write(world / "a.h5", a=h5py.SoftLink("/ext/values"), i=h5py.SoftLink("/ext/image"))
    tree = read_tree(world / "a.h5", root=world)
    for name in ("/a", "/s", "/i"):
        node = tree.find(name)
        assert node.kind == "broken"
        assert node.attrs == {}
        assert node.shape is None
        with pytest.raises(OutsideRoot, match="outside the root"):
            describe(world / "a.h5", name, root=world)


def test_values_come_from_the_file_inside_the_root_whatever_hdf5_ext_prefix_says(
    world, monkeypatch
):
    """HDF5 would look in HDF5_EXT_PREFIX first; dashapp opens the file beside the link."""
    decoy = world.parent / "decoy"
    decoy.mkdir()
    with h5py.File(decoy / "inside.h5", "w") as f:
        f.create_dataset("frames", data=np.full((3, 4, 5), 1000.0))
    _write(world / "a.h5", rel=h5py.ExternalLink("inside.h5", "/frames"))
    monkeypatch.setenv("HDF5_EXT_PREFIX", str(decoy))
    info = describe(world / "a.h5", "/rel", root=world)
    image = read_slice(info, SliceRequest("/rel", (1, 2), (1, 0, 0)), root=world)
    np.testing.assert_array_equal(image.values, np.arange(20.0, 40.0).reshape(4, 5))


def test_virtual_source_found_through_hdf5_vds_prefix_outside_is_refused(world, monkeypatch):
    prefix = world.parent / "prefix"
    prefix.mkdir()
    (prefix / "src.h5").write_bytes((world.parent / "outside.h5").read_bytes())
    _vds(world / "a.h5", "src.h5")
    monkeypatch.setenv("HDF5_VDS_PREFIX", str(prefix))
    with h5py.File(world / "a.h5") as f:  # HDF5 would read it from there
        assert f["vds"][0] == 1000.0
    with pytest.raises(OutsideRoot, match=r"prefix/src\.h5"):
        describe(world / "a.h5", "/vds", root=world)


def test_slices_through_an_external_link_inside_the_root_read_the_linked_file(world):
    """The direct chunk reader reads the file the dataset is in, not the file linking to it."""
    with h5py.File(world / "a.h5", "w") as f:
        f.create_dataset("padding", data=np.full((64, 64), 7.0))  # other bytes at the offsets
        f["rel"] = h5py.ExternalLink("inside.h5", "/frames")
        f["soft"] = h5py.SoftLink("/rel")
    for path in ("/rel", "/soft"):
        info = describe(world / "a.h5", path, root=world)
        image = read_slice(info, SliceRequest(path, (1, 2), (2, 0, 0)), root=world)
        np.testing.assert_array_equal(image.values, np.arange(40.0, 60.0).reshape(4, 5))


def test_series_members_reached_through_links_out_are_left_out(world):
    with h5py.File(world / "a.h5", "w") as f:
        f.create_dataset("iter_1/model", data=np.ones((2, 2)))
        f["ext"] = h5py.ExternalLink(str(world.parent / "outside.h5"), "/")
        f["iter_2"] = h5py.SoftLink("/ext")  # /iter_2/model would be read from outside
        f["iter_3"] = h5py.ExternalLink(str(world.parent / "outside.h5"), "/")
    with h5py.File(world.parent / "outside.h5", "a") as f:
        f["model"] = np.ones((2, 2))
    members = series_members(world / "a.h5", "/iter_1/model", root=world)
    assert [m.path for m in members] == ["/iter_1/model"]


def _in_time(fn, seconds=10.0):
    result: list = []
    thread = threading.Thread(target=lambda: result.append(_catch(fn)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked on a FIFO"
    return result[0]


def _catch(fn):
    try:
        return fn()
    except Exception as exc:
        return exc


def test_links_and_virtual_sources_to_a_fifo_are_refused_without_blocking(world):
    os.mkfifo(world / "pipe.h5")
    _write(world / "a.h5", ext=h5py.ExternalLink("pipe.h5", "/x"))
    _vds(world / "a.h5", "pipe.h5")
    for path in ("/ext", "/vds"):
        error = _in_time(lambda p=path: describe(world / "a.h5", p, root=world))
        assert isinstance(error, Unsupported)
        assert "not a regular file" in str(error)


def test_a_missing_object_is_not_found(world):
    with pytest.raises(NotFound, match=r"/nothing does not exist in inside\.h5"):
        describe(world / "inside.h5", "/nothing", root=world)


def test_nexus_axes_named_by_attributes_are_walked_too(world):
    """An NXdata ``axes`` attribute names a dataset by path: a link out gives no coordinates."""
    with h5py.File(world / "a.h5", "w") as f:
        f["ext"] = h5py.ExternalLink(str(world.parent / "outside.h5"), "/")
        data = f.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "image"
        data.attrs["axes"] = ["y", "x"]
        data["image"] = np.zeros((10, 10))
        data["y"] = h5py.SoftLink("/ext/values")  # 10 values of the outside file
        data["x"] = h5py.ExternalLink(str(world.parent / "outside.h5"), "/values")
    with h5py.File(world.parent / "outside.h5", "a") as f:
        f["values"].attrs["long_name"] = SECRET
    info = describe(world / "a.h5", "/data/image", root=world)
    assert [a.coords for a in info.axes] == [None, None]
    assert SECRET not in " ".join(a.label for a in info.axes)
    assert any("'y' of dim 0 ignored" in n and "outside the root" in n for n in info.notes)


def test_a_dimension_scale_reading_outside_the_root_is_ignored(world):
    with h5py.File(world / "a.h5", "w") as f:
        layout = h5py.VirtualLayout(shape=(10,), dtype="f8")
        layout[...] = h5py.VirtualSource(str(world.parent / "outside.h5"), "values", shape=(10,))
        scale = f.create_virtual_dataset("x", layout)
        scale.make_scale("x")
        f["image"] = np.zeros((4, 10))
        f["image"].dims[1].attach_scale(scale)
    info = describe(world / "a.h5", "/image", root=world)
    assert info.axes[1].coords is None
    assert any("dimension scale /x of dim 1 ignored" in n for n in info.notes)


def test_external_raw_storage_found_through_hdf5_extfile_prefix_outside_is_refused(world):
    """HDF5 reads HDF5_EXTFILE_PREFIX once, when it starts: so does a server; a subprocess."""
    prefix = world.parent / "rawprefix"
    prefix.mkdir()
    (np.arange(10.0) + 1000).tofile(prefix / "raw.bin")
    np.arange(10.0).tofile(world / "raw.bin")
    _external_storage(world / "a.h5", "raw.bin")
    script = (
        "import sys, h5py\n"
        "from dashapp.data import describe, DashappError\n"
        "with h5py.File(sys.argv[1] + '/a.h5') as f:\n"
        "    print('hdf5 reads', f['raw'][0])\n"
        "try:\n"
        "    print('shown', describe(sys.argv[1] + '/a.h5', '/raw', root=sys.argv[1]).preview)\n"
        "except DashappError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    run = [sys.executable, "-c", script, str(world)]
    plain = subprocess.run(run, cwd=world, env=env, capture_output=True, text=True, check=True)
    assert "hdf5 reads 0.0" in plain.stdout  # root/raw.bin, from the working directory
    assert "shown [0. 1." in plain.stdout
    env["HDF5_EXTFILE_PREFIX"] = str(prefix)
    out = subprocess.run(run, cwd=world, env=env, capture_output=True, text=True, check=True)
    assert "hdf5 reads 1000.0" in out.stdout
    assert "OutsideRoot /raw keeps its values in the raw file raw.bin" in out.stdout
    assert "rawprefix/raw.bin" in out.stdout
