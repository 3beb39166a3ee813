"""A real producer to follow live: a small SimPEG 3-D gravity inversion writing HDF5 as it runs.

Nothing here is mocked. A synthetic density model (a dense buried body and a light body in a
uniform background, under gentle topography) is forward modelled with
``simpeg.potential_fields.gravity`` onto a grid of stations, noise is added, and the data are
inverted on a ``discretize.TensorMesh`` with padding cells. After every iteration of the
inversion the recovered 3-D model is written to HDF5 and flushed, so a reader following the
file (dashapp's live view, or ``h5py.File(path, "r", swmr=True)`` with ``Dataset.refresh()``)
sees each iteration as it lands::

    python -m dashapp.demo.inversion run.h5 --size demo --delay 1

File layout (``layout="append"``, the default; SWMR)
----------------------------------------------------
The file is created with ``libver="latest"``, every object below is created up front, the
dimension scales are attached, and only then is ``swmr_mode`` switched on: from there on the
writer only resizes datasets and writes raw data, the two things SWMR allows.

``/model``         float32 (n_iter, nz, ny, nx), maxshape (None, nz, ny, nx), one chunk per
                   iteration, fill value NaN; attrs ``units="g/cc"``,
                   ``long_name="density contrast"``. Air cells (above topography) are NaN.
``/x, /y, /z``     float64 cell centres in metres (``units="m"``, ``long_name`` easting,
                   northing, elevation), dimension scales on dims 3, 2, 1 of ``/model``.
``/iteration``     int32 (n_iter,), maxshape (None,), the scale of dim 0 (1, 2, 3, ...).
``/misfit``        float64 (n_iter,) data misfit phi_d; ``/regularization`` (phi_m) and
                   ``/beta`` (trade-off used in that iteration) alike; all on ``/iteration``.
``/true_model``    float32 (nz, ny, nx), the model the data were computed from.
``/observed``      float32 (n_sy, n_sx) observed gravity (mGal) on the station grid, with
                   scales ``/station_y`` and ``/station_x`` (m); NaN until forward modelled.
``/mesh/hx,hy,hz`` cell widths (m); ``/mesh`` attr ``origin`` (x0, y0, z0), the mesh corner.
``/status``        scalar fixed-length ASCII string: ``running``, ``finished``, ``stopped`` or
                   ``failed: <message>``. **The live status.** Rewritten in place, so a SWMR
                   reader sees it change after ``refresh()``.

File attributes: ``producer="dashapp.demo.inversion"``, ``created`` (ISO 8601, UTC),
``target_misfit``, ``status`` and a few settings (``size``, ``layout``, ``seed``, ...).

Why the status is a dataset: HDF5 supports only raw-data writes to existing datasets under
SWMR; attributes (and so dimension scales, which are attributes) are outside what SWMR
guarantees. HDF5 2.0 does not refuse an attribute write in SWMR mode, but a SWMR reader never
sees it: h5py has no ``refresh()`` for groups, and the reader keeps the root group's object
header it read at open. So ``attrs["status"]`` is written as ``"running"`` before SWMR starts
and set to its final value only after the SWMR file is closed, by a short ordinary ``r+``
open. A SWMR reader opened with HDF5's default locking holds a shared lock that refuses that
open: the writer waits up to 2 s for it (a reader that closes on seeing ``/status`` change lets
go at once), then gives up, leaving the attribute at ``"running"``; ``/status`` is the truth.

A writer killed mid-run (even SIGKILL) leaves a file holding every iteration flushed so far.
HDF5 marks such a file as still open for writing, so it opens only with
``h5py.File(path, "r", swmr=True)`` (a plain ``"r"`` open fails with "file is already open for
write (may use <h5clear file> ...)"); ``h5clear -s`` clears the mark.

``layout="groups"``
-------------------
The other common pattern: each iteration is a new group ``/iter_0001/model`` (3-D, the same
scales attached; attrs ``iteration``, ``misfit``, ``regularization``, ``beta``). SWMR cannot
create objects, so here the writer opens the file normally, writes one iteration, and closes
it again, every iteration (with HDF5's ordinary locking: a reader must open the file only
between writes, and the writer waits for up to 30 s for a reader that holds a lock). There is
no ``/model``; the series ``/iteration``, ``/misfit``, ``/regularization``, ``/beta`` and the
``/status`` dataset are kept as in the append layout, and ``attrs["status"]`` is always current.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = [
    "SIZES",
    "InversionSize",
    "InversionSummary",
    "main",
    "run_inversion",
]

PRODUCER = "dashapp.demo.inversion"
#: Width of the fixed-length ``/status`` string (longer failure messages are cut).
STATUS_BYTES = 256
#: Core region of the mesh: 1000 m x 1000 m, 500 m deep below the datum.
CORE_WIDTH = 1000.0
CORE_DEPTH = 500.0
#: Stations sit this far above the topography (m).
STATION_HEIGHT = 5.0
#: How long the ``groups`` writer waits for a reader's lock on the file.
REOPEN_TIMEOUT = 30.0
#: How long the ``append`` writer waits, after closing, to set the final ``status`` attribute.
FINAL_ATTRS_TIMEOUT = 2.0

Callback = Callable[[int, float, float], None]


@dataclass(frozen=True)
class InversionSize:
    """How big one inversion is.

    Attributes
    ----------
    core_cells
        Core cells along x and along y (the core is :data:`CORE_WIDTH` metres wide).
    padding
        Padding cells on each horizontal side and below, each 1.3 times wider than the last.
    stations
        Stations along x and along y (a regular grid over the core).
    max_iterations
        Default iteration limit; the inversion normally stops earlier at the target misfit.
    beta0_ratio
        Ratio of regularization to misfit curvature for the starting trade-off parameter.
    cooling_factor
        Beta is divided by this after every iteration.
    """

    core_cells: int
    padding: int
    stations: int
    max_iterations: int
    beta0_ratio: float
    cooling_factor: float


#: The sizes offered. Measured on 2 cores, without delay, plus ~3-4 s of imports: tiny
#: (14x14x8 cells, 64 stations) 8 iterations in 0.4 s; small (26x26x15 cells, 256 stations)
#: 10 iterations in 3 s; demo (50x50x28 cells, 1296 stations) 14 iterations in ~60 s, the
#: first after ~15 s of computing sensitivities. Each stops at the target misfit.
SIZES: dict[str, InversionSize] = {
    "tiny": InversionSize(10, 2, 8, 15, 10.0, 2.0),
    "small": InversionSize(20, 3, 16, 20, 30.0, 1.8),
    "demo": InversionSize(40, 5, 36, 25, 100.0, 1.6),
}


@dataclass
class InversionSummary:
    """What one run of :func:`run_inversion` did.

    Attributes
    ----------
    path
        The HDF5 file written.
    layout
        ``"append"`` or ``"groups"``.
    status
        ``"finished"``, ``"stopped"`` or ``"failed: <message>"``.
    iterations
        Iterations written.
    misfit, regularization, beta
        phi_d, phi_m and the trade-off parameter of every iteration written.
    target_misfit
        The data misfit the inversion aims for (the number of data).
    shape
        ``(nz, ny, nx)`` of the model.
    seconds
        Wall time of the whole run, including the delays.
    """

    path: Path
    layout: str
    status: str
    iterations: int
    misfit: list[float] = field(default_factory=list)
    regularization: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)
    target_misfit: float = float("nan")
    shape: tuple[int, int, int] = (0, 0, 0)
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# The synthetic survey


def topography(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ground elevation (m) at ``x, y``: a 40 m hill on a gently undulating plain."""
    hill = 40.0 * np.exp(-((x - 150.0) ** 2 + (y + 250.0) ** 2) / (2 * 300.0**2))
    return hill + 15.0 * np.sin(x / 200.0) * np.cos(y / 350.0)


