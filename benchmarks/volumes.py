"""Test volumes for the slicer benchmark: big float32 cubes in the layouts scientists' codes write.

A volume is a smooth, geophysics-like model (dipping layers, a few Gaussian bodies, a gentle
sinusoidal fabric) plus a little noise, so compression behaves as on real model output rather
than on zeros or white noise. It is generated block by block (one chunk-row of 64 slices at a
time, in bands), never holding the whole volume in memory, and written as one of:

``contiguous``  no chunking (what ``h5py.create_dataset`` does by default)
``chunked``     64³ chunks, no filter
``gzip``        64³ chunks, gzip level 4 (chunks compressed on two threads, written directly)
``huge``        ``gzip``, 2048 × 2048 × 1920 (~30 GB raw): larger than this machine's RAM

Volumes are cached: a file in the cache folder with the same shape, layout and generator
version is reused. A generation writes ``NAME.partial`` and renames it when complete, so an
interrupted run never leaves a half-written volume to be reused.

    python benchmarks/volumes.py                  # the three 1024³ layouts
    python benchmarks/volumes.py --quick          # 256³
    python benchmarks/volumes.py --huge           # also the ~30 GB volume
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

__all__ = [
    "DATASET",
    "DEFAULT_CACHE",
    "LAYOUTS",
    "Volume",
    "ensure_volume",
    "ensure_volumes",
    "field",
    "volume_spec",
]

#: Bump when :func:`field` or the file layout changes: cached volumes are then regenerated.
GENERATOR_VERSION = 1
DATASET = "/volume"
CHUNK = 64
GZIP_LEVEL = 4
LAYOUTS = ("contiguous", "chunked", "gzip")
DEFAULT_CACHE = Path(__file__).resolve().parent / "out" / "volumes"
HUGE_SHAPE = (2048, 2048, 1920)
#: Rows of 64 slices are generated in bands of at most this many cells (~128 MB of float32).
BLOCK_CELLS = 32 * 1024 * 1024


@dataclass(frozen=True)
class Volume:
    """One benchmark volume: where it is, its shape and layout."""

    path: Path
    layout: str
    shape: tuple[int, int, int]
    chunks: tuple[int, int, int] | None
    compression: str | None
    #: Seconds spent generating it in this run (0 when reused from the cache).
    generation_s: float = 0.0
    reused: bool = False

    @property
    def raw_bytes(self) -> int:
        """Size of the data uncompressed."""
        return int(np.prod(self.shape, dtype=np.int64)) * 4

    @property
    def file_bytes(self) -> int:
        """Size of the file on disk."""
        return self.path.stat().st_size


def volume_spec(
    layout: str, size: int, cache: Path, huge_shape: tuple[int, int, int] = HUGE_SHAPE
) -> Volume:
    """The volume of ``layout`` (``contiguous``, ``chunked``, ``gzip`` or ``huge``) of ``size``³."""
    if layout == "huge":
        shape = tuple(huge_shape)
        chunks, compression = (CHUNK, CHUNK, CHUNK), "gzip"
    elif layout in LAYOUTS:
        shape = (size, size, size)
        chunks = None if layout == "contiguous" else (CHUNK, CHUNK, CHUNK)
        compression = "gzip" if layout == "gzip" else None
    else:
        raise ValueError(f"unknown layout {layout!r}; choose from {(*LAYOUTS, 'huge')}")
    if chunks is not None:
        chunks = tuple(min(c, n) for c, n in zip(chunks, shape, strict=True))
    name = f"{layout}-{'x'.join(map(str, shape))}.h5"
    return Volume(cache / name, layout, shape, chunks, compression)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the model
_BODIES = (
    # centre (z, y, x) as fractions, radii, amplitude: conductive ore body, resistive intrusion,
    # a broad low, a small sharp high
    ((0.55, 0.40, 0.35), (0.08, 0.12, 0.10), 1.6),
    ((0.30, 0.65, 0.70), (0.15, 0.07, 0.09), -0.9),
    ((0.75, 0.55, 0.55), (0.20, 0.25, 0.20), 0.5),
    ((0.20, 0.20, 0.80), (0.03, 0.03, 0.03), 2.0),
)


_SCRATCH: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}


def _scratch(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    if shape not in _SCRATCH:
        _SCRATCH.clear()
        _SCRATCH[shape] = (np.empty(shape, np.float32), np.empty(shape, np.float32))
    return _SCRATCH[shape]


def field(
    z0: int, z1: int, y0: int, y1: int, shape: tuple[int, int, int], seed: int = 0
) -> np.ndarray:
    """Values of the model for slices ``z0:z1`` and rows ``y0:y1`` (all columns), as float32.

    Deterministic: a cell has the same value whatever block it is made in, as long as ``z0`` and
    ``y0`` are multiples of 64 (the noise is drawn per 64-slice × 64-row piece).
    """
    nz, ny, nx = shape
    f32 = np.float32
    z = ((np.arange(z0, z1, dtype=f32) + f32(0.5)) / f32(nz))[:, None, None]
    y = ((np.arange(y0, y1, dtype=f32) + f32(0.5)) / f32(ny))[None, :, None]
    x = ((np.arange(nx, dtype=f32) + f32(0.5)) / f32(nx))[None, None, :]
    two_pi = f32(2 * np.pi)
    # Fresh memory costs page faults as much as the arithmetic: work in place, in two scratch
    # buffers kept from block to block.
    out = np.full((z1 - z0, y1 - y0, nx), 1.0, dtype=f32)
    tmp, sq = _scratch(out.shape)
    # Dipping, undulating layer interfaces: the depth of each varies with (y, x). Each layer
    # boundary is a smooth step (cubic, over +-width) of its contrast.
    relief = f32(0.04) * np.sin(two_pi * (f32(1.3) * x + f32(0.4) * y)) * np.cos(f32(5.0) * y)
    dip = f32(0.15) * (x - f32(0.5)) + f32(0.05) * (y - f32(0.5))
    for depth, contrast, width in ((0.25, 0.8, 0.01), (0.5, -0.5, 0.02), (0.8, 1.2, 0.015)):
        interface = f32(depth) + relief + dip  # (1, ny, nx)
        np.subtract(z, interface, out=tmp)
        tmp *= f32(1 / width)
        np.clip(tmp, -1, 1, out=tmp)
        # contrast * (0.5 + 0.75 s - 0.25 s^3) = contrast/2 + s * contrast * (0.75 - 0.25 s^2)
        np.multiply(tmp, tmp, out=sq)
        sq *= f32(-0.25 * contrast)
        sq += f32(0.75 * contrast)
        sq *= tmp
        out += sq
        out += f32(contrast / 2)
    # Separable Gaussian bodies: outer products of 1-D profiles.
    for (cz, cy, cx), (rz, ry, rx), amp in _BODIES:
        gz = np.exp(-(((z - f32(cz)) / f32(rz)) ** 2))
        gy = np.exp(-(((y - f32(cy)) / f32(ry)) ** 2))
        gx = np.exp(-(((x - f32(cx)) / f32(rx)) ** 2))
        np.multiply(f32(amp) * gz * gy, gx, out=tmp)
        out += tmp
    # A gentle fabric, so neighbouring slices differ everywhere, not only near the bodies:
    # 0.08 sin(a(y, x) + c(z)) = 0.08 (sin a cos c + cos a sin c).
    a = two_pi * (f32(2.0) * x + f32(1.5) * y)
    c = two_pi * f32(3.0) * z
    np.multiply(f32(0.08) * np.sin(a), np.cos(c), out=tmp)
    out += tmp
    np.multiply(f32(0.08) * np.cos(a), np.sin(c), out=tmp)
    out += tmp
    # 1% uniform noise (8-bit), drawn per 64-slice x 64-row piece seeded by its position, so
    # independent of the block size.
    for q0 in range(z0, z1, CHUNK):
        q1 = min(q0 + CHUNK, z1)
        for r0 in range(y0, y1, CHUNK):
            r1 = min(r0 + CHUNK, y1)
            rng = np.random.default_rng([seed, q0, r0, nz, ny, nx])
            n = (q1 - q0) * (r1 - r0) * nx
            noise = np.frombuffer(rng.bytes(n), dtype=np.int8).reshape(q1 - q0, r1 - r0, nx)
            scaled = tmp[q0 - z0 : q1 - z0, r0 - y0 : r1 - y0]
            np.multiply(noise, f32(0.01 / 128), out=scaled)
            out[q0 - z0 : q1 - z0, r0 - y0 : r1 - y0] += scaled
    return out


def _bands(shape: tuple[int, int, int], rows: int) -> Iterator[tuple[int, int, int, int]]:
    """Blocks ``(z0, z1, y0, y1)``: 64 slices deep, in bands of ``rows`` rows (chunk-aligned)."""
    nz, ny, _ = shape
    for z0 in range(0, nz, CHUNK):
        for y0 in range(0, ny, rows):
            yield z0, min(z0 + CHUNK, nz), y0, min(y0 + rows, ny)


def _band_rows(shape: tuple[int, int, int]) -> int:
    rows = max(CHUNK, (BLOCK_CELLS // (CHUNK * shape[2])) // CHUNK * CHUNK)
    return min(rows, shape[1])


def _compress_block(block: np.ndarray, z0: int, y0: int, chunks: tuple[int, int, int]):
    """gzip every chunk of a chunk-aligned block: ``[(offset, bytes), ...]``."""
    cz, cy, cx = chunks
    out = []
    for dz in range(0, block.shape[0], cz):
        for dy in range(0, block.shape[1], cy):
            for dx in range(0, block.shape[2], cx):
                piece = block[dz : dz + cz, dy : dy + cy, dx : dx + cx]
                if piece.shape != chunks:  # edge chunk: HDF5 stores it full size
                    full = np.zeros(chunks, dtype=np.float32)
                    full[: piece.shape[0], : piece.shape[1], : piece.shape[2]] = piece
                    piece = full
                data = zlib.compress(np.ascontiguousarray(piece).tobytes(), GZIP_LEVEL)
                out.append(((z0 + dz, y0 + dy, dx), data))
    return out


def generate(volume: Volume, seed: int = 0, threads: int = 2, progress: bool = True) -> float:
    """Write ``volume`` (to ``NAME.partial``, renamed when done); return the seconds taken."""
    volume.path.parent.mkdir(parents=True, exist_ok=True)
    partial = volume.path.with_name(volume.path.name + ".partial")
    t0 = time.perf_counter()
    rows = _band_rows(volume.shape)
    blocks = list(_bands(volume.shape, rows))
    with h5py.File(partial, "w", libver="latest") as f:
        ds = f.create_dataset(
            DATASET,
            shape=volume.shape,
            dtype="f4",
            chunks=volume.chunks,
            compression=volume.compression,
            compression_opts=GZIP_LEVEL if volume.compression else None,
        )
        ds.attrs["generator_version"] = GENERATOR_VERSION
        ds.attrs["seed"] = seed
        ds.attrs["description"] = "synthetic layered earth with bodies, fabric and 1% uniform noise"
        direct = volume.compression == "gzip"
        pool = ThreadPoolExecutor(max(1, threads)) if direct else None
        try:
            pending = []  # (block, future) pipeline: compute+compress overlaps writing
            for n, (z0, z1, y0, y1) in enumerate(blocks):
                block = field(z0, z1, y0, y1, volume.shape, seed)
                if pool is None:
                    ds[z0:z1, y0:y1, :] = block
                else:
                    pending.append(pool.submit(_compress_block, block, z0, y0, volume.chunks))
                    while len(pending) > max(1, threads):
                        for offset, data in pending.pop(0).result():
                            ds.id.write_direct_chunk(offset, data, filter_mask=0)
                if progress:
                    done = (n + 1) / len(blocks)
                    print(
                        f"\r  {volume.path.name}: {done:6.1%}  {time.perf_counter() - t0:6.0f} s",
                        end="",
                        file=sys.stderr,
                        flush=True,
                    )
            for fut in pending:
                for offset, data in fut.result():
                    ds.id.write_direct_chunk(offset, data, filter_mask=0)
        finally:
            if pool is not None:
                pool.shutdown()
    if progress:
        print(file=sys.stderr)
    _verify(partial, volume.shape, seed)
    os.replace(partial, volume.path)
    return time.perf_counter() - t0


def _verify(path: Path, shape: tuple[int, int, int], seed: int) -> None:
    """Read back a few blocks through HDF5's normal path and compare with the model."""
    nz, ny, _ = shape
    rows = min(CHUNK, ny)
    with h5py.File(path, "r") as f:
        ds = f[DATASET]
        for z0, y0 in ((0, 0), ((nz - 1) // CHUNK * CHUNK, (ny - 1) // rows * rows)):
            z1, y1 = min(z0 + CHUNK, nz), min(y0 + rows, ny)
            got = ds[z0:z1, y0:y1, :]
            want = field(z0, z1, y0, y1, shape, seed)
            if not np.array_equal(got, want):
                raise RuntimeError(f"{path.name}: read-back of block ({z0}, {y0}) differs")


def _cached(volume: Volume) -> bool:
    if not volume.path.exists():
        return False
    try:
        with h5py.File(volume.path, "r") as f:
            ds = f[DATASET]
            return (
                ds.shape == volume.shape
                and ds.dtype == np.float32
                and ds.chunks == volume.chunks
                and ds.compression == volume.compression
                and int(ds.attrs.get("generator_version", -1)) == GENERATOR_VERSION
            )
    except (OSError, KeyError):
        return False


def ensure_volume(volume: Volume, seed: int = 0, progress: bool = True) -> Volume:
    """Generate ``volume`` unless the cache already has it; the result says which."""
    if _cached(volume):
        return Volume(**{**volume.__dict__, "generation_s": 0.0, "reused": True})
    need = volume.raw_bytes if volume.compression is None else volume.raw_bytes * 0.95
    free = _free_bytes(volume.path.parent)
    if free is not None and free < need * 1.05:
        raise SystemExit(
            f"not enough disk for {volume.path.name}: needs ~{need / 1e9:.0f} GB, "
            f"{free / 1e9:.0f} GB free in {volume.path.parent}"
        )
    seconds = generate(volume, seed=seed, progress=progress)
    return Volume(**{**volume.__dict__, "generation_s": seconds, "reused": False})


def _free_bytes(folder: Path) -> int | None:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def ensure_volumes(
    layouts: list[str], size: int, cache: Path = DEFAULT_CACHE, progress: bool = True
) -> list[Volume]:
    """The volumes of ``layouts`` (generated or reused), in order."""
    return [
        ensure_volume(volume_spec(layout, size, cache), progress=progress) for layout in layouts
    ]


def describe_volume(volume: Volume) -> str:
    """One line: name, shape, layout, size on disk, compression ratio and generation time."""
    ratio = volume.raw_bytes / max(volume.file_bytes, 1)
    made = "reused from cache" if volume.reused else f"generated in {volume.generation_s:.1f} s"
    return (
        f"{volume.path.name}: {' x '.join(map(str, volume.shape))} float32, {volume.layout}, "
        f"{volume.file_bytes / 2**30:.2f} GiB on disk (ratio {ratio:.2f}), {made}"
    )


def main(argv: list[str] | None = None) -> int:
    """Generate (or reuse) the benchmark volumes and print what was done."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256³ instead of 1024³")
    parser.add_argument("--size", type=int, help="edge length of the cubes (overrides --quick)")
    parser.add_argument("--huge", action="store_true", help="also the ~30 GB volume")
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="volume folder")
    args = parser.parse_args(argv)
    size = args.size or (256 if args.quick else 1024)
    t0 = time.perf_counter()
    volumes = ensure_volumes(args.layouts, size, args.cache)
    if args.huge:
        volumes.append(ensure_volume(volume_spec("huge", size, args.cache)))
    for v in volumes:
        print(describe_volume(v))
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
