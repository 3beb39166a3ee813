"""Serve the slicer page in-process on a real Bokeh server, open and close sessions, and report
what is left in memory after they end (run by test_app_view in a subprocess, for isolation).

    python sessions_served.py ROOT QUERY_JSON N
"""

from __future__ import annotations

import gc
import json
import socket
import sys
import time
import weakref

import panel as pn
from bokeh.client import pull_session
from panel.links import Callback

from dashapp.app import serve_slicer_page
from dashapp.data.watch import WATCHES


def main() -> None:
    root, query, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    apps: list[weakref.ref] = []

    def page() -> None:
        apps.append(weakref.ref(serve_slicer_page(["--root", root])))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = pn.serve(
        {"slicer": page}, port=port, address="127.0.0.1", threaded=True, show=False,
        unused_session_lifetime_milliseconds=100, check_unused_sessions_milliseconds=100,
        websocket_origin=[f"127.0.0.1:{port}"],
    )  # fmt: skip
    for _ in range(300):  # the threaded server starts in the background
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    registry_before = None
    for i in range(n):
        session = pull_session(url=f"http://127.0.0.1:{port}/slicer", arguments=query)
        time.sleep(0.5)  # the first picture is read and sent
        session.close()
        if i == 0:
            time.sleep(1)
            gc.collect()
            registry_before = len(Callback.registry)
    alive = n
    for _ in range(100):  # sessions are discarded a little after their connection closes
        time.sleep(0.1)
        gc.collect()
        alive = sum(ref() is not None for ref in apps)
        if alive == 0:
            break
    print(
        json.dumps(
            {
                "created": len(apps),
                "alive": alive,
                "watch_subscriptions": len(WATCHES._subs),
                "js_callbacks_after_first": registry_before,
                "js_callbacks_after_all": len(Callback.registry),
            }
        ),
        flush=True,
    )
    server.stop()


if __name__ == "__main__":
    main()
