"""The decoded-chunk cache's budget: an LRU in bytes, shared out among a server's processes."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import tornado.process

from dashapp.data.chunks import ChunkCache, cache_budget, server_processes

MB = 2**20


def chunk(mb: int) -> np.ndarray:
    return np.zeros(mb * MB, dtype=np.uint8)


def test_resize_keeps_the_most_recently_used_chunks():
    cache = ChunkCache(8 * MB)
    for key in "abcd":
        cache.put((key,), chunk(2))
    assert cache.get(("a",)) is not None  # now the most recent
    cache.resize(4 * MB)
    assert cache.nbytes == 4 * MB
    assert ("a",) in cache
    assert ("d",) in cache
    assert ("b",) not in cache
    cache.put(("e",), chunk(2))
    assert cache.nbytes <= 4 * MB


@pytest.mark.parametrize(
    ("argv", "n"),
    [
        (["panel", "serve", "apps/slicer.py", "--num-procs", "4"], 4),
        (["panel", "serve", "apps/slicer.py", "--num-procs=3", "--args", "--root", "x"], 3),
        (["panel", "serve", "apps/slicer.py", "--num-procs", "0"], None),  # one per core
        (["panel", "serve", "apps/slicer.py"], 1),
    ],
)
def test_a_child_of_a_multi_process_server_knows_how_many_serve(monkeypatch, argv, n):
    assert server_processes(argv) == 1  # not a forked child: alone, whatever the arguments
    monkeypatch.setattr(tornado.process, "_task_id", 0)  # what fork_processes sets
    assert server_processes(argv) == (n if n is not None else os.cpu_count())


def test_the_budget_is_the_servers_shared_out_among_its_processes(monkeypatch):
    monkeypatch.setenv("DASHAPP_CHUNK_CACHE_MB", "512")
    assert cache_budget() == 512 * MB
    monkeypatch.setattr(tornado.process, "_task_id", 1)
    monkeypatch.setattr(sys, "orig_argv", ["panel", "serve", "app.py", "--num-procs", "2"])
    assert cache_budget() == 256 * MB
