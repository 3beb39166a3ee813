"""The provenance record: every event kind through the Python API, debounced views, the
environment (a real git repository), a record damaged by a crash, many writers at once."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import dashapp.provenance.record as record_module
from dashapp.provenance import (
    KINDS,
    Event,
    Record,
    RecordWarning,
    ViewRecorder,
    capture_environment,
    container_info,
    default_workspace,
    format_timeline,
    git_info,
    lock_text,
    open_record,
)

from . import make_workspace, tiny_png

REPO = Path(__file__).resolve().parents[2]


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@example.org",
         *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A real git repository with one commit: the analysis repository."""
    repo = tmp_path / "analysis"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "analysis.py").write_text("print('hello')\n")
    git(repo, "add", "analysis.py")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- every kind
def test_every_event_kind_is_recorded(tmp_path, repo):
    ws = make_workspace(tmp_path, repo=repo)
    record, root, model = ws["record"], ws["root"], ws["model"]
    events = record.events()
    assert {e.kind for e in events} == set(KINDS)
    assert record.skipped_lines == 0
    times = [e.time for e in events]
    assert times == sorted(times)
    assert all(
        e.time.endswith("Z") and len(e.time) == len("2026-01-01T00:00:00.000Z") for e in events
    )
    assert len({e.id for e in events}) == len(events)

    (env,) = record.events(kinds="environment")
    assert env.data["git"]["commit"] == git(repo, "rev-parse", "HEAD")
    assert env.data["git"]["dirty"] is False
    assert env.data["git"]["branch"] == "main"
    assert env.data["packages"]["h5py"] == h5py.__version__
    assert env.data["python"]["executable"] == sys.executable
    assert env.title.startswith("Environment: Python ")

    (opened,) = record.events(kinds="file")
    assert opened.file == "run/model.h5"
    assert opened.data["path"] == str(model)
    assert opened.data["size"] == model.stat().st_size
    assert opened.data["mtime_ns"] == model.stat().st_mtime_ns
    assert opened.data["sha256"] == sha256(model)  # small: hashed without asking
    assert opened.data["root"] == os.path.realpath(root)

    views = record.events(kinds="view")
    assert [e.query for e in views] == ws["queries"]
    assert all(e.file == "run/model.h5" for e in views)
    assert views[0].data["view"]["axis"] == 2
    assert views[0].data["view"]["cmap"] == "kbc"
    assert views[1].data["view"]["display"] == [1, 2]  # tuples stored as JSON lists
    assert "axis 2 index 5" in views[0].title

    (snap,) = record.events(kinds="snapshot")
    assert snap.query == ws["snapshot_query"]
    assert snap.title == "The manual-limits section"
    assert (record.workspace / snap.attachments[0]).read_bytes() == ws["png"]

    (note,) = record.events(kinds="note")
    assert note.title == "Conductor at y=20 looks shallower than in the previous run."
    assert note.data["text"].endswith("Check iteration 8.")
    assert note.file == "run/model.h5"
    assert (record.workspace / note.attachments[0]).read_bytes() == ws["png"]
    assert note.attachments[0].endswith(".png")

    (comp,) = record.events(kinds="computation")
    assert comp.data["status"] == "ok"
    assert comp.data["error"] is None
    assert comp.data["parameters"] == {"axis": 0}
    (out,) = comp.data["outputs"]
    assert out["file"] == "run/mean.h5"
    assert out["sha256"] == sha256(ws["output"])
    assert comp.data["inputs"][0]["sha256"] == sha256(model)
    assert comp.data["seconds"] >= 0

    start, scale, adapt, lost = record.events(kinds="cluster")
    assert start.data["cls"] == "dask_jobqueue.SLURMCluster"
    assert start.data["job_script"].startswith("#!/usr/bin/env bash")
    assert start.data["options"]["cores"] == 2
    assert scale.data == {"action": "scale", "n": 4, "job_ids": ["1001", "1002"]}
    assert (adapt.data["minimum"], adapt.data["maximum"]) == (0, 8)
    assert lost.data["worker"] == "tcp://10.0.0.5:4001"
    assert "worker_lost" in lost.title

    sessions = record.events(kinds="session")
    assert [s.data["action"] for s in sessions] == ["start", "end"]


