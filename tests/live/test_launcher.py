"""The demo's "Run a live inversion" launcher: a real writer process and its progress."""

from __future__ import annotations

import time

import h5py

from dashapp.demo.launcher import inversion_progress, running_inversion, start_inversion


def test_progress_follows_the_writer_process_to_its_end(tmp_path):
    path = start_inversion(tmp_path, size="tiny", delay=0.0, wait=False)
    assert inversion_progress(tmp_path / "other.h5") is None
    first = inversion_progress(path)
    assert first.running
    assert first.iterations == 0  # Python and SimPEG are still starting
    assert running_inversion() == path
    assert start_inversion(tmp_path, size="tiny", wait=False) == path  # one at a time
    deadline = time.monotonic() + 180
    while (progress := inversion_progress(path)).running and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not progress.running
    assert progress.returncode == 0
    assert progress.problem == ""
    with h5py.File(path, "r") as f:  # each counted iteration is in the file
        assert progress.iterations == f["model"].shape[0] == 8
    assert running_inversion() is None
