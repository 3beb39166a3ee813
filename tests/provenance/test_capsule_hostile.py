"""Capsules come from someone else: they never write or serve outside their own folder.

Real capsules (exported from a real workspace) and hostile ones built with zipfile/tarfile in
tmp_path; ``python -m dashapp capsule open`` is run as a subprocess, as a user runs it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from dashapp.provenance import CapsuleError, CapsuleLimits, export_capsule, open_capsule

from . import make_workspace

REPO = Path(__file__).resolve().parents[2]
MANIFEST = {"format": "dashapp-capsule", "version": 1, "dashapp": "0.1.0", "root": "/"}


def dashapp(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dashapp", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        check=False,
    )


@pytest.fixture(scope="module")
def capsule(tmp_path_factory):
    """A real capsule with its inputs packed (``inputs/run/model.h5``)."""
    base = tmp_path_factory.mktemp("capsule")
    ws = make_workspace(base / "machine_a")
    return export_capsule(
        ws["record"], base / "study.capsule.zip", pack_inputs=True, root=ws["root"]
    )


def hostile(path: Path, members: dict[str, bytes | str], manifest: dict | None = None) -> Path:
    """A zip with a valid manifest, a record and ``members`` (deflated)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("record.jsonl", "")
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("manifest.json", json.dumps(manifest or MANIFEST))
    return path


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------- open --to never deletes
def test_open_into_a_folder_with_other_files_is_refused_and_deletes_nothing(capsule, tmp_path):
    to = tmp_path / "project"
    (to / "inputs").mkdir(parents=True)
    (to / "attachments").mkdir()
    (to / "inputs" / "my-thesis-data.h5").write_bytes(b"years of work")
    (to / "attachments" / "figure.png").write_bytes(b"mine")
    before = tree(to)
    run = dashapp("capsule", "open", capsule, "--to", to)
    assert run.returncode == 1
    assert "is not empty and was not made by 'dashapp capsule open'" in run.stderr
    assert "nothing there was changed or deleted" in run.stderr
    assert tree(to) == before


def test_open_twice_merges_into_its_own_folder_and_keeps_other_files(capsule, tmp_path):
    to = tmp_path / "opened"
    first = dashapp("capsule", "open", capsule, "--to", to)
    assert first.returncode == 0, first.stderr
    assert f"extracted to {to}\n" in first.stdout
    assert (to / "inputs" / "run" / "model.h5").is_file()
    (to / "inputs" / "notes.txt").write_text("added by me")
    (to / "record.jsonl").write_text("")  # a file dashapp wrote, changed: it is replaced
    again = dashapp("capsule", "open", capsule, "--to", to)
    assert again.returncode == 0, again.stderr
    assert "(merged: the files an earlier 'dashapp capsule open' wrote there" in again.stdout
    assert (to / "inputs" / "notes.txt").read_text() == "added by me"
    assert (to / "record.jsonl").stat().st_size > 0


def test_open_refuses_to_overwrite_a_file_it_did_not_write(capsule, tmp_path):
    to = tmp_path / "opened"
    assert dashapp("capsule", "open", capsule, "--to", to).returncode == 0
    (to / "inputs" / "run" / "model.h5").unlink()
    (to / "inputs" / "run" / "model.h5").write_bytes(b"mine now")  # same name, but see below
    (to / "prov.json").unlink()
    (to / "prov.json").mkdir()  # a folder where the capsule has a file
    run = dashapp("capsule", "open", capsule, "--to", to)
    assert run.returncode == 1
    assert "prov.json is there and is not a file dashapp wrote" in run.stderr
    assert (to / "inputs" / "run" / "model.h5").read_bytes() == b"mine now"


def test_open_does_not_write_through_a_symlink_planted_in_its_folder(capsule, tmp_path):
    to = tmp_path / "opened"
    assert dashapp("capsule", "open", capsule, "--to", to).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "run").mkdir(parents=True)
    (elsewhere / "run" / "model.h5").write_bytes(b"not yours")
    import shutil

    shutil.rmtree(to / "inputs")
    (to / "inputs").symlink_to(elsewhere)
    run = dashapp("capsule", "open", capsule, "--to", to)
    assert run.returncode == 1
    assert "is not a folder dashapp made" in run.stderr
    assert (elsewhere / "run" / "model.h5").read_bytes() == b"not yours"


# --------------------------------------------------------------------- sizes and ratios
def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path):
    bomb = hostile(tmp_path / "bomb.capsule.zip", {"inputs/zeros.h5": bytes(200 * 2**20)})
    assert bomb.stat().st_size < 2**20  # 200 MiB of zeros packs into < 1 MiB
    to = tmp_path / "out"
    run = dashapp("capsule", "open", bomb, "--to", to)
    assert run.returncode == 1
    assert "refusing the member 'inputs/zeros.h5', which unpacks" in run.stderr
    assert "times its packed size" in run.stderr
    assert not to.exists()
    show = dashapp("capsule", "show", bomb)  # show unpacks too (into a temporary folder)
    assert show.returncode == 1
    assert "times its packed size" in show.stderr