def test_events_read_back_equal_what_add_returned(tmp_path):
    record = Record(tmp_path / "ws")
    added = [
        record.add(
            "session", "start", data={"tuple": (1, 2), "keys": {3: "x"}, "nan": float("nan")}
        ),
        record.add("view", "a view", file="f.h5", link={"file": "f.h5", "dataset": "/m"}),
        record.add("note", "line one\nline two"),
    ]
    assert record.flush(10)
    assert Record(tmp_path / "ws").events() == added
    assert added[0].data == {"tuple": [1, 2], "keys": {"3": "x"}, "nan": "nan"}
    assert added[1].link == "file=f.h5&dataset=/m"
    assert added[2].title == "line one line two"
    for line in (tmp_path / "ws" / "record.jsonl").read_text().splitlines():
        assert Event.from_dict(json.loads(line)).id in {e.id for e in added}


def test_add_returns_before_the_disk_write(tmp_path, monkeypatch):
    """The caller never waits on the disk: with the writer stuck, add() still returns and the
    event is visible; flush() says it is not written yet, then that it is."""
    gate = threading.Event()
    original = Record._write

    def stuck_write(self, jobs):
        gate.wait(30)
        original(self, jobs)

    monkeypatch.setattr(Record, "_write", stuck_write)
    record = Record(tmp_path / "ws")
    event = record.add("note", "written later")
    assert not (tmp_path / "ws" / "record.jsonl").exists()
    assert record.events() == [event]  # pending events are shown
    assert record.flush(timeout=0.2) is False
    gate.set()
    assert record.flush(timeout=30) is True
    assert Record(tmp_path / "ws").events() == [event]


def test_view_dedupes_the_same_link(tmp_path):
    record = Record(tmp_path / "ws")
    assert record.view("file=a.h5&index=1", {"index": 1}) is not None
    assert record.view("?file=a.h5&index=1", {"index": 1}) is None
    assert record.view("http://host:5006/slicer?file=a.h5&index=2", {"index": 2}) is not None
    assert record.view({"file": "a.h5", "index": "1"}, {"index": 1}) is not None
    record.flush(10)
    assert [e.query["index"] for e in record.events(kinds="view")] == ["1", "2", "1"]


def test_checksum_policy(tmp_path, monkeypatch):
    small = tmp_path / "small.h5"
    with h5py.File(small, "w") as f:
        f["x"] = np.arange(100)
    big = tmp_path / "big.h5"
    with h5py.File(big, "w") as f:
        f["x"] = np.arange(100_000)
    monkeypatch.setattr(record_module, "SMALL_FILE_BYTES", 50_000)
    record = Record(tmp_path / "ws")
    a = record.file_opened(small)
    b = record.file_opened(big)
    c = record.file_opened(big, checksum=True)
    d = record.file_opened(small, checksum=False)
    missing = record.file_opened(tmp_path / "gone.h5")
    assert record.flush(30)
    assert a.data["sha256"] == sha256(small)
    assert "sha256" not in b.data
    assert c.data["sha256"] == sha256(big)
    assert "sha256" not in d.data
    assert missing.data["exists"] is False
    assert "missing" in missing.title
    assert a.file == str(small)  # no root: the absolute path


def test_a_file_changing_while_hashed_gets_no_checksum(tmp_path):
    path = tmp_path / "growing.h5"
    path.write_bytes(b"x" * 1000)
    info = record_module.describe_file(path)
    path.write_bytes(b"x" * 2000)  # a writer appended meanwhile
    record_module._add_checksum(info)
    assert info["sha256"] is None
    assert "changed while it was read" in info["checksum_error"]


def test_note_images_from_bytes_and_files(tmp_path):
    image = tmp_path / "sketch.png"
    image.write_bytes(tiny_png(5, 5))
    record = Record(tmp_path / "ws")
    note = record.note("two images", images=[tiny_png(), image, b"<svg xmlns='x'/>"])
    image.unlink()  # read at once: the caller may delete it
    assert record.flush(10)
    assert len(note.attachments) == 3
    stored = [record.workspace / a for a in note.attachments]
    assert stored[0].read_bytes() == tiny_png()
    assert stored[1].read_bytes() == tiny_png(5, 5)
    assert stored[1].name.endswith("sketch.png")
    assert stored[2].suffix == ".svg"


def test_attachment_paths_stay_in_the_workspace(tmp_path):
    record = Record(tmp_path / "ws")
    note = record.note("with an image", images=[tiny_png()])
    assert record.flush(10)
    assert record.attachment_path(note.attachments[0]).read_bytes() == tiny_png()
    for rel in ("record.jsonl", "attachments/../../secret.txt", "/etc/passwd"):
        with pytest.raises(ValueError, match="not an attachment"):
            record.attachment_path(rel)


