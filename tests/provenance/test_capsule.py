"""PROV export read back by the prov package; capsules written in one place, opened in another,
restoring the recorded views; capsules that are damaged, foreign or from a newer dashapp."""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import h5py
import numpy as np
import prov
import pytest
from prov.model import (
    ProvActivity,
    ProvAgent,
    ProvAssociation,
    ProvAttribution,
    ProvDelegation,
    ProvDerivation,
    ProvEntity,
    ProvGeneration,
    ProvUsage,
)

from dashapp.data import HANDLES, describe
from dashapp.provenance import (
    CAPSULE_VERSION,
    CapsuleError,
    Record,
    RecordWarning,
    export_capsule,
    export_prov,
    open_capsule,
    to_prov,
)
from dashapp.state import SliceState, apply_query, to_query

from . import make_workspace, slice_values


def counts(doc) -> dict[str, int]:
    classes = {
        "entity": ProvEntity, "activity": ProvActivity, "agent": ProvAgent,
        "used": ProvUsage, "wasGeneratedBy": ProvGeneration, "wasDerivedFrom": ProvDerivation,
        "wasAttributedTo": ProvAttribution, "wasAssociatedWith": ProvAssociation,
        "actedOnBehalfOf": ProvDelegation,
    }  # fmt: skip
    return {name: len(list(doc.get_records(cls))) for name, cls in classes.items()}


@pytest.fixture
def workspace(tmp_path):
    return make_workspace(tmp_path / "machine_a")


# ----------------------------------------------------------------------------- PROV
def test_prov_export_reads_back(workspace, tmp_path):
    path = export_prov(workspace["record"], tmp_path / "out" / "prov.json")
    doc = prov.read(path, format="json")
    assert counts(doc) == {
        # environment plan, model.h5, mean.h5, 3 views, 1 snapshot, 1 note
        "entity": 8,
        # the computation, 4 cluster actions, 2 session events
        "activity": 7,
        "agent": 2,  # the user and the software
        "used": 1,
        "wasGeneratedBy": 1,
        "wasDerivedFrom": 5,  # views, snapshot and note from model.h5
        "wasAttributedTo": 5,
        "wasAssociatedWith": 14,  # each activity: the user, and the software under its plan
        "actedOnBehalfOf": 1,
    }
    raw = json.loads(path.read_text())
    assert raw["prefix"]["dashapp"] == "urn:dashapp:"
    files = {
        k: v for k, v in raw["entity"].items() if v.get("prov:type", {}).get("$") == "dashapp:File"
    }
    model = next(v for v in files.values() if v["dashapp:file"] == "run/model.h5")
    assert model["prov:location"] == str(workspace["model"])
    assert int(model["dashapp:size"]["$"]) == workspace["model"].stat().st_size
    assert len(model["dashapp:sha256"]) == 64
    plans = [v for v in raw["entity"].values() if v.get("prov:type", {}).get("$") == "prov:Plan"]
    assert f"h5py=={h5py.__version__}" in plans[0]["dashapp:lock"]
    (usage,) = raw["used"].values()
    assert raw["entity"][usage["prov:entity"]] is model
    (generation,) = raw["wasGeneratedBy"].values()
    assert raw["entity"][generation["prov:entity"]]["dashapp:file"] == "run/mean.h5"
    assert generation["prov:activity"] == usage["prov:activity"]
    # the PROV-JSON that prov writes reads back to the same document
    assert prov.read(io.StringIO(doc.serialize(format="json")), format="json") == doc


def test_prov_file_versions(tmp_path):
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("m", data=np.zeros((4, 5)), maxshape=(None, 5))
    record = Record(tmp_path / "ws")
    record.file_opened(path)
    with h5py.File(path, "a") as f:  # the simulation wrote another iteration
        f["m"].resize((8, 5))
        f["m"][4:] = 1
        f.flush()
    record.file_opened(path)
    record.flush(10)
    doc = to_prov(record.events())
    assert counts(doc)["entity"] == 2
    (revision,) = doc.get_records(ProvDerivation)
    assert "prov:Revision" in str(revision.get_attribute("prov:type"))


