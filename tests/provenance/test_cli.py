"""The command line: ``python -m dashapp capsule export/open/show`` and ``prov export`` run in a
subprocess on a real workspace; ``serve`` keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import prov
import pytest

from dashapp import cli
from dashapp.app import SLICER_SCRIPT

from . import make_workspace

REPO = Path(__file__).resolve().parents[2]


def dashapp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dashapp", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )


@pytest.fixture
def workspace(tmp_path):
    return make_workspace(tmp_path / "machine_a")


def test_capsule_export_open_show(workspace, tmp_path):
    record, root = workspace["record"], workspace["root"]
    out = tmp_path / "share" / "study.capsule.zip"
    run = dashapp(
        "capsule", "export", "--workspace", record.workspace, "--pack-inputs", "--root", root, out
    )
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}" in run.stdout
    assert "1 input file(s) packed" in run.stdout
    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert "inputs/run/model.h5" in zf.namelist()
    assert manifest["root"] == str(root.resolve())
    assert manifest["counts"]["events"] == len(record.events())

    show = dashapp("capsule", "show", out)
    assert show.returncode == 0, show.stderr
    assert "Viewed run/model.h5 /model axis 2 index 5" in show.stdout
    query = "&".join(f"{k}={v}" for k, v in workspace["queries"][0].items())
    assert f"?{query}" in show.stdout
    assert "Ran mean_over_z: ok" in show.stdout
    assert "Cluster scale" in show.stdout

    opened = tmp_path / "machine_b" / "opened"
    run = dashapp("capsule", "open", out, "--to", opened, "--serve")
    assert run.returncode == 0, run.stderr
    assert (opened / "inputs" / "run" / "model.h5").is_file()
    assert (opened / "record.jsonl").is_file()
    assert f"dashapp serve --root {opened / 'inputs'}" in run.stdout
    assert f"/slicer?{query}" in run.stdout  # the route of every way of serving


def test_prov_export(workspace, tmp_path):
    out = tmp_path / "prov" / "record.json"
    run = dashapp("prov", "export", "--workspace", workspace["record"].workspace, out)
    assert run.returncode == 0, run.stderr
    doc = prov.read(out, format="json")
    assert len(list(doc.get_records(prov.model.ProvEntity))) == 8


def test_default_workspace_from_the_environment(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("DASHAPP_WORKSPACE", str(workspace["record"].workspace))
    run = dashapp("capsule", "export", tmp_path / "env.capsule.zip")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "env.capsule.zip").is_file()


def test_errors_are_sentences(workspace, tmp_path):
    run = dashapp("capsule", "export", "--workspace", tmp_path / "empty", tmp_path / "x.zip")
    assert run.returncode == 1
    assert "no provenance record" in run.stderr
    good = tmp_path / "good.capsule.zip"
    assert dashapp("capsule", "export", "--workspace", workspace["record"].workspace, good)
    newer = tmp_path / "newer.capsule.zip"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(newer, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "manifest.json":
                data = json.dumps({**json.loads(data), "version": 99}).encode()
            zout.writestr(item, data)
    for action in ("open", "show"):
        run = dashapp("capsule", action, newer)
        assert run.returncode == 1
        assert "capsule format 99" in run.stderr
        assert "upgrade dashapp" in run.stderr
        assert "Traceback" not in run.stderr
    run = dashapp("capsule", "show", REPO / "pyproject.toml")
    assert run.returncode == 1
    assert "not a zip file" in run.stderr
    run = dashapp("capsule", "show", good, "--bogus")
    assert run.returncode == 2
    assert "unrecognized arguments: --bogus" in run.stderr


def test_serve_still_builds_its_command(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(cli.os, "execvpe", lambda prog, cmd, env: seen.update(cmd=cmd, env=env))
    monkeypatch.setattr(cli, "_announce_when_ready", lambda *args: None)
    cli.main(["serve", "--root", str(tmp_path), "--port", "5099"])
    cmd = seen["cmd"]
    assert cmd[:5] == [sys.executable, "-m", "panel", "serve", str(SLICER_SCRIPT)]
    assert cmd[cmd.index("--index") + 1] == "slicer"
    assert cmd[cmd.index("--plugins") + 1] == "dashapp.routes"
    assert cmd[cmd.index("--address") + 1] == "127.0.0.1"
    assert "--auth-module" in cmd
    assert "--port" in cmd
    assert cmd[-3:] == ["--args", "--root", str(tmp_path)]
    cli.main(["serve", "--capsule", "run.capsule.zip"])
    assert seen["cmd"][-3:] == ["--args", "--capsule", "run.capsule.zip"]


def test_capsule_export_of_a_root_finds_that_roots_timeline(tmp_path, monkeypatch):
    """A server keeps one workspace per served folder; ``--root`` finds it without --workspace."""
    from dashapp.cli import main
    from dashapp.provenance import Record, default_workspace

    monkeypatch.delenv("DASHAPP_WORKSPACE", raising=False)
    root = tmp_path / "ore"
    root.mkdir()
    record = Record(default_workspace(root))
    record.note("the ore body's timeline")
    record.close()
    out = tmp_path / "ore.capsule.zip"
    assert main(["capsule", "export", "--root", str(root), str(out)]) == 0
    assert b"the ore body's timeline" in zipfile.ZipFile(out).read("record.jsonl")
