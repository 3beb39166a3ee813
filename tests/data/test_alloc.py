"""Freed buffers go back to the OS once return_freed_buffers() ran (glibc), in a subprocess each,
so the test process's allocator is left as it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from dashapp.data.alloc import return_freed_buffers, trim_freed_buffers

# A chunk cache's pattern, in four threads: a 1 MB chunk decoded and freed, a 256 KB reduction of
# it kept in a 100 MB LRU, a 16 MB build array freed; then the cache is cleared.
_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from collections import OrderedDict
    from concurrent.futures import ThreadPoolExecutor
    import numpy as np
    import time
    from dashapp.data.alloc import return_freed_buffers, trim_freed_buffers

    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

    tuned = return_freed_buffers(int(sys.argv[1]))
    trimming = trim_freed_buffers(float(sys.argv[2]))
    big = np.ones(32 << 18, np.float32)
    del big  # a 32 MB buffer freed: glibc's adaptive threshold rises to 32 MB
    base = rss_mb()

    def work(i):
        decoded = np.full(1 << 18, i, np.float32)  # 1 MB
        kept = decoded.reshape(64, 32, 2, 32, 2).mean(axis=(2, 4), dtype=np.float32)
        build = np.empty(4 << 20, np.float32)  # 16 MB
        build[:] = 1
        return kept

    cache, held = OrderedDict(), 0
    with ThreadPoolExecutor(4) as pool:
        for i, kept in enumerate(pool.map(work, range(600))):
            cache[i] = kept
            held += kept.nbytes
            while held > 100 << 20:
                held -= cache.popitem(last=False)[1].nbytes
    cache.clear()
    if trimming:
        time.sleep(3 * trimming)  # a trim or two
    print(json.dumps({"tuned": tuned, "trimming": trimming, "extra_mb": rss_mb() - base}))
    """
)


def _run(threshold_kb: int, trim_s: float = 0) -> dict:
    # glibc's own settings from the environment would fix the threshold for both runs: Dask's
    # Nanny puts MALLOC_TRIM_THRESHOLD_ in os.environ when a test before starts a cluster.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"
    }
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(threshold_kb), str(trim_s)],
        capture_output=True, text=True, timeout=120, check=True, env=env,
    )  # fmt: skip
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_buffers_are_given_back_not_kept_among_the_live_ones():
    plain, tuned = _run(0), _run(128)
    assert plain["tuned"] == 0
    assert tuned["tuned"] == 128 * 1024
    # Everything is freed: with the threshold set, the memory is given back
    assert tuned["extra_mb"] < 40, tuned
    # glibc alone keeps much of it in its arenas (a control: how much depends on its version)
    assert plain["extra_mb"] > tuned["extra_mb"] + 40, (plain, tuned)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_4_mb_threshold_and_trimming_give_freed_buffers_back():
    """The default: buffers under 4 MB (chunks, pictures) stay in malloc's arenas, cheap to
    allocate, and a trim every few seconds gives back what is free among them."""
    untrimmed, trimmed = _run(4096), _run(4096, trim_s=0.2)
    assert trimmed["tuned"] == 4096 * 1024
    assert trimmed["trimming"] == 0.2
    assert trimmed["extra_mb"] < 40, trimmed
    # a control: without the trims the arenas keep some (52-55 MB with glibc 2.36)
    assert untrimmed["extra_mb"] > trimmed["extra_mb"] + 25, (untrimmed, trimmed)


def test_trimming_runs_in_one_thread_and_can_be_switched_off(monkeypatch):
    import threading

    def trimmers() -> int:
        return sum(t.name == "dashapp-malloc-trim" for t in threading.enumerate())

    monkeypatch.setenv("DASHAPP_MALLOC_TRIM_S", "30")
    try:
        assert trim_freed_buffers() == 30
        assert trim_freed_buffers() == 30  # again (every page build): still one thread
        assert trimmers() == 1
    finally:
        assert trim_freed_buffers(0) == 0
    for _ in range(100):  # the old thread sees its stop at once
        if trimmers() == 0:
            break
        time.sleep(0.01)
    assert trimmers() == 0


def test_it_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("DASHAPP_MMAP_THRESHOLD_KB", "0")
    assert return_freed_buffers() == 0
    monkeypatch.setenv("DASHAPP_MMAP_THRESHOLD_KB", "lots")
    assert return_freed_buffers(0) == 0  # an explicit value wins over the environment
