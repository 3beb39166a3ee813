"""Pipes, sockets and devices are refused before anything opens them; hung calls are bounded.

Every open of a FIFO here runs in a thread with a deadline, so that the code before the fix
(which opened the pipe and waited for a writer) fails these tests instead of hanging them.
"""

from __future__ import annotations

import contextvars
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

from dashapp.data import describe, fsguard, list_folder, read_tree
from dashapp.data.errors import FilesystemTimeout, NotRegularFile
from dashapp.data.paths import check_hdf5_signature, check_regular_file, has_hdf5_signature

from ..fixtures import write_volume
from ..special_files import make_fifo, make_socket

_POOL = ThreadPoolExecutor(max_workers=8)


def within(seconds: float, fn, *args, **kwargs):
    """``fn(*args)``, failing the test (not hanging it) if it takes longer than ``seconds``."""
    future = _POOL.submit(fn, *args, **kwargs)
    done, _ = wait([future], seconds)
    if not done:
        pytest.fail(f"{getattr(fn, '__name__', fn)} blocked for more than {seconds} s")
    return future.result()


def unblock(fifo) -> None:
    """Open the pipe for writing once, so a reader stuck in open() returns (test cleanup)."""
    import os

    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader waiting
        return
    os.close(fd)


@pytest.fixture
def root(tmp_path):
    write_volume(tmp_path / "good.h5")
    fifo = make_fifo(tmp_path / "x.h5")
    sock = make_socket(tmp_path / "s.h5")
    make_fifo(tmp_path / "no_extension")
    yield tmp_path
    sock.close()
    unblock(fifo)


@pytest.mark.parametrize(
    ("name", "kind"), [("x.h5", "a named pipe"), ("s.h5", "a socket")]
)  # fmt: skip
def test_special_files_are_refused_with_a_sentence(root, name, kind):
    path = root / name
    for call in (
        lambda: check_hdf5_signature(path),
        lambda: read_tree(path, root=root),
        lambda: describe(path, "/model", root=root),
    ):
        with pytest.raises(NotRegularFile) as err:
            within(5, call)
        assert str(err.value).startswith(f"{name} is {kind}, not a file: dashapp opens only")
    assert within(5, has_hdf5_signature, path) is False


def test_a_character_device_is_refused():
    with pytest.raises(NotRegularFile, match="null is a character device, not a file"):
        check_regular_file("/dev/null")


def test_listing_shows_special_files_without_opening_them(root):
    entries = {e.name: e for e in within(5, list_folder, root)}
    assert entries["good.h5"].problem == ""
    assert entries["good.h5"].special == ""
    assert entries["x.h5"].problem == "a named pipe, not a file"
    assert entries["x.h5"].special == "a named pipe"
    assert entries["s.h5"].special == "a socket"
    # a pipe without an HDF5 name is not sniffed for a signature, and not listed
    assert "no_extension" not in entries


def test_bounded_returns_results_and_raises_errors():
    assert fsguard.bounded(sum, [1, 2, 3], key="/k") == 6
    with pytest.raises(ZeroDivisionError):
        fsguard.bounded(lambda: 1 / 0, key="/k")
    var = contextvars.ContextVar("owner", default=None)
    var.set("me")
    assert fsguard.bounded(var.get) == "me"  # context variables travel with the call
    assert fsguard.hung_calls() == {}


def test_a_hung_open_is_bounded_and_its_key_refused_until_it_returns(tmp_path):
    """A real open() that hangs (a pipe, opened the way a hung mount hangs): the caller gets the
    sentence after the deadline; the next call on the same path is refused at once."""
    fifo = make_fifo(tmp_path / "hung")
    key = str(fifo)
    t0 = time.monotonic()
    with pytest.raises(FilesystemTimeout, match=r"did not answer in 0.5 s while reading \(hung\)"):
        fsguard.bounded(open, fifo, "rb", key=key, what="reading", timeout=0.5)
    assert 0.45 < time.monotonic() - t0 < 3
    assert fsguard.hung_calls() == {key: 1}
    t0 = time.monotonic()
    with pytest.raises(FilesystemTimeout):
        fsguard.bounded(open, fifo, "rb", key=key, timeout=0.5)
    assert time.monotonic() - t0 < 0.2  # refused without starting another stuck thread
    assert fsguard.bounded(sum, [1], key=str(tmp_path / "other")) == 1  # other paths go on
    assert fsguard.bounded(sum, [1], key=str(tmp_path)) == 1  # and the folder above it
    with pytest.raises(FilesystemTimeout):  # but not what lies below a hung path
        fsguard.bounded(sum, [1], key=str(fifo / "inside"), timeout=0.5)
    unblock(fifo)  # the "mount" answers again: the stuck thread returns, the path is usable
    deadline = time.monotonic() + 5
    while fsguard.hung_calls() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fsguard.hung_calls() == {}


def test_a_call_that_computes_past_the_deadline_is_not_called_hung(tmp_path):
    """A first read compiling datashader's kernels on a loaded machine took over 10 s and was
    told "the filesystem did not answer": a call using CPU gets more deadlines; one blocked in
    the kernel (a FIFO's open, as a hung mount) still fails on time."""

    def compute(seconds: float) -> str:
        end = time.thread_time() + seconds  # CPU seconds, however loaded the machine is
        while time.thread_time() < end:
            pass
        return "done"

    key = str(tmp_path / "busy")
    assert fsguard.bounded(compute, 1.0, key=key, timeout=0.25) == "done"
    assert fsguard.hung_calls().get(key) is None
    fifo = make_fifo(tmp_path / "slow.h5")
    t0 = time.monotonic()
    with pytest.raises(FilesystemTimeout):
        fsguard.bounded(open, fifo, "rb", key=str(fifo), timeout=0.5)
    assert time.monotonic() - t0 < 3
    with open(fifo, "wb"):  # let the hung open return
        pass


def test_hung_calls_cannot_pile_up(tmp_path, monkeypatch):
    monkeypatch.setattr(fsguard, "MAX_HUNG", 2)
    fifos = [make_fifo(tmp_path / f"p{i}") for i in range(3)]
    try:
        for fifo in fifos[:2]:
            with pytest.raises(FilesystemTimeout):
                fsguard.bounded(open, fifo, "rb", key=str(fifo), timeout=0.2)
        threads = threading.active_count()
        t0 = time.monotonic()
        with pytest.raises(FilesystemTimeout, match="2 earlier requests are still waiting"):
            fsguard.bounded(sum, [1], key=str(tmp_path / "fine"), timeout=0.2)
        assert time.monotonic() - t0 < 0.1
        assert threading.active_count() == threads
    finally:
        for fifo in fifos:
            unblock(fifo)
    deadline = time.monotonic() + 5
    while fsguard.hung_calls() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fsguard.bounded(sum, [1], key=str(tmp_path / "fine")) == 1


def test_the_timeout_is_one_setting(monkeypatch):
    monkeypatch.setenv("DASHAPP_FS_TIMEOUT", "2.5")
    assert fsguard.fs_timeout() == 2.5
    monkeypatch.setenv("DASHAPP_FS_TIMEOUT", "soon")
    assert fsguard.fs_timeout() == 10.0
