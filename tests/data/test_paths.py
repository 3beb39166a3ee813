"""Root confinement, folder listing and HDF5 recognition, on real files in tmp_path."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from dashapp.data import NotFound, NotHDF5, OutsideRoot, check_hdf5_signature, list_folder, resolve
from dashapp.data.paths import has_hdf5_signature, relative_to_root


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "runs" / "deep").mkdir(parents=True)
    with h5py.File(r / "runs" / "inv.h5", "w") as f:
        f["model"] = np.zeros((2, 3, 4))
    (r / "notes.txt").write_text("not data")
    outside = tmp_path / "secret.h5"
    with h5py.File(outside, "w") as f:
        f["x"] = np.arange(3)
    os.symlink(outside, r / "escape.h5")
    os.symlink(r / "runs" / "inv.h5", r / "alias.h5")
    os.symlink(tmp_path, r / "up")
    return r


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        ("", ""),
        ("runs", "runs"),
        ("runs/inv.h5", "runs/inv.h5"),
        ("runs/./inv.h5", "runs/inv.h5"),
        ("alias.h5", "runs/inv.h5"),  # a symlink that stays inside is fine
    ],
)
def test_resolve_inside(root, rel, expected):
    assert relative_to_root(root, resolve(root, rel)) == expected


@pytest.mark.parametrize(
    "rel",
    ["..", "../secret.h5", "runs/../../secret.h5", "/etc/passwd", "escape.h5", "up/secret.h5",
     "~/x.h5", "a\x00b"],
)  # fmt: skip
def test_resolve_refuses_paths_outside_root(root, rel):
    with pytest.raises(OutsideRoot) as err:
        resolve(root, rel)
    assert "root" in str(err.value) or "NUL" in str(err.value)


def test_resolve_missing(root):
    with pytest.raises(NotFound, match="does not exist"):
        resolve(root, "runs/nope.h5")


def test_list_folder_lists_folders_then_hdf5_files(root):
    (root / "runs" / "unknown.dat").write_bytes(b"")
    with h5py.File(root / "runs" / "no_extension", "w") as f:
        f["a"] = 1
    (root / ".hidden.h5").write_bytes(b"")
    entries = list_folder(root, "runs")
    assert [(e.name, e.kind) for e in entries] == [
        ("deep", "folder"),
        ("inv.h5", "file"),
        ("no_extension", "file"),  # recognised by its signature
    ]
    assert entries[1].path == "runs/inv.h5"
    assert entries[1].size > 0


def test_list_root_marks_symlinks_leading_out(root):
    entries = {e.name: e for e in list_folder(root)}
    assert "notes.txt" not in entries
    assert entries["escape.h5"].problem == "link leading outside the root folder"
    assert entries["up"].problem == "link leading outside the root folder"
    assert entries["alias.h5"].problem == ""


def test_list_folder_outside_root_refused(root):
    with pytest.raises(OutsideRoot):
        list_folder(root, "..")


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\x0e\x03\x13\x01" + b"\x00" * 100, "HDF4"),
        (b"CDF\x01" + b"\x00" * 100, "netCDF-3"),
        (b"hello world, not data" * 10, "not an HDF5 file"),
    ],
    ids=["empty", "hdf4", "netcdf3", "text"],
)
def test_signature_check_names_what_the_file_is(tmp_path, content, message):
    path = _write(tmp_path / "f.h5", content)
    with pytest.raises(NotHDF5, match=message):
        check_hdf5_signature(path)


def test_signature_after_user_block(tmp_path):
    path = tmp_path / "ub.h5"
    with h5py.File(path, "w", userblock_size=512) as f:
        f["a"] = np.arange(4)
    assert has_hdf5_signature(path)
    check_hdf5_signature(path)
