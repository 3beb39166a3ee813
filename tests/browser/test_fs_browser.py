"""A named pipe and a file whose open() hangs, met the way a person meets them, in Chromium.

Before dashapp refused special files, a deep link to a FIFO (or a click on it) blocked the
server's event loop in ``open()``: no page loaded for anyone until something wrote to the pipe.
A hung parallel filesystem did the same; here a write lease held by another process makes a
real ``open()`` of a regular file hang (see tests/special_files.py).
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from ..data.test_special_files import unblock
from ..fixtures import write_volume
from ..special_files import hung_open, make_fifo
from .test_slicer_browser import TIMEOUT, status, wait_for_picture

pytestmark = pytest.mark.browser

PIPE_SENTENCE = "x.h5 is a named pipe, not a file: dashapp opens only regular files"


@pytest.fixture
def root(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_volume(data / "good.h5")
    write_volume(data / "hung.h5")
    fifo = make_fifo(data / "x.h5")
    yield data
    unblock(fifo)


def test_a_named_pipe_by_link_and_by_click(serve, page: Page, context, root):
    server = serve(root)
    page.goto(server.url + "?file=x.h5&dataset=/model", timeout=TIMEOUT)
    expect(page.locator(".dashapp-error").first).to_contain_text(PIPE_SENTENCE, timeout=TIMEOUT)
    # The listing shows the pipe for what it is.
    expect(page.locator(".dashapp-entries").first).to_contain_text("a named pipe, not a file")

    # Another session, at the same time, reads slices as usual.
    other = context.new_page()
    other.goto(server.url + "?file=good.h5&dataset=/model", timeout=TIMEOUT)
    wait_for_picture(other)
    assert "read 30 × 40 cells" in status(other)

    # A person clicks the pipe in the file browser: the sentence, and the page stays usable.
    page.goto(server.url, timeout=TIMEOUT)
    page.locator(".dashapp-entries").get_by_text("x.h5", exact=True).click()
    expect(page.locator(".dashapp-browser-error").first).to_contain_text(
        PIPE_SENTENCE, timeout=TIMEOUT
    )
    page.locator(".dashapp-entries").get_by_text("good.h5", exact=True).click()
    expect(page.locator(".dashapp-title").first).to_contain_text("good.h5", timeout=TIMEOUT)
    wait_for_picture(page)
    assert "read 30 × 40 cells" in status(page)
    assert server.alive()


def test_a_file_that_does_not_answer_costs_only_its_session(serve, context, root):
    server = serve(root, env={"DASHAPP_FS_TIMEOUT": "3"})
    first, second = context.new_page(), context.new_page()
    warm = context.new_page()  # the server's first page compiles and imports: not measured
    warm.goto(server.url + "?file=good.h5&dataset=/model", timeout=TIMEOUT)
    wait_for_picture(warm)
    warm.close()
    # The same two page loads with nothing hung: what "still answers" is measured against.
    t0 = time.monotonic()
    first.evaluate(f"window.location.href = {server.url + '?file=good.h5&dataset=/model'!r}")
    time.sleep(0.2)
    second.goto(server.url + "?file=good.h5&dataset=/model", timeout=TIMEOUT)
    wait_for_picture(second)
    baseline = time.monotonic() - t0
    with hung_open(root / "hung.h5"):
        t0 = time.monotonic()
        # The first session opens the hung file by its link (without waiting for the page) ...
        first.evaluate(f"window.location.href = {server.url + '?file=hung.h5&dataset=/model'!r}")
        time.sleep(0.2)
        # ... while a second session loads its page and reads a slice.
        second.goto(server.url + "?file=good.h5&dataset=/model", timeout=TIMEOUT)
        wait_for_picture(second)
        answered = time.monotonic() - t0
        assert "read 30 × 40 cells" in status(second)
        expect(first.locator(".dashapp-error").first).to_contain_text(
            "The filesystem did not answer in 3 s", timeout=TIMEOUT
        )
        told = time.monotonic() - t0
        # The second session still scrubs through slices while the file stays hung.
        before = status(second)
        second.locator(".dashapp-index .noUi-handle").first.focus()
        second.keyboard.press("Home")
        expect(second.locator(".dashapp-status-text").first).not_to_have_text(before)
        print(
            f"second session's picture after {answered:.1f} s (nothing hung: {baseline:.1f} s); "
            f"first session told after {told:.1f} s"
        )
    assert server.alive()


_CRASHING_WRITER = r"""
import os, signal, sys, time
import h5py
with h5py.File(sys.argv[1], "a") as f:  # HDF5's default lock: readers are told it is busy
    d = f["model"]
    d.resize((5, 10, 10))
    d[2:] = 7.0
    f.flush()
    time.sleep(3)  # the browser sees the change while the file is still held ...
    os.kill(os.getpid(), signal.SIGKILL)  # ... then the writer dies without closing it
"""


def test_the_tree_shows_the_current_shape_after_its_writer_dies(serve, page: Page, tmp_path):
    import subprocess
    import sys

    import h5py
    import numpy as np

    root = tmp_path / "live"
    root.mkdir()
    with h5py.File(root / "run.h5", "w") as f:
        f.create_dataset("model", data=np.ones((2, 10, 10), "f4"), maxshape=(None, 10, 10))
    server = serve(root)
    page.goto(server.url + "?file=run.h5&dataset=/model", timeout=TIMEOUT)
    tree = page.locator(".dashapp-tree").first
    expect(tree).to_contain_text("2 × 10 × 10", timeout=TIMEOUT)
    writer = subprocess.run([sys.executable, "-c", _CRASHING_WRITER, str(root / "run.h5")])
    assert writer.returncode == -9  # killed, the file never closed
    expect(tree).to_contain_text("5 × 10 × 10", timeout=TIMEOUT)
    # Two quick writes, then nothing: the tree shows the last one (it is read at most every
    # 2 s; a change inside those 2 s used to be dropped).
    for rows in (6, 7):
        time.sleep(0.5)
        with h5py.File(root / "run.h5", "a") as f:
            f["model"].resize((rows, 10, 10))
    expect(tree).to_contain_text("7 × 10 × 10", timeout=TIMEOUT)
    assert server.alive()
