"""Dataset metadata: physical axes from dimension scales, NeXus and netCDF; clear refusals."""

from __future__ import annotations

import h5netcdf
import h5py
import numpy as np
import pytest

from dashapp.data import Unsupported, check_viewable, describe, is_uniform


def test_dimension_scales_give_coordinates_units_and_labels(tmp_path):
    path = tmp_path / "scales.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("model", data=np.zeros((4, 5, 6), "f4"))
        d.attrs["units"] = "S/m"
        d.attrs["long_name"] = "conductivity"
        for dim, (name, n) in enumerate((("z", 4), ("y", 5), ("x", 6))):
            s = f.create_dataset(name, data=np.arange(n) * 25.0 + 12.5)
            s.attrs["units"] = "m"
            s.make_scale(name)
            d.dims[dim].attach_scale(s)
            d.dims[dim].label = name
    info = describe(path, "/model")
    assert info.title == "conductivity (S/m)"
    assert [a.label for a in info.axes] == ["z (m)", "y (m)", "x (m)"]
    assert [a.source for a in info.axes] == ["dimension scale"] * 3
    np.testing.assert_array_equal(info.axes[2].coords, np.arange(6) * 25.0 + 12.5)
    np.testing.assert_array_equal(info.axes[2].edges(), np.arange(7) * 25.0)


def test_nxdata_axes_with_indices_and_bin_edges(tmp_path):
    path = tmp_path / "nexus.nxs"
    with h5py.File(path, "w") as f:
        g = f.create_group("entry/data")
        g.attrs["NX_class"] = "NXdata"
        g.attrs["signal"] = "counts"
        g.attrs["axes"] = np.array([b"tof", b"."], dtype="S")
        g.attrs["tof_indices"] = 0
        g.create_dataset("counts", data=np.ones((3, 4), "i4"))
        tof = g.create_dataset("tof", data=np.array([0.0, 10.0, 20.0, 30.0]))  # 3 bins: edges
        tof.attrs["units"] = "microsecond"
    info = describe(path, "/entry/data/counts")
    assert info.axes[0].source == "NXdata"
    assert info.axes[0].units == "microsecond"
    np.testing.assert_array_equal(info.axes[0].coords, [5.0, 15.0, 25.0])
    assert info.axes[1].coords is None


def test_nexus_v1_axes_attribute_on_the_signal(tmp_path):
    path = tmp_path / "old.nxs"
    with h5py.File(path, "w") as f:
        g = f.create_group("entry/data")
        d = g.create_dataset("data", data=np.ones((2, 3)))
        d.attrs["signal"] = 1
        d.attrs["axes"] = "polar_angle:time_of_flight"
        g.create_dataset("polar_angle", data=[1.0, 2.0])
        g.create_dataset("time_of_flight", data=[0.1, 0.2, 0.4])
    info = describe(path, "/entry/data/data")
    assert [a.name for a in info.axes] == ["polar_angle", "time_of_flight"]
    assert not is_uniform(info.axes[1].coords)


def test_netcdf4_coordinate_variables(tmp_path):
    path = tmp_path / "model.nc"
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"depth": 3, "lat": 4, "band": 2}
        depth = f.create_variable("depth", ("depth",), float, data=[10.0, 20.0, 40.0])
        depth.attrs["units"] = "m"
        f.create_variable("lat", ("lat",), float, data=[1.0, 2.0, 3.0, 4.0])
        v = f.create_variable("temp", ("depth", "lat", "band"), "f4", data=np.zeros((3, 4, 2)))
        v.attrs["units"] = "K"
    info = describe(path, "/temp")
    assert [a.name for a in info.axes[:2]] == ["depth", "lat"]
    assert info.axes[0].units == "m"
    np.testing.assert_array_equal(info.axes[0].coords, [10.0, 20.0, 40.0])
    assert info.axes[2].coords is None  # a netCDF dimension without a coordinate variable
    assert info.axes[2].name == "band"


def test_bad_coordinates_are_ignored_with_a_note(tmp_path):
    path = tmp_path / "badscale.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("img", data=np.zeros((3, 4)))
        s = f.create_dataset("x", data=[0.0, 2.0, 1.0, 3.0])  # not monotonic
        s.make_scale("x")
        d.dims[1].attach_scale(s)
    info = describe(path, "/img")
    assert info.axes[1].coords is None
    assert any("not strictly monotonic" in n for n in info.notes)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.array([b"a", b"b"]), "holds text"),
        (np.zeros(3, dtype=[("a", "f4"), ("b", "i2")]), "compound records"),
        (np.void(b"\x00\x01\x02\x03"), "opaque"),
        (3.5, "single value .* Its value: 3.5"),
        (np.arange(10.0), "is 1-D \\(length 10\\)"),
        (np.zeros((0, 5, 5)), "empty \\(shape 0 × 5 × 5\\)"),
    ],
    ids=["strings", "compound", "opaque", "scalar", "1-D", "zero-length"],
)
def test_unviewable_datasets_say_why(tmp_path, data, message):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["d"] = data
    with pytest.raises(Unsupported, match=message):
        check_viewable(describe(path, "/d"))


@pytest.mark.parametrize(
    ("coords", "uniform"),
    [([0, 1, 2, 3], True), ([0, 1, 2, 4], False), ([3, 2, 1], True), ([5.0], True),
     ([0, 1e-9, 2e-9], True)],
)  # fmt: skip
def test_is_uniform(coords, uniform):
    assert is_uniform(np.asarray(coords, float)) is uniform
