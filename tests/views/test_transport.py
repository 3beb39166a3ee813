"""Every slider step of every session gets its picture: Panel's write-queue race, fixed.

Real ``panel serve apps/slicer.py`` and real websocket sessions, driven over Bokeh's protocol
by ``benchmarks/protocol_client.py`` (what a page sends for a key press on the slice slider,
without a browser, so eight sessions can drag at once on two cores). Before
:func:`dashapp.views.transport.flush_stranded_updates`, this drive stranded 5-8 of its 1,200
pictures in Panel's write queue (three runs against the unfixed server); a stranded picture
only arrives with the session's next event.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import sys
import time
from urllib.parse import parse_qs

import h5py
import numpy as np

from dashapp.views.transport import flush_stranded_updates

from ..conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from protocol_client import ClientLoop, ProtocolSession

SESSIONS, STEPS = 8, 150
STEPS_ONE = 80


def test_the_fix_wraps_panels_dispatcher_once():
    from panel.io import document as pdoc

    assert flush_stranded_updates()
    wrapped = pdoc._dispatch_msgs
    assert flush_stranded_updates()
    assert pdoc._dispatch_msgs is wrapped
    assert not hasattr(wrapped.__wrapped__, "__wrapped__")


def test_every_step_of_eight_sessions_dragging_at_once_gets_its_picture(tmp_path, serve):
    rng = np.random.default_rng(3)
    for i in range(SESSIONS):
        with h5py.File(tmp_path / f"v{i}.h5", "w") as f:
            data = rng.random((64, 256, 256), dtype=np.float32)
            f.create_dataset("volume", data=data, chunks=(16, 64, 64) if i % 2 else None)
    server = serve(tmp_path)
    loop = ClientLoop()
    sessions = [
        ProtocolSession(
            loop,
            f"{server.url}?file=v{i}.h5&dataset=volume&axis=0&index=20&token={server.token}",
            (500, 500),
            f"s{i}",
        ).open(timeout=60)
        for i in range(SESSIONS)
    ]

    def drag(session: ProtocolSession) -> list[tuple[int, float | None, int]]:
        return list(itertools.islice(session.drag(timeout=10), STEPS))

    try:
        with cf.ThreadPoolExecutor(SESSIONS) as pool:
            results = list(pool.map(drag, sessions))
    finally:
        for s in sessions:
            s.close()
        loop.close()
    assert server.alive()
    missing = {
        s.name: [v for v, ms, _ in r if ms is None] for s, r in zip(sessions, results, strict=True)
    }
    assert not any(missing.values()), f"steps whose picture never came: {missing}"
    # Each picture is the 256 x 256 plane, as 16-bit codes (values in [0, 1) under their own
    # min-max colour limits: no outliers), and nothing bigger.
    assert {nbytes for r in results for _, _, nbytes in r} == {256 * 256 * 2}


def test_a_drag_sets_the_address_once_the_hand_rests(tmp_path, serve):
    """The address bar (the link to this view) is written when the view has not changed for
    a quarter second, with the final position; not every quarter second during a drag (each
    write is a location change sent to the browser and echoed back)."""
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["volume"] = np.random.default_rng(5).random((96, 128, 128), dtype=np.float32)
    server = serve(tmp_path)
    loop = ClientLoop()
    session = ProtocolSession(
        loop,
        f"{server.url}?file=v.h5&dataset=volume&axis=0&index=10&token={server.token}",
        (500, 500),
        "s",
        True,
    ).open(timeout=60)
    try:
        session.step(1)
        time.sleep(1.0)
        session.patches.clear()
        t0 = time.perf_counter()
        for _ in range(STEPS_ONE):
            assert session.step(1, timeout=10)[0] is not None
        seconds = time.perf_counter() - t0
        time.sleep(1.5)  # longer than the address bar's wait
    finally:
        session.close()
        loop.close()
    ids = session.ids
    assert ids["location"]
    address = [v for _, ch in session.patches for m, a, v in ch if m == ids["location"]]
    assert address, "the address bar never showed the view"
    assert parse_qs(address[-1].lstrip("?"))["index"] == [str(session.value)]
    # Rewritten during the drag only after a pause of > 0.25 s between two steps (a busy
    # machine); a write every 0.25 s would be about seconds / 0.25 of them.
    assert len(address) <= 3, f"{len(address)} address writes in a {seconds:.1f} s drag"
    assert seconds > 1.0, "the drag was too short to tell a pause from a period"