def test_snapshot_needs_a_png(tmp_path):
    record = Record(tmp_path / "ws")
    with pytest.raises(ValueError, match="PNG"):
        record.snapshot(b"GIF89a....", "file=a.h5", {})


def test_bad_kind_and_read_only(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        Record(tmp_path / "ws").add("clicked", "x")
    with pytest.raises(PermissionError):
        Record(tmp_path / "ws", read_only=True).note("no")


def test_computation_failure(tmp_path):
    record = Record(tmp_path / "ws")
    try:
        raise MemoryError("worker killed: 4 GB limit")
    except MemoryError as exc:
        event = record.computation("pyramid", {"levels": 3}, [], [], 12.5, "failed", exc)
    assert record.flush(10)
    assert event.data["error"] == "MemoryError: worker killed: 4 GB limit"
    assert "failed" in event.title
    assert "MemoryError" in event.title
    assert record.events(kinds="computation")[0].data["status"] == "failed"


def test_filters(tmp_path):
    ws = make_workspace(tmp_path)
    record = ws["record"]
    assert {e.kind for e in record.events(kinds=("view", "snapshot"))} == {"view", "snapshot"}
    about_model = record.events(file="run/model.h5")
    assert {e.kind for e in about_model} == {"file", "view", "snapshot", "note", "computation"}
    assert {e.kind for e in record.events(file=str(ws["output"]))} == {"computation"}
    (note,) = record.events(text="iteration 8")  # searches the whole note, not only its title
    assert note.kind == "note"
    assert record.events(text="CONDUCTOR") == [note]
    everything = record.events()
    later = record.events(since=everything[5].time)
    assert later == everything[5:] or later[0].time == everything[5].time
    assert record.events(since="2100-01-01T00:00:00Z") == []


def test_timeline_text(tmp_path):
    ws = make_workspace(tmp_path)
    text = format_timeline(ws["record"].events())
    lines = text.splitlines()
    assert any(" view " in line and "run/model.h5 /model axis 2 index 5" in line for line in lines)
    assert any(line.strip().startswith("?file=run/model.h5") for line in lines)
    assert "Check iteration 8." in text


# ----------------------------------------------------------------------------- debouncing
def test_view_recorder_records_where_the_user_stopped(tmp_path):
    record = Record(tmp_path / "ws")
    recorder = ViewRecorder(record, delay=1.0)
    started = time.monotonic()
    for i in range(50):  # a fast scrub
        recorder.update(f"file=a.h5&dataset=/m&axis=0&index={i}", {"index": i}, "a.h5")
    assert time.monotonic() - started < 1.0
    assert recorder.pending
    assert wait_for(lambda: len(recorder.recorded) == 1)
    assert not recorder.pending
    record.flush(10)
    (view,) = record.events(kinds="view")
    assert view.query["index"] == "49"
    assert view.data["view"] == {"index": 49}

    # a slower scrub, each step within the delay: still only the last one
    for i in range(50, 60):
        recorder.update(f"file=a.h5&dataset=/m&axis=0&index={i}", {"index": i})
        time.sleep(0.02)
    assert wait_for(lambda: len(recorder.recorded) == 2)
    assert recorder.recorded[-1].query["index"] == "59"

    # a pause: recorded; then close() records the view still waiting
    recorder.update("file=a.h5&dataset=/m&axis=0&index=70", {"index": 70})
    assert wait_for(lambda: len(recorder.recorded) == 3)
    recorder.update("file=a.h5&dataset=/m&axis=0&index=80", {"index": 80})
    closed = recorder.close()
    assert closed is not None
    assert closed.query["index"] == "80"
    record.flush(10)
    assert [e.query["index"] for e in record.events(kinds="view")] == ["49", "59", "70", "80"]
    assert recorder.close() is None  # nothing left


def test_view_recorder_returning_to_the_last_view_records_nothing(tmp_path):
    record = Record(tmp_path / "ws")
    recorder = ViewRecorder(record, delay=0.05)
    recorder.update("file=a.h5&index=1", {})
    assert wait_for(lambda: not recorder.pending)
    recorder.update("file=a.h5&index=2", {})
    recorder.update("file=a.h5&index=1", {})  # scrubbed away and back
    assert wait_for(lambda: not recorder.pending)
    recorder.close()
    assert len(record.events(kinds="view")) == 1


def test_sessions_share_one_record(tmp_path):
    a, b = open_record(tmp_path / "ws"), open_record(tmp_path / "ws" / ".." / "ws")
    assert a is b


# ----------------------------------------------------------------------------- damage
def _write_events(workspace: Path, n: int) -> list[Event]:
    record = Record(workspace)
    events = [record.add("note", f"note {i}", data={"text": f"note {i}"}) for i in range(n)]
    assert record.close()
    return events


def test_record_cut_mid_line_still_loads(tmp_path):
    events = _write_events(tmp_path / "ws", 5)
    path = tmp_path / "ws" / "record.jsonl"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 25])  # dashapp died while writing the last event
    record = Record(tmp_path / "ws")
    with pytest.warns(RecordWarning, match="incomplete"):
        loaded = record.events()
    assert loaded == events[:4]
    assert record.skipped_lines == 1

    # writing again starts a fresh line: the new event is not glued to the broken one
    new = record.add("note", "after the crash")
    assert record.flush(10)
    with pytest.warns(RecordWarning, match="1 unreadable line"):
        assert Record(tmp_path / "ws").events() == [*events[:4], new]


