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


def test_claimed_chunks_stay_when_a_newcomer_would_evict_them():
    """Chunks a reader's latest read needs are not evicted for anyone else's; when nothing
    else can go, the newcomer is not kept (and is counted as refused)."""
    cache = ChunkCache(8 * MB)
    cache.claim("A", [("a",), ("b",)])
    cache.claim("B", [("c",), ("d",)])
    for key in "abcd":
        assert cache.put((key,), chunk(2))
    assert cache.room() == 0
    assert not cache.put(("e",), chunk(2)), "an unclaimed chunk evicted claimed ones"
    assert cache.refused == 1
    assert all((k,) in cache for k in "abcd")
    # A moves on to other chunks: its old ones may go, least recently used first
    cache.claim("A", [("f",)])
    assert cache.room() == 4 * MB
    assert cache.put(("f",), chunk(2))
    assert ("a",) not in cache
    assert all((k,) in cache for k in "bcdf")
    # B's session closes
    cache.release("B")
    assert cache.put(("g",), chunk(2))
    assert ("b",) not in cache  # A's old chunk was the least recently used
    assert cache.put(("h",), chunk(2))
    assert ("c",) not in cache
    assert ("f",) in cache


def test_two_readers_may_claim_the_same_chunk():
    cache = ChunkCache(4 * MB)
    cache.claim("A", [("a",)])
    cache.claim("B", [("a",)])
    cache.put(("a",), chunk(2))
    cache.release("A")
    cache.put(("x",), chunk(2))
    assert cache.put(("y",), chunk(2))
    assert ("x",) not in cache
    assert ("a",) in cache  # B still needs it


def test_a_claim_lapses_when_its_reader_stops_reading(monkeypatch):
    from dashapp.data import chunks

    cache = ChunkCache(4 * MB)
    cache.claim("A", [("a",), ("b",)])
    cache.put(("a",), chunk(2))
    cache.put(("b",), chunk(2))
    assert not cache.put(("c",), chunk(2))
    monkeypatch.setattr(chunks, "CLAIM_SECONDS", 0.0)  # a tab left open, long ago
    assert cache.put(("c",), chunk(2))
    assert ("a",) not in cache


def test_a_smaller_budget_evicts_claimed_chunks_too():
    cache = ChunkCache(8 * MB)
    cache.claim("A", [(k,) for k in "abcd"])
    for key in "abcd":
        cache.put((key,), chunk(2))
    cache.resize(4 * MB)
    assert cache.nbytes == 4 * MB
    assert [(k,) in cache for k in "abcd"] == [False, False, True, True]