def density_contrast(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The true model (g/cc) at points ``x, y, z``: a dense body and a light body in 0 g/cc."""
    rho = np.zeros(np.broadcast(x, y, z).shape)
    dense = ((x - 180) / 170) ** 2 + ((y + 120) / 140) ** 2 + ((z + 220) / 110) ** 2 < 1
    light = ((x + 250) / 150) ** 2 + ((y - 220) / 200) ** 2 + ((z + 170) / 90) ** 2 < 1
    rho[dense] = 0.4  # e.g. a massive sulphide lens
    rho[light] = -0.3  # e.g. a sediment-filled depression
    return rho


@dataclass
class _Problem:
    mesh: Any  # discretize.TensorMesh
    active: np.ndarray  # bool (n_cells,), below topography
    true_model: np.ndarray  # (n_active,)
    station_x: np.ndarray
    station_y: np.ndarray
    simulation: Any  # gravity.simulation.Simulation3DIntegral

    @property
    def shape(self) -> tuple[int, int, int]:
        nx, ny, nz = self.mesh.shape_cells
        return (nz, ny, nx)

    @property
    def n_data(self) -> int:
        return self.station_x.size * self.station_y.size

    def grid(self, model: np.ndarray) -> np.ndarray:
        """Active-cell model vector -> float32 (nz, ny, nx) with NaN in the air."""
        full = np.full(self.mesh.n_cells, np.nan, dtype=np.float32)
        full[self.active] = model
        # discretize orders cells x fastest, then y, then z: a C-order (nz, ny, nx) array
        return full.reshape(self.shape)


def _build_problem(size: InversionSize) -> _Problem:
    import discretize
    from simpeg import maps
    from simpeg.potential_fields import gravity

    h = CORE_WIDTH / size.core_cells
    n_air = int(np.ceil(60.0 / h))  # the mesh reaches above the highest ground
    nz_core = round(CORE_DEPTH / h) + n_air
    horizontal = [(h, size.padding, -1.3), (h, size.core_cells), (h, size.padding, 1.3)]
    vertical = [(h, size.padding, -1.3), (h, nz_core)]
    mesh = discretize.TensorMesh([horizontal, horizontal, vertical], origin="CCN")
    mesh.origin = mesh.origin + np.r_[0.0, 0.0, n_air * h]

    # Cells whose centre is below the ground (discretize's active_from_xyz does the same from
    # scattered points, but interpolating them takes seconds; the surface here is a formula).
    cc = mesh.cell_centers
    active = cc[:, 2] < topography(cc[:, 0], cc[:, 1])

    half = CORE_WIDTH / 2 - h
    sx = np.linspace(-half, half, size.stations)
    sy = np.linspace(-half, half, size.stations)
    SX, SY = np.meshgrid(sx, sy)  # (ny, nx): data come out y-major, like a map
    locations = np.c_[SX.ravel(), SY.ravel(), topography(SX, SY).ravel() + STATION_HEIGHT]
    receivers = gravity.receivers.Point(locations, components="gz")
    survey = gravity.survey.Survey(gravity.sources.SourceField(receiver_list=[receivers]))

    centres = mesh.cell_centers[active]
    true_model = density_contrast(centres[:, 0], centres[:, 1], centres[:, 2])
    simulation = gravity.simulation.Simulation3DIntegral(
        survey=survey,
        mesh=mesh,
        rhoMap=maps.IdentityMap(nP=int(active.sum())),
        active_cells=active,
        store_sensitivities="ram",
    )
    return _Problem(mesh, active, true_model, sx, sy, simulation)


# --------------------------------------------------------------------------------------------
# Writing HDF5


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _status_bytes(status: str) -> bytes:
    return status.encode("ascii", "replace")[:STATUS_BYTES]


def _scale(f: h5py.Group, name: str, values: np.ndarray, long_name: str) -> h5py.Dataset:
    d = f.create_dataset(name, data=values)
    d.attrs["units"] = "m"
    d.attrs["long_name"] = long_name
    d.make_scale(name)
    return d


def _attach(d: h5py.Dataset, f: h5py.File, names: tuple[str, ...], first: int = 0) -> None:
    for dim, name in enumerate(names, start=first):
        d.dims[dim].attach_scale(f[name])
        d.dims[dim].label = name


def _model_chunks(shape: tuple[int, int, int]) -> tuple[int, int, int, int]:
    nz, ny, nx = shape
    per_layer = ny * nx * 4
    return (1, max(1, min(nz, (1 << 20) // per_layer)), ny, nx)  # at most ~1 MiB a chunk


def _write_static(f: h5py.File, problem: _Problem, attrs: dict[str, Any], layout: str) -> None:
    """Create every object of the file (see the module docstring); data still to come are NaN."""
    mesh = problem.mesh
    f.attrs.update(attrs)
    f.attrs["status"] = "running"
    f.attrs["title"] = "SimPEG 3-D gravity inversion (dashapp demo producer)"
    _scale(f, "x", mesh.cell_centers_x, "easting")
    _scale(f, "y", mesh.cell_centers_y, "northing")
    _scale(f, "z", mesh.cell_centers_z, "elevation")
    _scale(f, "station_x", problem.station_x, "station easting")
    _scale(f, "station_y", problem.station_y, "station northing")
    it = f.create_dataset("iteration", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(256,))
    it.attrs["long_name"] = "iteration"
    it.make_scale("iteration")

    g = f.create_group("mesh")
    for key, widths in zip(("hx", "hy", "hz"), mesh.h, strict=True):
        g.create_dataset(key, data=widths).attrs["units"] = "m"
    g.attrs["origin"] = np.asarray(mesh.origin, dtype=np.float64)
    g.attrs["units"] = "m"
    g.attrs["description"] = "discretize.TensorMesh: 'origin' is the corner (x0, y0, z0)"

    true = f.create_dataset("true_model", data=problem.grid(problem.true_model))
    true.attrs["units"], true.attrs["long_name"] = "g/cc", "true density contrast"
    _attach(true, f, ("z", "y", "x"))

    obs = f.create_dataset(
        "observed",
        shape=(problem.station_y.size, problem.station_x.size),
        dtype=np.float32,
        fillvalue=np.nan,
    )
    obs.attrs["units"], obs.attrs["long_name"] = "mGal", "observed vertical gravity"
    obs.attrs["station_height"] = STATION_HEIGHT
    obs.attrs["sign"] = "SimPEG gz, z up: a dense body gives a negative anomaly"
    _attach(obs, f, ("station_y", "station_x"))

    for name, long_name in (
        ("misfit", "data misfit phi_d"),
        ("regularization", "model norm phi_m"),
        ("beta", "trade-off parameter beta"),
    ):
        d = f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(256,))
        d.attrs["long_name"] = long_name
        d.dims[0].attach_scale(it)
        d.dims[0].label = "iteration"

    if layout == "append":
        nz, ny, nx = problem.shape
        model = f.create_dataset(
            "model",
            shape=(0, nz, ny, nx),
            maxshape=(None, nz, ny, nx),
            dtype=np.float32,
            chunks=_model_chunks(problem.shape),
            fillvalue=np.nan,
        )
        model.attrs["units"], model.attrs["long_name"] = "g/cc", "density contrast"
        model.dims[0].attach_scale(it)
        model.dims[0].label = "iteration"
        _attach(model, f, ("z", "y", "x"), first=1)

    status = f.create_dataset("status", data=_status_bytes("running"), dtype=f"S{STATUS_BYTES}")
    status.attrs["long_name"] = "writer status"
    status.attrs["description"] = (
        "running | finished | stopped | failed: <message>; rewritten in place while the file "
        "is open for SWMR writing (refresh() before reading)"
    )


def _append_series(f: h5py.File, iteration: int, values: dict[str, float]) -> int:
    n = f["iteration"].shape[0] + 1
    for name in ("iteration", *values):
        f[name].resize((n,))
    f["iteration"][n - 1] = iteration
    for name, value in values.items():
        f[name][n - 1] = value
    return n


class _SwmrWriter:
    """``layout="append"``: one file handle in SWMR mode for the whole run."""

    def __init__(self, path: Path, problem: _Problem, attrs: dict[str, Any]) -> None:
        self.path = path
        self.problem = problem
        self.file = h5py.File(path, "w", libver="latest")
        try:
            _write_static(self.file, problem, attrs, layout="append")
            # Everything exists and every scale is attached: from here on, raw data only.
            self.file.swmr_mode = True
            self.file.flush()
        except BaseException:
            self.file.close()
            raise

    def write_observed(self, observed: np.ndarray) -> None:
        self.file["observed"][...] = observed
        self.file.flush()

    def write_iteration(
        self, iteration: int, model: np.ndarray, phi_d: float, phi_m: float, beta: float
    ) -> None:
        f = self.file
        # The model first, the series after: a reader taking len(/misfit) as "done" never
        # meets a row of NaN.
        d = f["model"]
        n = d.shape[0] + 1
        d.resize(n, axis=0)
        d[n - 1] = self.problem.grid(model)
        _append_series(f, iteration, {"misfit": phi_d, "regularization": phi_m, "beta": beta})
        f.flush()

    def close(self, status: str) -> None:
        if self.file.id.valid:
            self.file["status"][()] = _status_bytes(status)
            self.file.flush()
            self.file.close()
        # Attributes are not SWMR data: set the summary attribute with an ordinary open, once
        # readers that hold a lock let go (a reader that stops on "finished" does so at once).
        with contextlib.suppress(OSError), _reopen(self.path, FINAL_ATTRS_TIMEOUT) as f:
            f.attrs["status"] = status
            f.attrs["finished"] = _now()


@contextlib.contextmanager
def _reopen(path: Path, timeout: float = REOPEN_TIMEOUT) -> Iterator[h5py.File]:
    """Open ``path`` for writing, waiting while a reader holds a lock on it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            f = h5py.File(path, "r+", libver="latest")
            break
        except OSError as exc:  # "unable to lock file, errno = 11"
            busy = getattr(exc, "errno", None) in (errno.EAGAIN, errno.EWOULDBLOCK)
            if not (busy or "lock" in str(exc)) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield f
    finally:
        f.close()


class _GroupsWriter:
    """``layout="groups"``: a new group per iteration, opening and closing the file each time."""

    def __init__(self, path: Path, problem: _Problem, attrs: dict[str, Any]) -> None:
        self.path = path
        self.problem = problem
        with h5py.File(path, "w", libver="latest") as f:
            _write_static(f, problem, attrs, layout="groups")

    def write_observed(self, observed: np.ndarray) -> None:
        with _reopen(self.path) as f:
            f["observed"][...] = observed

    def write_iteration(
        self, iteration: int, model: np.ndarray, phi_d: float, phi_m: float, beta: float
    ) -> None:
        with _reopen(self.path) as f:
            g = f.create_group(f"iter_{iteration:04d}")
            g.attrs["iteration"] = iteration
            g.attrs["misfit"] = phi_d
            g.attrs["regularization"] = phi_m
            g.attrs["beta"] = beta
            d = g.create_dataset("model", data=self.problem.grid(model))
            d.attrs["units"], d.attrs["long_name"] = "g/cc", "density contrast"
            _attach(d, f, ("z", "y", "x"))
            _append_series(f, iteration, {"misfit": phi_d, "regularization": phi_m, "beta": beta})

    def close(self, status: str) -> None:
        with _reopen(self.path) as f:
            f["status"][()] = _status_bytes(status)
            f.attrs["status"] = status
            f.attrs["finished"] = _now()


# --------------------------------------------------------------------------------------------
# The inversion


def _directive_class() -> type:
    from simpeg.directives import InversionDirective

    class WriteIteration(InversionDirective):
        """Hands each iteration's model and objective values to ``on_end``; last in the list."""

        def __init__(self, on_end: Callable[[int, np.ndarray, float, float, float], bool]):
            super().__init__()
            self.on_end = on_end
            self.beta_used = float("nan")

        def initialize(self) -> None:
            self.beta_used = float(self.invProb.beta)  # set by BetaEstimate_ByEig just before

        def endIter(self) -> None:
            # BetaSchedule, earlier in the list, has already cooled beta for the next
            # iteration; record the one this iteration's model was found with.
            stop = self.on_end(
                int(self.opt.iter),
                np.asarray(self.opt.xc, dtype=np.float64),
                float(self.invProb.phi_d),
                float(self.invProb.phi_m),
                self.beta_used,
            )
            self.beta_used = float(self.invProb.beta)
            if stop:
                self.opt.stopNextIteration = True

    return WriteIteration


def _quiet_optimizer(**kwargs: Any) -> Any:
    from simpeg import optimization

    class QuietProjectedGNCG(optimization.ProjectedGNCG):
        """ProjectedGNCG without its printed table: the caller reports iterations its own way."""

        def printInit(self, inLS: bool = False) -> None:
            pass

        def printIter(self, inLS: bool = False) -> None:
            pass

        def printDone(self, inLS: bool = False) -> None:
            pass

    return QuietProjectedGNCG(**kwargs)


@contextlib.contextmanager
def _frozen_gc() -> Iterator[None]:
    # SimPEG's evalFunction runs gc.collect() at every evaluation; with discretize's matplotlib
    # imports a full collection takes ~0.1 s, most of a small inversion's run time. Freezing
    # the objects that exist now takes them out of those collections for the run.
    if gc.get_freeze_count():  # the caller froze already; leave its choice alone
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_inversion(
    path: str | os.PathLike[str],
    size: str = "demo",
    max_iterations: int | None = None,
    seed: int = 0,
    delay: float = 0.0,
    layout: str = "append",
    stop_event: threading.Event | None = None,
    on_iteration: Callback | None = None,
) -> InversionSummary:
    """Run a 3-D gravity inversion of synthetic data, writing every iteration to ``path``.

    Parameters
    ----------
    path
        The HDF5 file to write (replaced if it exists). See the module docstring for its layout.
    size
        ``"tiny"`` (a few seconds, for tests), ``"small"`` or ``"demo"`` (about a minute on
        two cores, 10-15 iterations); see :data:`SIZES`.
    max_iterations
        Iteration limit; by default that of the size. The inversion stops earlier once the
        data misfit reaches the target (the number of data).
    seed
        Seeds the data noise and the eigenvalue estimate of the starting beta.
    delay
        Seconds to wait after writing each iteration, to make a demo watchable.
    layout
        ``"append"``: one growing ``/model`` written with SWMR. ``"groups"``: a new group
        ``/iter_NNNN`` per iteration, the file closed between iterations (no SWMR).
    stop_event
        When set, the inversion stops after the iteration it is in and the status becomes
        ``"stopped"``.
    on_iteration
        Called as ``on_iteration(iteration, phi_d, phi_m)`` after each iteration is written,
        from the thread running the inversion.

    Returns
    -------
    InversionSummary
        What was written. The status is ``"finished"`` once the target misfit or the iteration
        limit is reached, ``"stopped"`` after ``stop_event`` (or Ctrl-C, which propagates). If
        the inversion raises, the file's status becomes ``"failed: <message>"`` and the
        exception propagates.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    if layout not in ("append", "groups"):
        raise ValueError(f"layout must be 'append' or 'groups', not {layout!r}")
    spec = SIZES[size]
    max_iterations = spec.max_iterations if max_iterations is None else int(max_iterations)
    if max_iterations < 1:
        raise ValueError("max_iterations must be at least 1")
    stop_event = stop_event if stop_event is not None else threading.Event()
    path = Path(path)
    start = time.perf_counter()

    from simpeg import data, data_misfit, directives, inverse_problem, inversion, regularization

    problem = _build_problem(spec)
    summary = InversionSummary(
        path=path,
        layout=layout,
        status="running",
        iterations=0,
        target_misfit=float(problem.n_data),
        shape=problem.shape,
    )
    attrs = {
        "producer": PRODUCER,
        "created": _now(),
        "target_misfit": summary.target_misfit,
        "size": size,
        "layout": layout,
        "seed": seed,
        "max_iterations": max_iterations,
        "method": "SimPEG 3-D gravity inversion, L2 (smallness + smoothness), ProjectedGNCG",
    }
    writer: _SwmrWriter | _GroupsWriter
    writer = (_SwmrWriter if layout == "append" else _GroupsWriter)(path, problem, attrs)

    def on_end(iteration: int, model: np.ndarray, phi_d: float, phi_m: float, beta: float) -> bool:
        writer.write_iteration(iteration, model, phi_d, phi_m, beta)
        summary.iterations += 1
        summary.misfit.append(phi_d)
        summary.regularization.append(phi_m)
        summary.beta.append(beta)
        if on_iteration is not None:
            on_iteration(iteration, phi_d, phi_m)
        if delay > 0:
            stop_event.wait(delay)
        return stop_event.is_set()

    failed = True
    try:
        with _frozen_gc():
            rng = np.random.default_rng(seed)
            clean = problem.simulation.dpred(problem.true_model)  # computes the sensitivities
            std = 0.02 * float(np.abs(clean).max())
            observed = clean + rng.normal(0.0, std, clean.shape)
            writer.write_observed(observed.reshape(problem.station_y.size, -1))

            n_active = problem.true_model.size
            survey_data = data.Data(
                problem.simulation.survey,
                dobs=observed,
                standard_deviation=np.full(observed.shape, std),
            )
            misfit = data_misfit.L2DataMisfit(data=survey_data, simulation=problem.simulation)
            reg = regularization.WeightedLeastSquares(
                problem.mesh, active_cells=problem.active, reference_model=np.zeros(n_active)
            )
            opt = _quiet_optimizer(
                maxIter=max_iterations,
                lower=-1.0,
                upper=1.0,
                maxIterLS=20,
                cg_maxiter=10,
                cg_rtol=1e-3,
                cg_atol=0.0,
            )
            problem_ = inverse_problem.BaseInvProblem(misfit, reg, opt, print_version=False)
            directive_list = [
                # sensitivity weighting: gravity has no depth resolution of its own
                directives.UpdateSensitivityWeights(every_iteration=False),
                directives.BetaEstimate_ByEig(beta0_ratio=spec.beta0_ratio, random_seed=seed),
                directives.BetaSchedule(coolingFactor=spec.cooling_factor, coolingRate=1),
                directives.TargetMisfit(chifact=1.0),
                directives.UpdatePreconditioner(update_every_iteration=False),
                _directive_class()(on_end),  # last: sees the finished iteration
            ]
            inv = inversion.BaseInversion(problem_, directiveList=directive_list)
            if not stop_event.is_set():
                inv.run(np.zeros(n_active))
        summary.status = "stopped" if stop_event.is_set() else "finished"
        failed = False
    except KeyboardInterrupt:
        summary.status = "stopped"
        raise
    except BaseException as exc:
        summary.status = f"failed: {type(exc).__name__}: {exc}"
        raise
    finally:
        try:
            writer.close(summary.status)
        except OSError:
            if not failed:  # else the first error is the one worth seeing
                raise
        summary.seconds = time.perf_counter() - start
    return summary


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m dashapp.demo.inversion OUT.h5 [options]``.

    Prints one line per iteration (iteration, phi_d, phi_m, beta, seconds since start).
    SIGTERM or a first Ctrl-C stops after the current iteration (status ``"stopped"``); a
    second Ctrl-C interrupts at once.

    Parameters
    ----------
    argv
        Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        The exit status: 0 finished or stopped, 1 failed, 130 interrupted.
    """
    parser = argparse.ArgumentParser(
        prog="python -m dashapp.demo.inversion",
        description="Run a SimPEG 3-D gravity inversion, writing each iteration to HDF5 (SWMR).",
    )
    parser.add_argument("path", type=Path, help="HDF5 file to write")
    parser.add_argument("--size", choices=list(SIZES), default="demo")
    parser.add_argument("--iterations", type=int, default=None, help="iteration limit")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between iterations")
    parser.add_argument("--layout", choices=["append", "groups"], default="append")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from simpeg.utils import get_logger

    get_logger().setLevel(logging.WARNING)  # SimPEG's INFO lines would mix with ours
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        print("stopping after this iteration ...", file=sys.stderr, flush=True)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    start = time.perf_counter()

    def report(iteration: int, phi_d: float, phi_m: float) -> None:
        print(
            f"iteration {iteration:3d}  phi_d {phi_d:12.2f}  phi_m {phi_m:12.4g}  "
            f"{time.perf_counter() - start:7.2f} s",
            flush=True,
        )

    print(f"writing {args.path} ({args.size}, layout {args.layout})", flush=True)
    try:
        summary = run_inversion(
            args.path,
            size=args.size,
            max_iterations=args.iterations,
            seed=args.seed,
            delay=args.delay,
            layout=args.layout,
            stop_event=stop,
            on_iteration=report,
        )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(
        f"{summary.status}: {summary.iterations} iterations in {summary.seconds:.1f} s, "
        f"phi_d {summary.misfit[-1] if summary.misfit else float('nan'):.2f} "
        f"(target {summary.target_misfit:.0f})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