# ----------------------------------------------------------------------------- capsules
def test_capsule_opens_elsewhere_and_restores_the_views(workspace, tmp_path):
    capsule_path = export_capsule(
        workspace["record"], tmp_path / "machine_a" / "study.capsule.zip", pack_inputs=True
    )
    with zipfile.ZipFile(capsule_path) as zf:
        names = set(zf.namelist())
    assert {
        "manifest.json", "record.jsonl", "environment.txt", "environment.json", "prov.json",
        "inputs/run/model.h5",
    } <= names  # fmt: skip
    assert "inputs/run/mean.h5" not in names  # an output, not an input: it can be recomputed
    assert sum(n.startswith("attachments/") for n in names) == 2

    # another user, another machine: the capsule is all there is
    (tmp_path / "machine_b").mkdir()
    moved = shutil.copy(capsule_path, tmp_path / "machine_b" / "from-a.capsule.zip")
    HANDLES.clear()
    shutil.rmtree(tmp_path / "machine_a")
    capsule = open_capsule(moved, extract_to=tmp_path / "machine_b" / "opened")

    assert capsule.manifest["format"] == "dashapp-capsule"
    assert capsule.manifest["version"] == CAPSULE_VERSION
    assert capsule.manifest["counts"]["events"] == len(capsule.events())
    assert capsule.manifest["root"].endswith("machine_a/data")
    assert capsule.root == tmp_path / "machine_b" / "opened" / "inputs"
    views = capsule.views()
    assert [q for e, q in views if e.kind == "view"] == workspace["queries"]
    assert [q for e, q in views if e.kind == "snapshot"] == [workspace["snapshot_query"]]

    # restoring each view at the new place shows the same slice
    restored = [q for e, q in views if e.kind == "view"]
    for query, expected in zip(restored, workspace["values"], strict=True):
        state = SliceState(root=str(capsule.root))
        assert apply_query(state, query) == []
        assert to_query(state) == query
        np.testing.assert_array_equal(slice_values(capsule.root, query), expected)
    packed = capsule.root / "run" / "model.h5"
    HANDLES.clear()  # dashapp's lock-free handle would refuse a plain (locking) h5py open
    with h5py.File(packed, "r") as f:
        assert f["model"].shape == (20, 30, 40)
    assert describe(packed, "/model", root=capsule.root).shape == (20, 30, 40)

    snapshot = capsule.events(kinds="snapshot")[0]
    assert capsule.record.attachment_path(snapshot.attachments[0]).read_bytes() == workspace["png"]
    assert "h5py==" in capsule.lock
    assert capsule.environment["python"]["version"]
    assert prov.read(capsule.prov_path, format="json") is not None
    assert "Viewed run/model.h5 /model axis 2 index 5" in capsule.timeline()
    with pytest.raises(PermissionError):
        capsule.record.note("read-only")


def test_capsule_without_inputs(workspace, tmp_path):
    path = export_capsule(workspace["record"], tmp_path / "plain.capsule.zip")
    with zipfile.ZipFile(path) as zf:
        assert not any(n.startswith("inputs/") for n in zf.namelist())
    capsule = open_capsule(path, extract_to=tmp_path / "open")
    assert capsule.root is None
    assert [q for e, q in capsule.views() if e.kind == "view"] == workspace["queries"]
    # the original data is still where the links point
    query = workspace["queries"][0]
    root = capsule.manifest["root"]
    np.testing.assert_array_equal(slice_values(workspace["root"], query), workspace["values"][0])
    assert root == str(workspace["root"].resolve())