def test_garbage_line_in_the_middle_is_skipped_and_counted(tmp_path):
    events = _write_events(tmp_path / "ws", 4)
    path = tmp_path / "ws" / "record.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(2, b"\x00\x00garbage{not json\n")
    lines.insert(3, b'{"id": "x", "kind": "note"}\n')  # JSON, but not an event
    path.write_bytes(b"".join(lines))
    record = Record(tmp_path / "ws")
    with pytest.warns(RecordWarning, match=r"2 unreadable line\(s\) were skipped \(3, 4\)"):
        assert record.events() == events
    assert record.skipped_lines == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not at every timeline refresh
        assert record.events() == events


def test_empty_and_missing_record(tmp_path):
    assert Record(tmp_path / "nothing").events() == []
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "record.jsonl").write_bytes(b"")
    assert Record(tmp_path / "empty").events() == []


def test_many_writers(tmp_path):
    """Threads of several sessions, a second Record object and another process append to one
    record at once: every event is there, whole."""
    workspace = tmp_path / "ws"
    shared, other = Record(workspace), Record(workspace)
    code = (
        "import sys\n"
        "from dashapp.provenance import Record\n"
        "r = Record(sys.argv[1])\n"
        "for i in range(300): r.add('session', f'proc {i}')\n"
        "assert r.flush(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(workspace)])

    def session(n: int) -> None:
        for i in range(200):
            shared.add("view", f"thread {n} view {i}", link=f"file=a.h5&index={i}")

    threads = [threading.Thread(target=session, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for i in range(100):
        other.add("note", f"other {i}")
    for t in threads:
        t.join()
    assert proc.wait(120) == 0
    assert shared.flush(60)
    assert other.flush(60)
    events = Record(workspace).events()
    assert len(events) == 6 * 200 + 100 + 300
    assert len({e.id for e in events}) == len(events)
    lines = (workspace / "record.jsonl").read_bytes().splitlines()
    assert all(json.loads(line)["id"] for line in lines)


# ----------------------------------------------------------------------------- environment
def test_git_state(repo, tmp_path):
    info = git_info(repo)
    assert info["repo"] == str(repo.resolve())
    assert info["commit"] == git(repo, "rev-parse", "HEAD")
    assert len(info["commit"]) == 40
    assert info["dirty"] is False
    (repo / "analysis.py").write_text("print('changed')\n")
    assert git_info(repo)["dirty"] is True
    git(repo, "commit", "-qam", "second")
    assert git_info(repo)["dirty"] is False
    (repo / "new.py").write_text("")  # untracked files make the commit incomplete too
    dirty = git_info(repo / ".")
    assert dirty["dirty"] is True
    assert "?? new.py" in dirty["changed"]
    (tmp_path / "plain").mkdir()
    assert git_info(tmp_path / "plain") is None


def test_environment_default_repo_is_the_current_folder(repo, monkeypatch):
    monkeypatch.chdir(repo)
    assert capture_environment()["git"]["commit"] == git(repo, "rev-parse", "HEAD")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"SHIFTER_IMAGEREQUEST": "docker:me/dashapp:1.0"},
         {"kind": "shifter", "image": "docker:me/dashapp:1.0"}),
        ({"APPTAINER_CONTAINER": "/img/dashapp.sif", "APPTAINER_NAME": "dashapp.sif"},
         {"kind": "apptainer", "image": "/img/dashapp.sif", "name": "dashapp.sif"}),
        ({"SINGULARITY_CONTAINER": "/img/d.sif"}, {"kind": "singularity", "image": "/img/d.sif"}),
        ({"BINDER_REQUEST": "v2/gh/me/dashapp/main", "BINDER_API_TOKEN": "s3cret"},
         {"kind": "binder", "image": "v2/gh/me/dashapp/main",
          "env": {"BINDER_REQUEST": "v2/gh/me/dashapp/main"}}),
        ({"HOME": "/root"}, None),
    ],
)  # fmt: skip
def test_container(environ, expected):
    assert container_info(environ) == expected