def test_many_small_members_that_add_up_are_refused(tmp_path):
    members = {f"attachments/{i}.png": bytes(2**20) for i in range(100)}  # 100 MiB in ~100 KiB
    bomb = hostile(tmp_path / "many.capsule.zip", members)
    with pytest.raises(CapsuleError, match="refused as a possible zip bomb"):
        open_capsule(bomb, extract_to=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_total_and_member_limits(capsule, tmp_path):
    with pytest.raises(CapsuleError, match=r"may unpack to at most 1\.0 kB\. Nothing was"):
        open_capsule(capsule, extract_to=tmp_path / "a", limits=CapsuleLimits(total_bytes=1024))
    with pytest.raises(CapsuleError, match="which unpacks to"):
        open_capsule(capsule, extract_to=tmp_path / "b", limits=CapsuleLimits(member_bytes=1024))
    with pytest.raises(CapsuleError, match="members; a capsule may have at most 3"):
        open_capsule(capsule, extract_to=tmp_path / "c", limits=CapsuleLimits(members=3))
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in "abc")
    assert open_capsule(capsule, extract_to=tmp_path / "d").root is not None  # defaults: fine


def test_a_member_that_unpacks_to_more_than_it_declares_is_refused(tmp_path):
    path = hostile(tmp_path / "liar.capsule.zip", {"prov.json": b"x" * 100_000})
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("prov.json")
    # declare 1,000 bytes in the local header and the central directory; 100,000 are there
    for pos in range(len(data) - 4):
        if data[pos : pos + 4] in (b"PK\x03\x04", b"PK\x01\x02"):
            off = 22 if data[pos + 2] == 3 else 24
            if int.from_bytes(data[pos + off : pos + off + 4], "little") == info.file_size:
                data[pos + off : pos + off + 4] = (1000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(CapsuleError, match=r"damaged|more than it declares"):
        open_capsule(path, extract_to=tmp_path / "out")
    assert not (tmp_path / "out" / "prov.json").exists()


def test_a_huge_manifest_is_refused_without_reading_it(tmp_path):
    manifest = dict(MANIFEST, padding="x" * (20 * 2**20))
    big = hostile(tmp_path / "big.capsule.zip", {}, manifest=manifest)
    run = dashapp("capsule", "show", big)
    assert run.returncode == 1
    assert "its manifest.json is larger than 16.8 MB; refused" in run.stderr
    folder = tmp_path / "folder-capsule"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CapsuleError, match=r"manifest\.json is larger than 16\.8 MB"):
        open_capsule(folder)


def test_a_huge_environment_description_is_refused(tmp_path):
    big = hostile(tmp_path / "env.capsule.zip", {"environment.json": " " * (17 * 2**20)})
    with pytest.raises(CapsuleError, match=r"'environment\.json', which unpacks to 17\.8 MB"):
        open_capsule(big, extract_to=tmp_path / "out")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../escape.txt", "points outside"),
        ("inputs/../../escape.txt", "points outside"),
        ("/etc/cron.d/evil", "points outside"),
        ("C:/evil.txt", "points outside"),
        (".dashapp-capsule.json", "a name dashapp keeps for itself"),
        ("record.jsonl", "in the capsule twice"),
    ],
)
def test_bad_member_names_are_refused(tmp_path, name, why):
    path = hostile(tmp_path / "bad.capsule.zip", {name: "x"})
    run = dashapp("capsule", "open", path, "--to", tmp_path / "out")
    assert run.returncode == 1
    assert why in run.stderr
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "out").exists()


def test_symlink_members_are_refused(tmp_path):
    path = tmp_path / "link.capsule.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("record.jsonl", "")
        link = zipfile.ZipInfo("inputs")
        link.external_attr = (0o120777 << 16) | 0x20
        zf.writestr(link, "/etc")
        zf.writestr("manifest.json", json.dumps(MANIFEST))
    with pytest.raises(CapsuleError, match="a symbolic link"):
        open_capsule(path, extract_to=tmp_path / "out")


def test_a_tar_file_is_not_a_capsule(tmp_path):
    """Capsules are zip files; a tar (with its symlinks and devices) is refused unread."""
    path = tmp_path / "study.capsule.tar"
    with tarfile.open(path, "w") as tf:
        data = json.dumps(MANIFEST).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("inputs")
        link.type, link.linkname = tarfile.SYMTYPE, "/"
        tf.addfile(link)
    run = dashapp("capsule", "open", path, "--to", tmp_path / "out")
    assert run.returncode == 1
    assert "it is not a zip file" in run.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------- what is served
def test_a_capsule_folder_whose_inputs_link_outside_is_refused(tmp_path):
    folder = tmp_path / "capsule"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(MANIFEST))
    (folder / "record.jsonl").write_text("")
    (folder / "inputs").symlink_to("/etc")
    with pytest.raises(CapsuleError, match="outside the capsule"):
        open_capsule(folder)


def test_serve_capsule_never_serves_the_manifests_root(tmp_path, monkeypatch):
    """A capsule whose manifest says root "/" and packs no inputs: the page says why instead
    of listing /etc; with inputs, only they are served; --root from the server's owner wins."""
    pytest.importorskip("panel")
    from dashapp.app import serve_slicer_page

    monkeypatch.setenv("DASHAPP_CACHE", str(tmp_path / "cache"))
    bare = hostile(tmp_path / "bare.capsule.zip", {})
    assert serve_slicer_page(["--capsule", str(bare)]) is None
    data = tmp_path / "mine"
    data.mkdir()
    app = serve_slicer_page(["--capsule", str(bare), "--root", str(data)])
    assert Path(app.browser_state.root) == data.resolve()
    packed = hostile(tmp_path / "packed.capsule.zip", {"inputs/run/x.txt": "x"}, manifest=MANIFEST)
    app = serve_slicer_page(["--capsule", str(packed)])
    served = Path(app.browser_state.root)
    assert served.name == "inputs"
    assert served.parent.parent == tmp_path / "cache" / "capsules"