def test_capsule_skips_large_inputs_and_says_so(workspace, tmp_path):
    small = workspace["root"] / "run" / "survey.h5"
    with h5py.File(small, "w") as f:
        f["stations"] = np.arange(10.0)
    record = workspace["record"]
    record.file_opened(small, root=workspace["root"])
    record.file_opened(tmp_path / "elsewhere.h5", root=workspace["root"])
    path = export_capsule(record, tmp_path, pack_inputs=True, max_input_bytes=20_000)
    assert path.parent == tmp_path
    assert path.name.endswith(".capsule.zip")
    capsule = open_capsule(path, extract_to=tmp_path / "open")
    inputs = capsule.manifest["inputs"]
    assert [i["file"] for i in inputs["packed"]] == ["run/survey.h5"]
    assert inputs["packed"][0]["bytes"] == small.stat().st_size
    reasons = {i["file"]: i["reason"] for i in inputs["skipped"]}
    assert reasons["run/model.h5"].startswith("larger than the 20.0 kB limit (")
    assert reasons[str(tmp_path / "elsewhere.h5")] == "outside the root"
    assert not (capsule.root / "run" / "model.h5").exists()
    assert (capsule.root / "run" / "survey.h5").read_bytes() == small.read_bytes()


def test_capsule_default_extraction_folder(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("DASHAPP_CACHE", str(tmp_path / "cache"))
    path = export_capsule(workspace["record"], tmp_path / "x.capsule.zip")
    capsule = open_capsule(path)
    assert capsule.folder.parent == tmp_path / "cache" / "capsules"
    assert capsule.folder.name.startswith("x-")
    # Opening it again (a second browser session of a server serving it) reuses the
    # extraction: files the first session holds are not deleted under it.
    held = capsule.folder / "held-by-session-1"
    held.write_text("x")
    inode = (capsule.folder / "record.jsonl").stat().st_ino
    again = open_capsule(path)
    assert again.folder == capsule.folder
    assert again.events() == capsule.events()
    assert held.exists()
    assert (capsule.folder / "record.jsonl").stat().st_ino == inode
    # an incomplete extraction (interrupted) is redone
    (capsule.folder / ".extracted").unlink()
    third = open_capsule(path)
    assert not held.exists()
    assert third.events() == capsule.events()
    # an extracted capsule folder opens as it is
    assert open_capsule(capsule.folder).events() == capsule.events()


def test_capsule_from_a_damaged_record(workspace, tmp_path):
    record = workspace["record"]
    raw = record.path.read_bytes()
    record.path.write_bytes(raw[:-10])
    with pytest.warns(RecordWarning):
        path = export_capsule(Record(record.workspace), tmp_path / "d.capsule.zip")
    capsule = open_capsule(path, extract_to=tmp_path / "open")
    assert capsule.manifest["counts"]["unreadable_lines"] == 1
    assert len(capsule.events()) == len(raw.splitlines()) - 1


def _rewrite_manifest(src, dest, **changes):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "manifest.json":
                data = json.dumps({**json.loads(data), **changes}).encode()
            zout.writestr(item, data)
    return dest


def test_capsule_from_a_newer_dashapp(workspace, tmp_path):
    path = export_capsule(workspace["record"], tmp_path / "c.capsule.zip")
    newer = _rewrite_manifest(path, tmp_path / "newer.capsule.zip", version=99, dashapp="7.0")
    with pytest.raises(CapsuleError) as err:
        open_capsule(newer, extract_to=tmp_path / "open")
    message = str(err.value)
    assert "written by dashapp 7.0 (capsule format 99)" in message
    assert f"reads format {CAPSULE_VERSION}" in message
    assert "upgrade dashapp" in message
    assert not (tmp_path / "open").exists()  # nothing extracted


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a zip at all", "not a zip file"),
        ("zip-without-manifest", "has no manifest.json"),
        ("zip-other-format", "not a dashapp capsule"),
        ("zip-slip", "points outside"),
    ],
)
def test_not_a_capsule(tmp_path, workspace, content, message):
    path = tmp_path / "bad.zip"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "zip-without-manifest":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("record.jsonl", "")
    elif content == "zip-other-format":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("manifest.json", json.dumps({"format": "science-capsule", "version": 1}))
    else:
        good = export_capsule(workspace["record"], tmp_path / "good.capsule.zip")
        shutil.copy(good, path)
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("../../escaped.txt", "gotcha")
    with pytest.raises(CapsuleError, match=message):
        open_capsule(path, extract_to=tmp_path / "open")
    assert not (tmp_path / "escaped.txt").exists()
