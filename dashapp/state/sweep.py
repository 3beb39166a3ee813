"""A 1-D inversion sweep run from the app: its settings, progress and failures as a param model.

:class:`SweepRun` starts :func:`dashapp.workloads.sweep.run_sweep` in a background thread on a
Dask client (the cluster pane's, or a local one), writing the stitched 3-D model under the
served root so the slicer can follow it as it fills in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import param

from ..errors import DashappError

__all__ = ["SweepRun"]

log = logging.getLogger(__name__)


class SweepRun(param.Parameterized):
    """Settings and live progress of one stitched 1-D inversion sweep."""

    ny = param.Integer(default=12, bounds=(1, 200), doc="Stations along y (northing).")
    nx = param.Integer(default=16, bounds=(1, 200), doc="Stations along x (easting).")
    # Labels in the user's words (the buttons show them); the values are the sweep's names.
    kind = param.Selector(
        default="dc",
        objects={"DC resistivity": "dc", "Frequency-domain EM": "fdem"},
        doc="DC resistivity soundings or frequency-domain EM soundings.",
    )
    preset = param.Selector(
        default="default",
        objects={"Full (default)": "default", "Tiny (quick look)": "tiny"},
        doc="Inversion size per station ('tiny' for a quick look).",
    )
    status = param.String(
        default="idle", doc="idle, running, finished, cancelled, failed-partially or error."
    )
    done = param.Integer(default=0, doc="Stations written.")
    failed = param.Integer(default=0, doc="Stations that failed.")
    total = param.Integer(default=0, doc="Stations planned.")
    failures = param.List(default=[], doc="(iy, ix, message) of each failed station.")
    out = param.String(default="", doc="The stitched model's file, relative to the root.")
    message = param.String(default="", doc="What happened, in words.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while a sweep runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(
        self, client: Any, root: str | Path, on_update: Callable[[], None] | None = None
    ) -> str:
        """Start the sweep on ``client``; returns the output file relative to ``root``.

        ``on_update`` is called (from the sweep's thread) after each station, for a UI to
        schedule a redraw on its own loop.
        """
        from ..workloads.sweep import plan_sweep

        if self.running:
            return self.out
        folder = Path(root) / "sweeps"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / time.strftime(f"sweep-{self.kind}-%Y%m%d-%H%M%S.h5")
        plan = plan_sweep(ny=self.ny, nx=self.nx, kind=self.kind, preset=self.preset)
        self._cancel = threading.Event()
        self.param.update(
            status="running",
            done=0,
            failed=0,
            total=self.ny * self.nx,
            failures=[],
            out=str(path.relative_to(root)),
            message=f"submitting {self.ny * self.nx} station inversions",
        )
        self._thread = threading.Thread(
            target=self._run,
            args=(client, plan, path, on_update),
            name="dashapp-sweep",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 30  # the file exists before the first station lands
        while not path.exists() and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.out

    def _run(
        self, client: Any, plan: Any, path: Path, on_update: Callable[[], None] | None
    ) -> None:
        from ..workloads.sweep import run_sweep

        def progress(done: int, total: int, failed: int) -> None:
            self.param.update(
                done=done,
                total=total,
                failed=failed,
                message=f"{done} of {total} stations done, {failed} failed",
            )
            if on_update:
                on_update()

        try:
            # The cluster pane's client is not Dask's default one: make it current here.
            with client.as_current():
                report = run_sweep(client, plan, path, on_progress=progress, cancel=self._cancel)
            self.param.update(
                status=report.status,
                done=report.n_done,
                failed=report.n_failed,
                failures=[list(f) for f in report.failures],
                message=f"{report.status}: {report.n_done} of {report.total} stations in "
                f"{report.elapsed:.0f} s"
                + (f", {report.n_failed} failed" if report.n_failed else ""),
            )
        except DashappError as exc:  # a bad plan, a station's failure the sweep did not absorb
            self.param.update(status="error", message=f"the sweep stopped: {exc}")
        except Exception as exc:  # last line (this thread must end with a status): a lost
            # scheduler, a file that cannot be written; logged with its traceback
            log.warning("the sweep stopped", exc_info=True)
            self.param.update(status="error", message=f"the sweep stopped: {exc}")
        if on_update:
            on_update()

    def cancel(self) -> None:
        """Stop submitting; stations already written stay."""
        self._cancel.set()
        self.message = "cancelling: running stations finish, the others are dropped"
