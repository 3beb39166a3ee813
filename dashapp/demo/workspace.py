"""The built-in demo workspace: a synthetic 3-D subsurface model that looks like the real thing.

``panel serve apps/slicer.py`` with no root opens this. It is written once into the user's cache
directory (atomically, so two servers starting together do not trip over each other) and holds:

``inversion/model.h5``
    A tensor mesh of 25 m core cells with padding cells growing by 1.3 towards the edges (so the
    coordinates are *not* evenly spaced, as in SimPEG/discretize meshes), stored as HDF5 dimension
    scales in metres. ``/true_model`` is a layered earth (conductivity, S/m) with folded
    interfaces, a weathered cover, a buried conductive ore body, a dipping conductive fault zone
    and a resistive intrusion; ``/density`` the matching density contrast; ``/model_history``
    the recovered model of 8 inversion iterations (4-D: iteration, z, y, x) converging on it,
    with ``/misfit`` and ``/regularization`` per iteration.
``survey/data.h5``
    Surface data maps: a gravity anomaly (2-D), a complex EM response (frequency, y, x) and the
    active-cell mask (bool), to try every kind of value the slicer shows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np

from .. import settings

__all__ = [
    "DEMO_VERSION",
    "DEMO_VIEW",
    "default_demo_dir",
    "ensure_demo_workspace",
    "tensor_mesh",
    "write_model",
]

DEMO_VERSION = "2"

#: The view the demo's first page opens on (a deep link's query): a y-section through the last
#: iteration of the recovered model, as in the README's screenshot. A first page that shows
#: data says what the app is for; an empty plot with idle buttons did not (issue 21).
DEMO_VIEW: dict[str, str] = {
    "file": "inversion/model.h5",
    "dataset": "/model_history",
    "axis": "2",
    "index": "43",
    "d0": "7",
    "cmap": "rainbow4",
    "scale": "log",
}


def default_demo_dir() -> Path:
    """Where the demo workspace lives: ``$DASHAPP_CACHE/demo`` or the user's cache dir."""
    return settings.cache_dir() / f"demo-v{DEMO_VERSION}"


def _widths(
    n_core: int,
    n_pad: int,
    core: float,
    factor: float,
    pad_before: bool = True,
    pad_after: bool = True,
) -> np.ndarray:
    pad = core * factor ** np.arange(1, n_pad + 1)
    parts = []
    if pad_before:
        parts.append(pad[::-1])
    parts.append(np.full(n_core, core))
    if pad_after:
        parts.append(pad)
    return np.concatenate(parts)


def tensor_mesh(
    core: float = 25.0,
    shape_core: tuple[int, int, int] = (40, 80, 96),
    n_pad: int = 8,
    factor: float = 1.3,
) -> dict[str, np.ndarray]:
    """Cell widths and centres of a padded tensor mesh (z down to the bottom padding, y, x).

    Returns ``hz, hy, hx`` (widths) and ``z, y, x`` (cell centres in metres, z = elevation,
    surface at 0).
    """
    nz, ny, nx = shape_core
    hz = _widths(nz, n_pad, core, factor, pad_before=True, pad_after=False)
    hy = _widths(ny, n_pad, core, factor)
    hx = _widths(nx, n_pad, core, factor)
    z_edges = -np.cumsum(np.r_[0.0, hz[::-1]])[::-1]  # from the deepest edge up to 0
    y_edges = np.r_[0.0, np.cumsum(hy)] - hy.sum() / 2
    x_edges = np.r_[0.0, np.cumsum(hx)] - hx.sum() / 2
    centre = lambda e: (e[1:] + e[:-1]) / 2  # noqa: E731
    return {
        "hz": hz,
        "hy": hy,
        "hx": hx,
        "z": centre(z_edges),
        "y": centre(y_edges),
        "x": centre(x_edges),
    }


