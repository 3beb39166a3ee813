"""Drive HDF5 files through the data layer as the slicer does, measuring memory; run as a script.

``python -m tests.data.memory_probe ROOT FILE...`` (each FILE relative to ROOT, every dataset
in it) prints one JSON line per dataset: what each step gave (``ok`` or the error's class and
message) and the peak of Python/numpy allocations of the worst step (tracemalloc), then a last
line with the process's peak resident memory. Tests run it in a subprocess under an
address-space limit (:func:`run_limited`), so a file that makes the data layer allocate
gigabytes fails the test with a MemoryError instead of taking the machine down.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import traceback
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_limited(
    args: list[str], limit_bytes: int, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m tests.data.memory_probe ARGS`` with at most ``limit_bytes`` of address space."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "tests.data.memory_probe", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def results(proc: subprocess.CompletedProcess) -> tuple[list[dict], dict]:
    """The per-dataset records and the final summary printed by a probe run."""
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines or "maxrss" not in lines[-1]:
        raise AssertionError(f"the probe died (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return lines[:-1], lines[-1]


def _step(record: dict, name: str, fn) -> object:
    tracemalloc.start()
    try:
        value = fn()
        record[name] = "ok"
        return value
    except Exception as exc:  # recorded: the test decides which errors are allowed
        from dashapp.data.errors import DashappError

        kind = "DashappError" if isinstance(exc, DashappError) else "unexpected"
        record[name] = f"{kind}: {type(exc).__name__}: {exc}"
        if kind == "unexpected":
            record[name] += "\n" + traceback.format_exc()[-1500:]
        return None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        record["peak"] = max(record.get("peak", 0), peak)


def probe(root: Path, rel: str, dataset: str) -> dict:
    """Every data-layer call the slicer makes for ``dataset``, as a record."""
    from dashapp.data import check_viewable, describe
    from dashapp.data.reader import SliceRequest, estimate_range, read_slice
    from dashapp.data.slicing import default_axis, default_display_dims

    path = root / rel
    record: dict = {"file": rel, "dataset": dataset}
    info = _step(record, "describe", lambda: describe(path, dataset, root=root))
    if info is None:
        return record
    if _step(record, "check_viewable", lambda: check_viewable(info) or True) is None:
        return record
    record["shape"] = list(info.shape)
    _step(record, "extent", lambda: [a.extent() for a in info.axes])
    display = default_display_dims(info.ndim, default_axis(info.ndim))
    indices = tuple(n // 2 for n in info.shape)
    full = SliceRequest(dataset=dataset, display=display, indices=indices, plot_size=(300, 400))
    image = _step(record, "read", lambda: read_slice(info, full, root))
    if image is not None:
        record["image"] = list(image.values.shape)
        record["notes"] = image.notes
    zoom = SliceRequest(
        dataset=dataset,
        display=display,
        indices=(0,) * info.ndim,
        x_range=(-0.5, 99.5),
        y_range=(-0.5, 99.5),
        plot_size=(300, 400),
    )
    _step(record, "read_zoom", lambda: read_slice(info, zoom, root))
    _step(record, "read_first", lambda: read_slice(info, _replace(full, agg="max"), root))
    _step(record, "range", lambda: estimate_range(info, root=root))
    return record


def _replace(request, **changes):
    from dataclasses import replace

    return replace(request, **changes)


def datasets(path: Path) -> list[str]:
    import h5py

    from dashapp.data.errors import DashappError
    from dashapp.data.files import open_file

    found: list[str] = []
    try:
        with open_file(path) as f:
            names: list[str] = []
            f.visit_links(names.append)  # broken links too
            for name in names:
                try:
                    kind = f.get(name, getclass=True)
                except Exception:  # a link that cannot even be classified: probe it too
                    kind = None
                if kind is not h5py.Group:
                    found.append("/" + name)
    except (DashappError, OSError, KeyError):
        pass
    return found or ["/x"]


def main(argv: list[str]) -> None:
    from dashapp.data.reader import warm_up

    warm_up(("mean", "max"))  # numba's compilation is not a read's memory (a server warms up)
    root = Path(argv[0])
    for rel in argv[1:]:
        for name in datasets(root / rel):
            print(json.dumps(probe(root, rel, name), default=str), flush=True)
    print(json.dumps({"maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main(sys.argv[1:])
