"""Start the demo's live SimPEG inversion as a separate writer process, one at a time.

The app's "Run a live inversion" button calls :func:`start_inversion`. The inversion runs in its
own process (``python -m dashapp.demo.inversion``), as a simulation would, writing into the
demo workspace's ``live/`` folder; the app then follows the file.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["running_inversion", "start_inversion"]

_LOCK = threading.Lock()
_RUN: tuple[subprocess.Popen, Path] | None = None


def running_inversion() -> Path | None:
    """The file of the demo inversion running now, or None."""
    with _LOCK:
        if _RUN is not None and _RUN[0].poll() is None:
            return _RUN[1]
    return None


def start_inversion(root: str | Path, size: str = "demo", delay: float = 0.5) -> Path:
    """Start a demo inversion writing ``root/live/inversion-<time>.h5``; returns that path.

    If one is already running (on this 2-core machine two would slow each other down), its
    file is returned instead.
    """
    global _RUN
    with _LOCK:
        if _RUN is not None and _RUN[0].poll() is None:
            return _RUN[1]
        folder = Path(root) / "live"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / time.strftime("inversion-%Y%m%d-%H%M%S.h5")
        log = open(path.with_suffix(".log"), "w")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "dashapp.demo.inversion", str(path), "--size", size,
             "--delay", str(delay)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()  # (the writer has its own copy)
        # Reap it as soon as it ends: nothing else waits for it, and an ended child that is
        # never waited for stays in the process table as <defunct> while the server runs.
        threading.Thread(target=proc.wait, name="dashapp-inversion-reaper", daemon=True).start()
        _RUN = (proc, path)
    # The file appears once the writer has created it (before its first iteration).
    deadline = time.monotonic() + 60
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return path
