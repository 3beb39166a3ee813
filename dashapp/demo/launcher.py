"""Start the demo's live SimPEG inversion as a separate writer process, one at a time.

The app's "Run a live inversion" button calls :func:`start_inversion`. The inversion runs in its
own process (``python -m dashapp.demo.inversion``), as a simulation would, writing into the
demo workspace's ``live/`` folder; :func:`inversion_progress` reports how far it got (from the
lines the writer prints, one per iteration, into the log beside the file), so the app can say
"waiting for the first iteration", "iteration 4", "finished: 12 iterations" or the error, and
end its status when the process ends.

``DASHAPP_DEMO_INVERSION_SIZE`` (``tiny``, ``small`` or ``demo``, the default) picks the size
of the inversion the button starts: ``tiny`` runs in seconds, for tests.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .. import settings

__all__ = ["InversionProgress", "inversion_progress", "running_inversion", "start_inversion"]

_LOCK = threading.Lock()
_RUN: tuple[subprocess.Popen, Path] | None = None


@dataclass(frozen=True)
class InversionProgress:
    """How far the demo inversion writing ``path`` got.

    Attributes
    ----------
    path
        The HDF5 file it writes.
    running
        True while the writer process runs.
    iterations
        Iterations written so far (each one is in the file when counted here).
    returncode
        The process's exit status once it has ended (0: finished or stopped), else None.
    problem
        Why it failed, in the writer's words ("failed: ..."), or "".
    """

    path: Path
    running: bool
    iterations: int
    returncode: int | None
    problem: str = ""


def running_inversion() -> Path | None:
    """The file of the demo inversion running now, or None."""
    with _LOCK:
        if _RUN is not None and _RUN[0].poll() is None:
            return _RUN[1]
    return None


def _size() -> str:
    return settings.current().demo_inversion_size


def start_inversion(
    root: str | Path, size: str | None = None, delay: float = 0.5, wait: bool = True
) -> Path:
    """Start a demo inversion writing ``root/live/inversion-<time>.h5``; returns that path.

    If one is already running (on this 2-core machine two would slow each other down), its
    file is returned instead. ``size`` defaults to ``$DASHAPP_DEMO_INVERSION_SIZE`` or
    ``"demo"``. With ``wait``, returns once the writer has created the file (a few seconds:
    Python and SimPEG start first); without, at once (follow it with
    :func:`inversion_progress`).
    """
    global _RUN
    with _LOCK:
        if _RUN is not None and _RUN[0].poll() is None:
            return _RUN[1]
        folder = Path(root) / "live"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / time.strftime("inversion-%Y%m%d-%H%M%S.h5")
        log = open(path.with_suffix(".log"), "w")  # noqa: SIM115 - owned by the process
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dashapp.demo.inversion", str(path),
                 "--size", size or _size(), "--delay", str(delay)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()  # the child has its own copy of the descriptor
        # Reap it as soon as it ends: nothing else waits for it, and an ended child that is
        # never waited for stays in the process table as <defunct> while the server runs.
        threading.Thread(target=proc.wait, name="dashapp-inversion-reaper", daemon=True).start()
        _RUN = (proc, path)
    # The file appears once the writer has created it (before its first iteration).
    deadline = time.monotonic() + 60
    while wait and not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return path


def inversion_progress(path: str | Path | None = None) -> InversionProgress | None:
    """How far the demo inversion writing ``path`` (default: the last one started) got.

    None when this process started no inversion writing ``path``. Reading the progress also
    reaps the writer once it has exited (no ``<defunct>`` process stays behind).
    """
    with _LOCK:
        run = _RUN
    if run is None or (path is not None and Path(path) != run[1]):
        return None
    proc, file = run
    code = proc.poll()
    try:
        lines = file.with_suffix(".log").read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    iterations = sum(1 for line in lines if line.startswith("iteration "))
    problem = ""
    if code not in (None, 0):
        failed = [line for line in lines if line.startswith("failed:")]
        last = [line for line in lines if line.strip()]
        problem = (failed or last or [f"the writer exited with status {code}"])[-1].strip()
        if not problem.startswith("failed"):
            problem = f"failed: {problem}"
    return InversionProgress(file, code is None, iterations, code, problem)
