"""A sweep of independent 1-D SimPEG inversions on a Dask cluster, stitched into one 3-D model.

This is the workload of the paper dashapp grew from (about 1,000 1-D inversions on 40 Dask
workers through dask-jobqueue), made UI-free and runnable on any Dask cluster:

1. :func:`plan_sweep` lays out a grid of stations over the synthetic 3-D earth of
   :func:`dashapp.demo.workspace.true_model` (a layered earth with a buried conductive ore body,
   a conductive fault zone and a resistive intrusion) and the 1-D layering to invert for.
2. :func:`invert_station` is one task: it takes the true 1-D earth under a station, simulates a
   DC resistivity sounding (``kind="dc"``, Schlumberger array) or a frequency-domain EM sounding
   (``kind="fdem"``, central-loop) with noise, and inverts it with SimPEG. It is a pure function
   of picklable arguments, so ``client.submit`` can send it to any worker.
3. :func:`run_sweep` submits one task per station and, as each completes, writes its recovered
   1-D profile into the stitched model in an HDF5 file (from the calling process only: a single
   writer). The file is in SWMR mode while the sweep runs, so a viewer following it (dashapp's
   slicer, or ``h5py.File(path, "r", swmr=True)``) sees the model fill in station by station.

The HDF5 layout (``nz`` layers, ``ny`` x ``nx`` stations)::

    /model        float32 (nz, ny, nx)  recovered conductivity, S/m; NaN until a station is done
    /true_model   float32 (nz, ny, nx)  the true conductivity averaged over each layer, S/m
    /done         bool    (ny, nx)      station inverted and written
    /failed       bool    (ny, nx)      station's task raised (message in the report / attrs)
    /misfit       float32 (ny, nx)      normalised data misfit phi_d / N (1 = fits the noise)
    /iterations   int16   (ny, nx)      Gauss-Newton iterations used
    /runtime      float32 (ny, nx)      seconds the task took on its worker
    /x, /y        float64 (nx,), (ny,)  station coordinates, m (dimension scales)
    /z            float64 (nz,)         layer centres, elevation in m, negative down (scale)
    /thickness    float64 (nz,)         layer thicknesses, m (the last one is a half-space)

File attributes: ``producer``, ``kind``, ``title``, ``plan`` (JSON), ``status`` (``running``,
then ``finished``, ``cancelled``, ``failed-partially`` or ``aborted`` when the driver itself
raised), and when it ends ``n_done``, ``n_failed``, ``failures`` (JSON) and ``elapsed_s``.

SimPEG is imported inside the task only, so importing this module (in the app's server, say)
stays cheap; the workers need SimPEG and dashapp installed.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import operator
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import h5py
import numpy as np

from dashapp.demo.workspace import true_model
from dashapp.errors import InvalidPlan, StationError, SweepError

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = [
    "PRESETS",
    "PRODUCER",
    "InvalidPlan",
    "StationError",
    "StationResult",
    "SweepError",
    "SweepPlan",
    "SweepReport",
    "invert_station",
    "plan_sweep",
    "run_sweep",
    "synthetic_model",
]

#: The ``producer`` attribute of the files :func:`run_sweep` writes.
PRODUCER = "dashapp.workloads.sweep"

Kind = Literal["dc", "fdem"]
KINDS: tuple[str, ...] = ("dc", "fdem")

#: Sizes of the 1-D problems: ``"default"`` (a few tenths of a second to ~2 s per station)
#: and ``"tiny"`` (tests and demos, ~0.2 s per station).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "n_layers": 20,
        "first_thickness": 15.0,
        "growth": 1.17,
        "n_spacings": 25,
        "n_frequencies": 15,
        "max_iterations": 15,
        "beta_cooling": 2.0,
    },
    "tiny": {
        "n_layers": 10,
        "first_thickness": 40.0,
        "growth": 1.25,
        "n_spacings": 12,
        "n_frequencies": 8,
        "max_iterations": 8,
        "beta_cooling": 5.0,
    },
}

_AB2_RANGE = (10.0, 3000.0)  # Schlumberger half current-electrode spacings, m
_FREQUENCY_RANGE = (1.0, 1.0e4)  # Hz
_SAMPLES_PER_LAYER = 16  # to average the true model over a layer


# ------------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class SweepPlan:
    """Everything a station's task needs: small, immutable and picklable.

    Parameters
    ----------
    x, y
        Station coordinates (easting, northing) in metres; the grid is ``len(y) x len(x)``.
    thicknesses
        Thicknesses (m) of the layers of the 1-D models, top down, without the bottom
        half-space: ``nz = len(thicknesses) + 1`` layers.
    kind
        ``"dc"``: Schlumberger DC resistivity sounding (apparent resistivity at spacings
        ``ab2``); ``"fdem"``: central-loop frequency-domain EM sounding (secondary Hz, real and
        imaginary, at ``frequencies``) with a loop of radius ``loop_radius``.
    noise
        Relative Gaussian noise added to the synthetic data (and assumed in the inversion).
    max_iterations
        Gauss-Newton iterations at most per station.
    seed
        Seeds the noise (with the station index) and the beta estimate: reruns are identical.
    ab2, frequencies, loop_radius
        Survey of ``"dc"`` (half AB spacings, m) and ``"fdem"`` (Hz, m).
    beta_cooling
        Factor the trade-off parameter beta is divided by after every iteration.
    true_dz, true_depth
        The true 1-D earth is simulated on layers ``true_dz`` thick down to ``true_depth`` (m),
        finer than the inversion layers (no inverse crime).
    fail_stations
        ``(iy, ix)`` stations whose task raises :class:`StationError` on purpose (tests).
    """

    x: tuple[float, ...]
    y: tuple[float, ...]
    thicknesses: tuple[float, ...]
    kind: Kind = "dc"
    noise: float = 0.03
    max_iterations: int = 15
    seed: int = 0
    ab2: tuple[float, ...] = ()
    frequencies: tuple[float, ...] = ()
    loop_radius: float = 100.0
    beta_cooling: float = 2.0
    true_dz: float = 10.0
    true_depth: float = 2000.0
    fail_stations: frozenset[tuple[int, int]] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidPlan(f"kind must be one of {KINDS}, not {self.kind!r}")
        if not self.x or not self.y:
            raise InvalidPlan("the station grid is empty")
        if not self.thicknesses or min(self.thicknesses) <= 0:
            raise InvalidPlan("thicknesses must be positive and at least one layer")
        if self.kind == "dc" and len(self.ab2) < 3:
            raise InvalidPlan("a DC sounding needs at least 3 spacings (ab2)")
        if self.kind == "fdem" and len(self.frequencies) < 2:
            raise InvalidPlan("an FDEM sounding needs at least 2 frequencies")
        if not 0 < self.noise < 1:
            raise InvalidPlan(f"noise is relative: 0 < noise < 1, not {self.noise}")
        if self.max_iterations < 1:
            raise InvalidPlan("max_iterations must be at least 1")
        if self.true_depth <= sum(self.thicknesses):
            raise InvalidPlan("true_depth must reach below the inversion layers")
        object.__setattr__(
            self, "fail_stations", frozenset((int(a), int(b)) for a, b in self.fail_stations)
        )

    @property
    def ny(self) -> int:
        """Stations along y."""
        return len(self.y)

    @property
    def nx(self) -> int:
        """Stations along x."""
        return len(self.x)

    @property
    def nz(self) -> int:
        """Layers of each 1-D model (including the bottom half-space)."""
        return len(self.thicknesses) + 1

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the stitched model, ``(nz, ny, nx)``."""
        return (self.nz, self.ny, self.nx)

    @property
    def n_stations(self) -> int:
        """Number of stations (tasks)."""
        return self.ny * self.nx

    @property
    def layer_thicknesses(self) -> np.ndarray:
        """Thickness of all ``nz`` layers (the half-space counted as thick as the one above)."""
        h = np.asarray(self.thicknesses, dtype=float)
        return np.r_[h, h[-1]]

    @property
    def z(self) -> np.ndarray:
        """Layer centres as elevation (m, negative down), ``(nz,)``."""
        h = self.layer_thicknesses
        return -(np.cumsum(h) - h / 2)

    def stations(self) -> Iterator[tuple[int, int]]:
        """All ``(iy, ix)`` in row-major order (the order the tasks are submitted in)."""
        return itertools.product(range(self.ny), range(self.nx))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the plan (stored in the output file's ``plan`` attribute)."""
        d = asdict(self)
        d["fail_stations"] = sorted([list(s) for s in self.fail_stations])
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def plan_sweep(
    ny: int = 25,
    nx: int = 40,
    kind: Kind = "dc",
    *,
    preset: str = "default",
    extent: tuple[float, float, float, float] = (-900.0, 900.0, -900.0, 900.0),
    n_layers: int | None = None,
    max_iterations: int | None = None,
    noise: float = 0.03,
    seed: int = 0,
    fail_stations: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset(),
) -> SweepPlan:
    """Lay out a sweep: an ``ny x nx`` station grid over the synthetic model and its 1-D layers.

    The default, 25 x 40 = 1,000 stations, is the size of the paper's sweep.

    Parameters
    ----------
    ny, nx
        Stations along y (northing) and x (easting).
    kind
        ``"dc"`` (DC resistivity sounding) or ``"fdem"`` (frequency-domain EM sounding).
    preset
        Problem size, a key of :data:`PRESETS`: ``"default"`` or ``"tiny"``.
    extent
        ``(xmin, xmax, ymin, ymax)`` of the station grid, m (the model spans about +-1000 m).
    n_layers
        Layers of the 1-D models (default from the preset); thicknesses grow with depth.
    max_iterations
        Gauss-Newton iterations at most per station (default from the preset).
    noise
        Relative noise of the synthetic data.
    seed
        Random seed (noise and beta estimate).
    fail_stations
        Stations whose task raises on purpose, to see failures reported (tests, demos).

    Returns
    -------
    SweepPlan
        The plan to pass to :func:`run_sweep` or :func:`invert_station`.
    """
    if preset not in PRESETS:
        raise InvalidPlan(f"preset must be one of {sorted(PRESETS)}, not {preset!r}")
    if ny < 1 or nx < 1:
        raise InvalidPlan(f"the station grid needs ny, nx >= 1, not {ny} x {nx}")
    p = PRESETS[preset]
    nz = int(n_layers or p["n_layers"])
    if nz < 2:
        raise InvalidPlan("n_layers must be at least 2")
    # Keep the preset's total depth when the number of layers changes.
    growth = p["growth"] ** ((p["n_layers"] - 1) / (nz - 1))
    depth = p["first_thickness"] * np.sum(p["growth"] ** np.arange(p["n_layers"] - 1))
    first = depth / np.sum(growth ** np.arange(nz - 1))
    thicknesses = tuple(float(t) for t in first * growth ** np.arange(nz - 1))
    xmin, xmax, ymin, ymax = extent
    return SweepPlan(
        x=tuple(float(v) for v in np.linspace(xmin, xmax, nx)),
        y=tuple(float(v) for v in np.linspace(ymin, ymax, ny)),
        thicknesses=thicknesses,
        kind=kind,
        noise=noise,
        max_iterations=int(max_iterations or p["max_iterations"]),
        seed=seed,
        ab2=tuple(float(v) for v in np.geomspace(*_AB2_RANGE, p["n_spacings"])),
        frequencies=tuple(float(v) for v in np.geomspace(*_FREQUENCY_RANGE, p["n_frequencies"])),
        beta_cooling=float(p["beta_cooling"]),
        fail_stations=frozenset(fail_stations),
    )


# ------------------------------------------------------------------------------- true model
def _layer_average(plan: SweepPlan, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """True conductivity averaged (geometric mean) over each layer: ``(nz, len(y), len(x))``."""
    h = plan.layer_thicknesses
    tops = np.r_[0.0, np.cumsum(h)[:-1]]
    frac = (np.arange(_SAMPLES_PER_LAYER) + 0.5) / _SAMPLES_PER_LAYER
    depths = (tops[:, None] + h[:, None] * frac[None, :]).ravel()
    sigma, _ = true_model(-depths, y, x)
    logs = np.log(sigma.astype(float)).reshape(plan.nz, _SAMPLES_PER_LAYER, len(y), len(x))
    return np.exp(logs.mean(axis=1))


def synthetic_model(plan: SweepPlan) -> np.ndarray:
    """The true conductivity (S/m) on the plan's layers and stations, ``(nz, ny, nx)`` float32.

    Each value is the geometric mean of :func:`dashapp.demo.workspace.true_model` over the layer
    under the station: the best a 1-D inversion on these layers could recover.
    """
    return _layer_average(plan, np.asarray(plan.y), np.asarray(plan.x)).astype(np.float32)


def _fine_column(plan: SweepPlan, x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
    """The true 1-D earth under ``(x, y)`` on fine layers: (thicknesses, conductivity)."""
    n = int(np.ceil(plan.true_depth / plan.true_dz))
    h = np.full(n, plan.true_dz)
    centres = -(np.arange(n + 1) + 0.5) * plan.true_dz  # the last one samples the half-space
    sigma, _ = true_model(centres, np.array([y]), np.array([x]))
    return h, sigma[:, 0, 0].astype(float)


# -------------------------------------------------------------------------------- the task
@dataclass
class StationResult:
    """One station's inversion, as returned by :func:`invert_station`.

    Attributes
    ----------
    iy, ix
        Station index in the grid; ``x``, ``y`` its coordinates (m).
    sigma
        Recovered conductivity (S/m) of the ``nz`` layers, top down.
    true_sigma
        True conductivity averaged over the same layers (S/m).
    dobs, dpred
        Observed (noisy synthetic) and predicted data.
    phi_d
        Data misfit ``||(dpred - dobs) / std||^2``; ``n_data`` is its expected value.
    iterations
        Gauss-Newton iterations run.
    runtime
        Seconds the task took (simulation and inversion).
    host
        ``hostname:pid`` of the process that ran it.
    """

    iy: int
    ix: int
    x: float
    y: float
    sigma: np.ndarray
    true_sigma: np.ndarray
    dobs: np.ndarray
    dpred: np.ndarray
    phi_d: float
    n_data: int
    iterations: int
    runtime: float
    host: str

    @property
    def misfit(self) -> float:
        """Normalised misfit ``phi_d / n_data``: about 1 when the data are fit to their noise."""
        return self.phi_d / self.n_data


class _QuietThreads(logging.Filter):
    """Drop SimPEG's log records emitted from threads inside :func:`_quiet_simpeg`."""

    active = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.active, "on", False)


@contextlib.contextmanager
def _quiet_simpeg() -> Iterator[None]:
    # SimPEG logs INFO lines to stderr for every inversion; a thousand tasks would flood the
    # worker logs. The filter is per thread, so it never hides other threads' messages.
    logger = logging.getLogger("SimPEG")
    if not any(isinstance(f, _QuietThreads) for f in logger.filters):
        logger.addFilter(_QuietThreads())
    previous = getattr(_QuietThreads.active, "on", False)
    _QuietThreads.active.on = True
    try:
        yield
    finally:
        _QuietThreads.active.on = previous


@functools.cache
def _simpeg_classes() -> tuple[type, type]:
    """An inverse problem and an optimiser that neither print nor call ``gc.collect()``."""
    import scipy.sparse as sp
    from simpeg import inverse_problem, optimization

    class QuietInexactGaussNewton(optimization.InexactGaussNewton):
        """SimPEG's inexact Gauss-Newton without its per-iteration table on stdout."""

        def printInit(self, inLS: bool = False) -> None:
            pass

        def printIter(self, inLS: bool = False) -> None:
            pass

        def printDone(self, inLS: bool = False) -> None:
            pass

    class LeanInvProblem(inverse_problem.BaseInvProblem):
        """``BaseInvProblem`` whose ``evalFunction`` skips ``gc.collect()``.

        SimPEG collects garbage on every evaluation; in a process that imported SimPEG's
        dependencies (matplotlib, pandas, numba: ~200,000 objects) each collection takes
        ~0.15 s, which is over 90 % of a small 1-D inversion. Otherwise the same computation
        (without the ``print_type="ubc"`` bookkeeping).
        """

        def evalFunction(self, m: np.ndarray, return_g: bool = True, return_H: bool = True) -> Any:
            self.model = m
            f = self.getFields(m, store=(return_g is False and return_H is False))
            phi_d = self.dmisfit(m, f=f)
            self.dpred = self.get_dpred(m, f=f)
            phi_m = self.reg(m)
            self.phi_d, self.phi_d_last = phi_d, self.phi_d
            self.phi_m, self.phi_m_last = phi_m, self.phi_m
            out: tuple[Any, ...] = (phi_d + self.beta * phi_m,)
            if return_g:
                out += (self.dmisfit.deriv(m, f=f) + self.beta * self.reg.deriv(m),)
            if return_H:

                def h_fun(v: np.ndarray) -> np.ndarray:
                    return self.dmisfit.deriv2(m, v, f=f) + self.beta * self.reg.deriv2(m, v=v)

                out += (sp.linalg.LinearOperator((m.size, m.size), h_fun, dtype=m.dtype),)
            return out if len(out) > 1 else out[0]

    return LeanInvProblem, QuietInexactGaussNewton


def _dc_survey(plan: SweepPlan) -> Any:
    from simpeg.electromagnetics.static import resistivity as dc

    sources = []
    for a in plan.ab2:
        mn = a / 5.0  # Schlumberger-like: potential dipole a fifth of the current spacing
        rx = dc.receivers.Dipole(
            np.array([-mn / 2, 0.0, 0.0]),
            np.array([mn / 2, 0.0, 0.0]),
            data_type="apparent_resistivity",
        )
        sources.append(dc.sources.Dipole([rx], np.array([-a, 0.0, 0.0]), np.array([a, 0.0, 0.0])))
    return dc.Survey(sources)


def _fdem_survey(plan: SweepPlan) -> Any:
    from simpeg.electromagnetics import frequency_domain as fdem

    loc = np.array([[0.0, 0.0, 0.5]])
    receivers = [
        fdem.receivers.PointMagneticFieldSecondary(loc, orientation="z", component=c)
        for c in ("real", "imag")
    ]
    sources = [
        fdem.sources.CircularLoop(receivers, frequency=f, location=loc[0], radius=plan.loop_radius)
        for f in plan.frequencies
    ]
    return fdem.survey.Survey(sources)


def _invert(plan: SweepPlan, iy: int, ix: int) -> StationResult:
    from discretize import TensorMesh
    from pymatsolver import SolverLU
    from scipy.sparse import csc_matrix
    from simpeg import data, data_misfit, directives, inversion, maps, regularization

    lean_problem, quiet_optimizer = _simpeg_classes()
    t0 = time.perf_counter()  # after the imports: a worker's first task pays SimPEG's (~3 s)
    x, y = plan.x[ix], plan.y[iy]
    h_fine, sigma_fine = _fine_column(plan, x, y)
    rng = np.random.default_rng([plan.seed, iy, ix])
    h = np.asarray(plan.thicknesses, dtype=float)
    nz = plan.nz

    if plan.kind == "dc":
        from simpeg.electromagnetics.static.resistivity import Simulation1DLayers

        survey = _dc_survey(plan)
        truth = Simulation1DLayers(
            survey=survey, rhoMap=maps.IdentityMap(nP=sigma_fine.size), thicknesses=h_fine
        )
        clean = truth.dpred(1.0 / sigma_fine)
        std = plan.noise * np.abs(clean)
        dobs = clean + std * rng.standard_normal(clean.size)
        # The model is log(resistivity); start from the median apparent resistivity.
        sim = Simulation1DLayers(survey=survey, rhoMap=maps.ExpMap(nP=nz), thicknesses=h)
        m_ref = np.full(nz, np.log(np.median(np.abs(dobs))))
        sign = -1.0
    else:
        from simpeg.electromagnetics.frequency_domain import Simulation1DLayered

        survey = _fdem_survey(plan)
        truth = Simulation1DLayered(
            survey=survey, sigmaMap=maps.IdentityMap(nP=sigma_fine.size), thicknesses=h_fine
        )
        clean = truth.dpred(sigma_fine)
        std = plan.noise * np.abs(clean) + 0.01 * np.median(np.abs(clean))
        dobs = clean + std * rng.standard_normal(clean.size)
        # The model is log(conductivity); start from the best-fitting half-space.
        sim = Simulation1DLayered(survey=survey, sigmaMap=maps.ExpMap(nP=nz), thicknesses=h)
        candidates = np.log(np.geomspace(1e-4, 1.0, 17))
        fits = [np.sum(((sim.dpred(np.full(nz, c)) - dobs) / std) ** 2) for c in candidates]
        m_ref = np.full(nz, candidates[int(np.argmin(fits))])
        sign = 1.0

    observed = data.Data(survey, dobs=dobs, standard_deviation=std)
    dmis = data_misfit.L2DataMisfit(data=observed, simulation=sim)
    mesh = TensorMesh([plan.layer_thicknesses])
    reg = regularization.WeightedLeastSquares(
        mesh, alpha_s=1e-2, alpha_x=1.0, reference_model=m_ref
    )
    opt = quiet_optimizer(maxIter=plan.max_iterations, cg_maxiter=30)
    # SimPEG's default CG preconditioner (the regularisation's Hessian, LU-factored), built
    # here to avoid the warnings its generic construction emits.
    opt.bfgsH0 = SolverLU(csc_matrix(reg.deriv2(m_ref)))
    problem = lean_problem(dmis, reg, opt, print_version=False, init_bfgs=False)
    steps = [
        directives.BetaEstimate_ByEig(beta0_ratio=1.0, random_seed=plan.seed),
        directives.BetaSchedule(coolingFactor=plan.beta_cooling, coolingRate=1),
        directives.TargetMisfit(chifact=1.0),
    ]
    with _quiet_simpeg():
        m = inversion.BaseInversion(problem, steps).run(m_ref)
    dpred = sim.dpred(m)
    sigma = np.exp(sign * m)
    if not np.all(np.isfinite(sigma)):
        raise FloatingPointError("the recovered model is not finite")
    return StationResult(
        iy=iy,
        ix=ix,
        x=x,
        y=y,
        sigma=sigma,
        true_sigma=_layer_average(plan, np.array([y]), np.array([x]))[:, 0, 0],
        dobs=dobs,
        dpred=dpred,
        phi_d=float(np.sum(((dpred - dobs) / std) ** 2)),
        n_data=int(dobs.size),
        iterations=int(opt.iter),
        runtime=time.perf_counter() - t0,
        host=f"{socket.gethostname()}:{os.getpid()}",
    )


def invert_station(plan: SweepPlan, iy: int, ix: int) -> StationResult:
    """Simulate and invert the 1-D sounding at station ``(iy, ix)``: one task of the sweep.

    A pure function of picklable arguments (nothing global is read), for ``client.submit``.

    Parameters
    ----------
    plan
        The sweep's plan (:func:`plan_sweep`).
    iy, ix
        Station index along y and x.

    Returns
    -------
    StationResult
        Recovered and true 1-D conductivity, data, misfit, iterations and runtime.

    Raises
    ------
    IndexError
        The station is outside the plan's grid.
    StationError
        The station is in ``plan.fail_stations``, or its simulation or inversion failed (the
        message names the station and the cause).
    """
    iy, ix = operator.index(iy), operator.index(ix)
    if not (0 <= iy < plan.ny and 0 <= ix < plan.nx):
        raise IndexError(
            f"station (iy={iy}, ix={ix}) is outside the {plan.ny} x {plan.nx} station grid"
        )
    where = f"station (iy={iy}, ix={ix}) at x={plan.x[ix]:.0f} m, y={plan.y[iy]:.0f} m"
    if (iy, ix) in plan.fail_stations:
        raise StationError(f"{where}: injected failure (plan.fail_stations)")
    try:
        return _invert(plan, iy, ix)
    except Exception as exc:
        raise StationError(
            f"{where}: the {plan.kind} inversion failed: {type(exc).__name__}: {exc}"
        ) from exc


# ------------------------------------------------------------------------ the stitched file
def _scale(f: h5py.File, name: str, values: np.ndarray, long_name: str) -> h5py.Dataset:
    d = f.create_dataset(name, data=np.asarray(values, dtype=np.float64))
    d.attrs["units"] = "m"
    d.attrs["long_name"] = long_name
    d.make_scale(name)
    return d


def _create(path: Path, plan: SweepPlan) -> h5py.File:
    """Create the whole layout, switch to SWMR mode, then move the file to ``path``.

    The file is built under a temporary name next to ``path`` and renamed into place only once
    it is complete and in SWMR mode: a viewer never finds a half-built file (in another process
    HDF5's lock would hide it, but in this one HDF5 would share the open file), and a viewer
    still showing an older file at ``path`` keeps a consistent view until it reopens.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    f = h5py.File(tmp, "w", libver="latest")
    try:
        f.attrs["producer"] = PRODUCER
        f.attrs["kind"] = plan.kind
        f.attrs["status"] = "running"
        f.attrs["title"] = f"Stitched 1-D {plan.kind.upper()} inversions ({plan.ny} x {plan.nx})"
        f.attrs["plan"] = json.dumps(plan.to_dict())
        f.attrs["n_stations"] = plan.n_stations
        # Set when the sweep ends. Created now: a SWMR writer must not add attributes, only
        # change existing ones (in place, see _finalise).
        f.attrs["n_done"] = np.int64(0)
        f.attrs["n_failed"] = np.int64(0)
        f.attrs["failures"] = "[]"
        f.attrs["elapsed_s"] = np.float64(np.nan)
        z = _scale(f, "z", plan.z, "elevation (layer centre)")
        y = _scale(f, "y", np.asarray(plan.y), "northing")
        x = _scale(f, "x", np.asarray(plan.x), "easting")
        t = f.create_dataset("thickness", data=plan.layer_thicknesses)
        t.attrs["units"] = "m"
        t.attrs["long_name"] = "layer thickness (the last layer is a half-space)"
        t.dims[0].attach_scale(z)
        t.dims[0].label = "z"
        nz, ny, nx = plan.shape
        chunks3 = (nz, min(ny, 32), min(nx, 32))
        chunks2 = (min(ny, 256), min(nx, 256))
        nan3 = np.full(plan.shape, np.nan, dtype=np.float32)
        nan2 = np.full((ny, nx), np.nan, dtype=np.float32)
        # Written in full now (not left to the fill value), so that every chunk exists before
        # SWMR mode starts and writing a station only overwrites raw data.
        specs: list[tuple[str, np.ndarray, str, str, tuple[int, ...]]] = [
            ("model", nan3, "S/m", "recovered conductivity", chunks3),
            ("true_model", synthetic_model(plan), "S/m", "true conductivity", chunks3),
            ("done", np.zeros((ny, nx), bool), "", "station inverted", chunks2),
            ("failed", np.zeros((ny, nx), bool), "", "station failed", chunks2),
            ("misfit", nan2, "", "normalised data misfit phi_d/N", chunks2),
            ("iterations", np.zeros((ny, nx), np.int16), "", "Gauss-Newton iterations", chunks2),
            ("runtime", nan2, "s", "task runtime", chunks2),
        ]
        for name, values, units, long_name, chunks in specs:
            fill = np.nan if values.dtype.kind == "f" else None
            d = f.create_dataset(name, data=values, chunks=chunks, fillvalue=fill)
            d.attrs["units"] = units
            d.attrs["long_name"] = long_name
            scales = (z, y, x) if d.ndim == 3 else (y, x)
            for dim, scale in zip(d.dims, scales, strict=True):
                dim.attach_scale(scale)
                dim.label = scale.name.lstrip("/")
        f.swmr_mode = True
        f.flush()
        os.replace(tmp, path)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise
    return f


def _write(f: h5py.File, r: StationResult) -> None:
    f["model"][:, r.iy, r.ix] = r.sigma.astype(np.float32)
    f["misfit"][r.iy, r.ix] = np.float32(r.misfit)
    f["iterations"][r.iy, r.ix] = r.iterations
    f["runtime"][r.iy, r.ix] = np.float32(r.runtime)
    f.flush()  # the data first, then the flag: a reader that sees done=True sees the data
    f["done"][r.iy, r.ix] = True
    f.flush()


def _finalise(f: h5py.File, attrs: dict[str, Any]) -> None:
    # Still in the SWMR session: the attributes exist already and are changed in place
    # (``modify``; ``attrs[k] = v`` would delete and re-create them). Closing and reopening the
    # file for writing instead would fail while any reader holds HDF5's file lock (h5py's
    # default, with swmr=True too) or, in this process, has the file open read-only.
    for key, value in attrs.items():
        f.attrs.modify(key, value)
    f.flush()


# ------------------------------------------------------------------------------- the driver
@dataclass
class SweepReport:
    """What :func:`run_sweep` did.

    Attributes
    ----------
    out_path
        The stitched HDF5 file.
    status
        ``finished``, ``cancelled`` or ``failed-partially`` (also the file's ``status``).
    total, n_done, n_failed
        Stations planned, written and failed; the rest (``n_cancelled``) never ran to the end.
    failures
        ``(iy, ix, message)`` of each failed station.
    elapsed
        Wall-clock seconds of the whole sweep, including writing.
    station_runtimes
        Seconds each written station's task took on its worker.
    run_id
        The tasks' keys are ``("invert_station-<run_id>", iy, ix)``.
    """

    out_path: Path
    status: str
    total: int
    n_done: int
    n_failed: int
    failures: list[tuple[int, int, str]]
    elapsed: float
    station_runtimes: list[float] = field(default_factory=list)
    run_id: str = ""

    @property
    def n_cancelled(self) -> int:
        """Stations neither written nor failed (cancelled before they finished)."""
        return self.total - self.n_done - self.n_failed


def _message(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def run_sweep(
    client: Client,
    plan: SweepPlan,
    out_path: str | os.PathLike[str],
    on_progress: Callable[[int, int, int], Any] | None = None,
    cancel: threading.Event | None = None,
    batch: int | None = None,
    poll: float = 0.05,
) -> SweepReport:
    """Run one :func:`invert_station` task per station on ``client``'s cluster; stitch as they end.

    Results are written into ``out_path`` by this process only, as each task completes, and the
    file is flushed after every station (SWMR mode) so viewers can follow it.

    Parameters
    ----------
    client
        A ``distributed.Client`` (LocalCluster, SLURMCluster, ...).
    plan
        The sweep (:func:`plan_sweep`).
    out_path
        HDF5 file to write; see the module docstring for its layout. An existing file is
        replaced (atomically, once the new one is ready to be read).
    on_progress
        Called as ``on_progress(done, total, failed)`` once at the start and after each
        station, from this thread.
    cancel
        When set, the remaining tasks are cancelled (``client.cancel``), results already
        finished are still written, and the sweep ends with status ``"cancelled"``.
    batch
        At most this many tasks submitted at once (topped up as they finish), e.g. to keep the
        scheduler light with very many stations; ``None`` submits all at once.
    poll
        Seconds between checks of ``cancel`` while no task finishes.

    Returns
    -------
    SweepReport
        Counts, per-station failures, elapsed time and the output path.

    Raises
    ------
    Exception
        Whatever stopped the driver itself (a lost scheduler, an exception in
        ``on_progress``): the remaining tasks are cancelled, the file gets status ``aborted``.
    """
    from distributed import as_completed

    if batch is not None and batch < 1:
        raise InvalidPlan(f"batch must be at least 1 or None, not {batch}")
    out_path = Path(out_path)
    t0 = time.perf_counter()
    run_id = uuid.uuid4().hex
    name = f"invert_station-{run_id}"
    total = plan.n_stations
    todo = plan.stations()
    pending: dict[Any, Future] = {}
    completed = as_completed()
    failures: list[tuple[int, int, str]] = []
    runtimes: list[float] = []
    status = "aborted"
    stopped = False

    def submit(n: int) -> None:
        for iy, ix in itertools.islice(todo, n):
            future = client.submit(invert_station, plan, iy, ix, key=(name, iy, ix), pure=False)
            pending[future.key] = future
            completed.add(future)

    def progress() -> None:
        if on_progress is not None:
            on_progress(len(runtimes), total, len(failures))

    def consume(future: Future) -> None:
        pending.pop(future.key, None)
        _, iy, ix = future.key
        result: StationResult | None = None
        if future.status == "finished":
            try:
                result = future.result()
            except Exception as exc:  # e.g. the result was lost with its worker
                error = _message(exc)
        elif future.status == "error":  # the task raised, or its worker died (KilledWorker)
            error = _message(future.exception())
        else:  # cancelled or lost behind our back
            error = f"the task was {future.status}"
        if result is None:
            failures.append((iy, ix, error))
            f["failed"][iy, ix] = True
            f.flush()
        else:
            _write(f, result)
            runtimes.append(result.runtime)

    f = _create(out_path, plan)
    try:
        submit(total if batch is None else batch)
        progress()
        while pending:
            if cancel is not None and cancel.is_set():
                for future in completed.next_batch(block=False):  # already finished: keep
                    consume(future)
                progress()
                stopped = True
                break
            ready = completed.next_batch(block=False)
            if not ready:
                if cancel is not None:
                    cancel.wait(poll)
                else:
                    time.sleep(poll)
                continue
            for future in ready:
                consume(future)
                if batch is not None:
                    submit(1)
                progress()
        if stopped and len(runtimes) + len(failures) < total:
            status = "cancelled"
        else:
            status = "failed-partially" if failures else "finished"
    finally:
        if pending:
            with contextlib.suppress(Exception):
                client.cancel(list(pending.values()))
        completed.clear()
        pending.clear()
        final = {
            "status": status,
            "n_done": np.int64(len(runtimes)),
            "n_failed": np.int64(len(failures)),
            "failures": json.dumps([list(x) for x in failures]),
            "elapsed_s": np.float64(time.perf_counter() - t0),
        }
        try:
            if status == "aborted":  # keep the exception that got us here
                with contextlib.suppress(Exception):
                    _finalise(f, final)
            else:
                _finalise(f, final)
        finally:
            f.close()
    return SweepReport(
        out_path=out_path,
        status=status,
        total=total,
        n_done=len(runtimes),
        n_failed=len(failures),
        failures=failures,
        elapsed=time.perf_counter() - t0,
        station_runtimes=runtimes,
        run_id=run_id,
    )
