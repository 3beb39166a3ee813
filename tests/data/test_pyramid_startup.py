"""A server cleans what crashed overview builds left in the cache when its first page opens."""

from __future__ import annotations

import time
import urllib.request

import h5py
import numpy as np


def test_the_first_page_of_a_server_removes_what_a_crashed_build_left(serve, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    with h5py.File(root / "a.h5", "w") as f:
        f["v"] = np.zeros((4, 8, 8), "f4")
    cache = tmp_path / "cache"
    pyramids = cache / "pyramids"
    stale = pyramids / "deadbeef.tmp-4242-1"  # a build's folder whose process died (no flock)
    stale.mkdir(parents=True)
    (stale / "L1_a0.npy").write_bytes(b"\0" * 4096)
    (pyramids / "deadbeef.lock").touch()

    server = serve(root, env={"DASHAPP_CACHE": str(cache)})
    assert stale.exists()  # nothing cleaned before a page is served
    with urllib.request.urlopen(f"{server.url}?token={server.token}", timeout=30) as page:
        assert page.status == 200
    for _ in range(100):
        if not stale.exists():
            break
        time.sleep(0.1)
    assert not stale.exists()
    assert not (pyramids / "deadbeef.lock").exists()