def test_slurm_job(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_CLUSTER_NAME", "perlmutter")
    env = capture_environment()
    assert env["slurm"]["job_id"] == "4242"
    assert env["slurm"]["cluster"] == "perlmutter"


def test_lock_text(repo):
    env = capture_environment(repo)
    lock = lock_text(env)
    assert f"h5py=={h5py.__version__}" in lock.splitlines()
    assert f"numpy=={np.__version__}" in lock.splitlines()
    assert env["git"]["commit"] in lock
    assert "(clean)" in lock
    fake = {
        "packages": {"a": "1.0", "b": "2.0", "c": "0.1"},
        "direct": {
            "b": {"url": "https://github.com/x/b", "vcs_info": {"vcs": "git", "commit_id": "abc"}},
            "c": {"url": "file:///home/me/c", "dir_info": {"editable": True}},
        },
    }
    lines = [line for line in lock_text(fake).splitlines() if not line.startswith("# ")]
    assert lines == ["a==1.0", "b @ git+https://github.com/x/b@abc"]
    assert "# c==0.1  (installed editable from file:///home/me/c)" in lock_text(fake)


def test_default_workspace(monkeypatch, tmp_path):
    monkeypatch.setenv("DASHAPP_WORKSPACE", str(tmp_path / "mine"))
    assert default_workspace() == tmp_path / "mine"
    monkeypatch.delenv("DASHAPP_WORKSPACE")
    monkeypatch.setenv("DASHAPP_CACHE", str(tmp_path / "cache"))
    assert default_workspace() == tmp_path / "cache" / "workspace"
    assert Record().workspace == tmp_path / "cache" / "workspace"


def test_provenance_imports_no_ui_library():
    code = (
        "import sys, dashapp.provenance\n"
        "ui = sorted(m for m in ('panel', 'bokeh', 'holoviews') if m in sys.modules)\n"
        "print(','.join(ui))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "", f"dashapp.provenance imported {out.stdout.strip()}"


def test_each_served_root_has_its_own_workspace_unless_one_is_named(monkeypatch, tmp_path):
    monkeypatch.delenv("DASHAPP_WORKSPACE", raising=False)
    monkeypatch.setenv("DASHAPP_CACHE", str(tmp_path / "cache"))
    (tmp_path / "survey").mkdir()
    (tmp_path / "other" / "survey").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "survey")
    mine = default_workspace(tmp_path / "survey")
    assert mine.parent == tmp_path / "cache" / "workspaces"
    assert mine.name.startswith("survey-")
    assert default_workspace(tmp_path / "link") == mine  # the same folder, however named
    assert default_workspace(tmp_path / "other" / "survey") != mine  # same name, other folder
    assert open_record(root=tmp_path / "survey").workspace == mine
    monkeypatch.setenv("DASHAPP_WORKSPACE", str(tmp_path / "project"))
    assert default_workspace(tmp_path / "survey") == tmp_path / "project"  # the user's choice


def test_the_server_start_is_recorded_once_and_views_carry_their_root(tmp_path):
    from dashapp.provenance import record_server_start, same_root

    record = Record(tmp_path / "ws")
    root, other = tmp_path / "a", tmp_path / "b"
    root.mkdir()
    other.mkdir()
    assert record_server_start(record, root)
    assert not any(record_server_start(record, root) for _ in range(5))  # page loads
    assert record_server_start(record, other)  # another server sharing the workspace
    view = record.view("file=x.h5&dataset=/d", {}, root=root)
    shot = record.snapshot(tiny_png(), "file=x.h5&dataset=/d", {}, root=other)
    note = record.note("no root: a note from a script")
    record.flush(10)
    starts = record.events(kinds="session")
    assert [e.title for e in starts] == ["Server started: a", "Server started: b"]
    assert view.data["root"] == str(root.resolve())
    assert same_root(view, root)
    assert not same_root(view, other)
    assert same_root(shot, other)
    assert not same_root(shot, root)
    assert same_root(note, root)
    assert same_root(note, other)
    record.close()
