"""The one reduction of every overview level: NaN-aware means of pairs of cells, in float32.

Used by pyramid builds (:mod:`.pyramid`), chunks reduced as they are read (:mod:`.chunks`) and
regions reduced through h5py (:mod:`.reader`). A leaf module: it imports neither, so the chunk
reader and the pyramids do not import each other.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["as_float32", "halve"]


def halve(block: np.ndarray, dims: tuple[int, ...] | None = None, times: int = 1) -> np.ndarray:
    """``block`` one level coarser, ``times`` times: each time the NaN-aware mean over pairs of
    cells along ``dims`` (default: all; 2x2 in a plane, 2x2x2 in a volume), odd edges padded
    with NaN. The one reduction of every level: pyramid builds, chunks reduced as they are
    read, and regions reduced through h5py."""
    for _ in range(times):
        block = _mean2(block, dims)
    return block


def _mean2(block: np.ndarray, dims: tuple[int, ...] | None) -> np.ndarray:
    dims = tuple(range(block.ndim)) if dims is None else tuple(dims)
    pad = [(0, n % 2 if d in dims else 0) for d, n in enumerate(block.shape)]
    if any(p[1] for p in pad):
        block = np.pad(block, pad, constant_values=np.nan)
    shape: list[int] = []
    axes: list[int] = []
    for d, n in enumerate(block.shape):
        if d in dims:
            shape += [n // 2, 2]
            axes.append(len(shape) - 1)
        else:
            shape.append(n)
    blocks = block.reshape(shape)
    if not np.isnan(blocks).any():  # the common case: a plain mean is several times faster
        return blocks.mean(axis=tuple(axes), dtype=np.float32)
    with np.errstate(invalid="ignore"), _quiet():
        return np.nanmean(blocks, axis=tuple(axes)).astype(np.float32)


class _quiet:
    """Silence numpy's 'Mean of empty slice' for all-NaN blocks (they stay NaN)."""

    def __enter__(self) -> None:
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def as_float32(values: np.ndarray) -> np.ndarray:
    """``values`` as float32, the dtype of every level (no copy if already)."""
    if values.dtype.kind == "b":
        return values.astype(np.float32)
    return values.astype(np.float32, copy=False)