def true_model(z: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Conductivity (S/m) and density contrast (g/cc) on the mesh ``z, y, x`` (1-D centres)."""
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij")
    # Layered earth with folded interfaces: weathered cover, sediments, a clay layer, basement.
    fold = 40 * np.sin(X / 450.0) + 25 * np.cos(Y / 380.0 + 0.5)
    sigma = np.full(Z.shape, 1e-3)  # resistive basement
    sigma[-620 + fold * 0.6 < Z] = 4e-3  # sandstone
    sigma[-380 + fold < Z] = 2.5e-2  # clay-rich layer
    sigma[-250 + fold < Z] = 6e-3  # sediments
    sigma[-45 + 10 * np.sin(X / 150.0) < Z] = 3e-2  # weathered cover
    rho = np.zeros(Z.shape)
    rho[-620 + fold * 0.6 > Z] = 0.15
    # A buried conductive, dense ore body (an ellipsoid).
    ore = ((X - 250) / 260) ** 2 + ((Y + 120) / 200) ** 2 + ((Z + 450) / 150) ** 2 < 1
    sigma[ore] = 0.8
    rho[ore] = 0.6
    # A dipping conductive fault zone striking along y.
    fault = np.abs((X + 350) + 0.7 * (Z + 300)) < 35
    fault &= Z < -60
    sigma[fault] = np.maximum(sigma[fault], 0.12)
    # A resistive, light intrusion.
    intrusion = ((X + 100) / 140) ** 2 + ((Y - 260) / 180) ** 2 + ((Z + 700) / 220) ** 2 < 1
    sigma[intrusion] = 2e-4
    rho[intrusion] = -0.25
    return sigma.astype(np.float32), rho.astype(np.float32)


def _recovered(
    true_sigma: np.ndarray, background: float, iteration: int, rng: np.random.Generator
) -> np.ndarray:
    """A smooth inversion estimate at ``iteration``: blurred, damped, slightly noisy."""
    from scipy.ndimage import gaussian_filter

    log_true = np.log10(true_sigma)
    log_bg = np.log10(background)
    blur = 9.0 / (1 + 0.8 * iteration)
    recovered = 1 - np.exp(-iteration / 2.5)
    smooth = gaussian_filter(log_true - log_bg, sigma=blur, mode="nearest")
    noise = gaussian_filter(rng.standard_normal(true_sigma.shape), 2.0) * 0.15 / (1 + iteration)
    return (10 ** (log_bg + recovered * smooth + noise)).astype(np.float32)


def _scale(
    f: h5py.File, name: str, values: np.ndarray, long_name: str, units: str = "m"
) -> h5py.Dataset:
    d = f.create_dataset(name, data=values)
    d.attrs["units"] = units
    d.attrs["long_name"] = long_name
    d.make_scale(name)
    return d


def write_model(
    path: str | os.PathLike[str],
    iterations: int = 8,
    seed: int = 7,
    shape_core: tuple[int, int, int] = (40, 80, 96),
) -> Path:
    """Write the synthetic inversion file (see the module docstring) to ``path``."""
    mesh = tensor_mesh(shape_core=shape_core)
    sigma, rho = true_model(mesh["z"], mesh["y"], mesh["x"])
    rng = np.random.default_rng(seed)
    path = Path(path)
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["title"] = "Synthetic 3-D conductivity inversion (dashapp demo)"
        f.attrs["mesh"] = "TensorMesh, 25 m core cells, padding factor 1.3"
        scales = {
            "z": _scale(f, "z", mesh["z"], "elevation"),
            "y": _scale(f, "y", mesh["y"], "northing"),
            "x": _scale(f, "x", mesh["x"], "easting"),
        }
        it = _scale(f, "iteration", np.arange(1, iterations + 1, dtype=np.int32), "iteration", "")
        g = f.create_group("mesh")
        for key in ("hz", "hy", "hx"):
            g.create_dataset(key, data=mesh[key]).attrs["units"] = "m"
        chunks = (16, 32, 32)
        for name, data, units, long_name in (
            ("true_model", sigma, "S/m", "conductivity"),
            ("density", rho, "g/cc", "density contrast"),
        ):
            d = f.create_dataset(
                name, data=data, chunks=chunks, compression="gzip", compression_opts=4, shuffle=True
            )
            d.attrs["units"], d.attrs["long_name"] = units, long_name
            for dim, key in enumerate(("z", "y", "x")):
                d.dims[dim].attach_scale(scales[key])
                d.dims[dim].label = key
        hist = f.create_dataset(
            "model_history",
            shape=(iterations, *sigma.shape),
            dtype=np.float32,
            chunks=(1, *chunks),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        hist.attrs["units"], hist.attrs["long_name"] = "S/m", "recovered conductivity"
        hist.dims[0].attach_scale(it)
        hist.dims[0].label = "iteration"
        for dim, key in enumerate(("z", "y", "x"), start=1):
            hist.dims[dim].attach_scale(scales[key])
            hist.dims[dim].label = key
        misfit, reg = [], []
        for k in range(iterations):
            hist[k] = _recovered(sigma, 6e-3, k + 1, rng)
            misfit.append(4.0e4 * np.exp(-0.9 * k) + 380.0)
            reg.append(15.0 * (1 - np.exp(-0.6 * (k + 1))))
        f.create_dataset("misfit", data=np.array(misfit)).attrs["long_name"] = "data misfit phi_d"
        f.create_dataset("regularization", data=np.array(reg)).attrs["long_name"] = (
            "model norm phi_m"
        )
        for name in ("misfit", "regularization"):
            f[name].dims[0].attach_scale(it)
    return path


def write_survey(path: str | os.PathLike[str], seed: int = 3) -> Path:
    """Write the survey file: a gravity map, a complex EM response and an active-cell mask."""
    rng = np.random.default_rng(seed)
    ny, nx = 160, 200
    y = np.linspace(-1200, 1200, ny)
    x = np.linspace(-1500, 1500, nx)
    Y, X = np.meshgrid(y, x, indexing="ij")

    def bump(x0, y0, depth, mass):
        r2 = (X - x0) ** 2 + (Y - y0) ** 2 + depth**2
        return mass * depth / r2**1.5

    gz = bump(220, -120, 420, 9e8) - bump(-100, 260, 700, 6e8) + rng.normal(0, 0.02, X.shape)
    freqs = np.array([25.0, 100.0, 400.0, 1600.0, 6400.0])
    skin = 503 * np.sqrt(1 / (6e-3 * freqs))[:, None, None]
    anomaly = bump(220, -120, 420, 1.0)[None] / bump(220, -120, 420, 1.0).max()
    em = (1 + 3 * anomaly) * np.exp(-1j * (np.pi / 4 + 200 / skin * (1 + anomaly)))
    path = Path(path)
    with h5py.File(path, "w") as f:
        gx = f.create_dataset("x", data=x)
        gx.attrs["units"] = "m"
        gx.make_scale("easting")
        gy = f.create_dataset("y", data=y)
        gy.attrs["units"] = "m"
        gy.make_scale("northing")
        gf = f.create_dataset("frequency", data=freqs)
        gf.attrs["units"] = "Hz"
        gf.make_scale("frequency")
        d = f.create_dataset("gravity", data=gz.astype(np.float32))
        d.attrs["units"], d.attrs["long_name"] = "mGal", "vertical gravity anomaly"
        d.dims[0].attach_scale(gy)
        d.dims[1].attach_scale(gx)
        e = f.create_dataset(
            "em_response", data=em.astype(np.complex64), chunks=(1, ny, nx), compression="gzip"
        )
        e.attrs["long_name"] = "EM transfer function"
        e.dims[0].attach_scale(gf)
        e.dims[1].attach_scale(gy)
        e.dims[2].attach_scale(gx)
        mask = (Y**2 / 1100**2 + X**2 / 1400**2) < 1
        f.create_dataset("active", data=mask)
        f.create_dataset(
            "station_count", data=(mask * rng.integers(0, 4, mask.shape)).astype(np.uint8)
        )
        f.attrs["title"] = "Synthetic survey (dashapp demo)"
    return path


def ensure_demo_workspace(directory: str | os.PathLike[str] | None = None) -> Path:
    """Return the demo workspace folder, writing it first if it does not exist yet."""
    target = Path(directory) if directory else default_demo_dir()
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # a half-written workspace from an interrupted older version
        shutil.rmtree(target, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=target.parent))
    try:
        (tmp / "inversion").mkdir()
        (tmp / "survey").mkdir()
        write_model(tmp / "inversion" / "model.h5")
        write_survey(tmp / "survey" / "data.h5")
        (tmp / "README.txt").write_text(
            "dashapp demo workspace: a synthetic 3-D conductivity model, its inversion history\n"
            "and surface survey maps. Safe to delete; dashapp writes it again when needed.\n"
        )
        (tmp / ".complete").write_text(DEMO_VERSION)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; use its copy
            if not (target / ".complete").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
