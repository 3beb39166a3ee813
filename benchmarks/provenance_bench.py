"""Does provenance capture slow the slider? Two measurements in one run, printed as markdown.

(a) The caller's cost: how long ``Record.add``, ``Record.view`` and ``ViewRecorder.update`` take
    on the calling thread (median and p95 over 10,000 calls each); the disk write happens on
    the record's writer thread, whose throughput is given too.
(b) A simulated scrub: ``dashapp.data.read_slice`` of 200 successive slices of a 256^3 float32
    HDF5 volume (64^3 chunks, ``libver='latest'``, written to a temp dir, in the page cache), as
    the slicer view calls it, with and without a ``ViewRecorder.update`` per slice (what the app
    does on every view change), and with every view recorded (``delay=0``: the writer appends
    and fsyncs while the reads run). The variants take turns slice by slice, so a busy machine
    loads them alike; the table gives the median and p95 per slice, and the ratio to no
    capture (of the medians, and the median of the per-slice ratios).

    python benchmarks/provenance_bench.py                  # 10,000 calls, 200 slices, 6 repeats
    python benchmarks/provenance_bench.py --calls 2000 --repeats 1 --size 128   # quick
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from dashapp.data import (  # noqa: E402
    SliceRequest,
    default_axis,
    default_display_dims,
    describe,
    read_slice,
)
from dashapp.provenance import Record, ViewRecorder  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            kb = int(next(ln for ln in fh if ln.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    load = ", load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, h5py {h5py.__version__} (HDF5 "
        f"{h5py.version.hdf5_version}){load}; {time.strftime('%Y-%m-%d %H:%M')}"
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def per_call_us(fn: Callable[[int], object], calls: int) -> list[float]:
    samples = []
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        fn(i)
        samples.append((clock() - t0) / 1000)
    return samples


def caller_cost(tmp: Path, calls: int) -> list[tuple[str, list[float], str]]:
    rows = []
    record = Record(tmp / "ws-add")
    view = {"axis": 0, "index": 0, "display": (1, 2), "indices": {}, "cmap": "fire"}
    samples = per_call_us(
        lambda i: record.add("view", f"view {i}", link=f"file=a.h5&index={i}", data=view), calls
    )
    t0 = time.perf_counter()
    record.flush()
    drained = time.perf_counter() - t0
    rows.append(("`Record.add` (a view-sized event)", samples, f"writer drained the rest in "
                 f"{drained * 1000:.0f} ms"))  # fmt: skip
    record.close()

    record = Record(tmp / "ws-view")
    samples = per_call_us(lambda i: record.view(f"file=a.h5&index={i}", view, "a.h5"), calls)
    record.close()
    rows.append(("`Record.view` (recorded at once)", samples, ""))

    record = Record(tmp / "ws-recorder")
    recorder = ViewRecorder(record, delay=2.0)
    query = {"file": "a.h5", "dataset": "/volume", "axis": "0", "index": "0", "cmap": "fire"}
    samples = per_call_us(
        lambda i: recorder.update({**query, "index": str(i)}, view, "a.h5"), calls
    )
    recorder.close()
    record.close()
    recorded = len(record.events(kinds="view"))
    rows.append(("`ViewRecorder.update` (delay 2 s)", samples, f"{recorded} view recorded"))
    return rows


def write_volume(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    # libver="latest" as benchmarks/volumes.py: with the default (v1 B-tree chunk index),
    # read_slice(prefetch=1) crashed HDF5 here ("ref-counted page nil"), a data-layer bug
    with h5py.File(path, "w", libver="latest") as f:
        ds = f.create_dataset("volume", (n, n, n), dtype="f4", chunks=(64, 64, 64))
        for z in range(0, n, 64):
            ds[z : z + 64] = rng.random((min(64, n - z), n, n), dtype="f4")


def scrub(tmp: Path, size: int, slices: int, repeats: int) -> dict[str, list[float]]:
    root = tmp / "data"
    root.mkdir()
    path = root / "volume.h5"
    t0 = time.perf_counter()
    write_volume(path, size)
    print(f"wrote a {size}^3 float32 volume in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    info = describe(path, "/volume", root=root)
    axis = default_axis(3)
    display = default_display_dims(3, axis)
    slices = min(slices, size)

    def read(i: int, update: Callable[[int], None] | None) -> float:
        t0 = time.perf_counter()
        if update is not None:
            update(i)  # on the caller's thread, before the read, as the view does
        idx = [0, 0, 0]
        idx[axis] = i
        request = SliceRequest("/volume", display, tuple(idx), plot_size=(600, 800))
        read_slice(info, request, root=root, prefetch=1)
        return (time.perf_counter() - t0) * 1000

    def recording(delay: float, name: str) -> tuple[Callable[[int], None], Callable[[], None]]:
        record = Record(tmp / f"ws-{name}")
        recorder = ViewRecorder(record, delay=delay)
        base = {"file": "volume.h5", "dataset": "/volume", "axis": str(axis), "cmap": "fire"}

        def update(i: int) -> None:
            view = {"axis": axis, "index": i, "display": display, "cmap": "fire"}
            recorder.update({**base, "index": str(i)}, view, "volume.h5")

        def done() -> None:
            recorder.close()
            record.close()

        return update, done

    for i in range(size):  # warm-up: page cache, handles, every chunk decoded and cached
        read(i, None)
    no_capture, delay2, delay0 = "no capture", "ViewRecorder (2 s)", "every view recorded"
    update2, done2 = recording(2.0, "delay2")
    update0, done0 = recording(0.0, "delay0")
    updates = {no_capture: None, delay2: update2, delay0: update0}
    results: dict[str, list[float]] = {name: [] for name in updates}
    names = list(updates)
    # Every chunk is in dashapp's chunk cache after the warm-up, so a slice costs the same
    # whichever variant reads it: the variants take turns slice by slice (rotating who goes
    # first), so the load of a busy machine falls on all of them alike.
    for r in range(repeats):
        for i in range(slices):
            k = (i + r) % len(names)
            for name in names[k:] + names[:k]:
                results[name].append(read(i, updates[name]))
    done2()
    done0()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=256, help="volume edge (cells)")
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dashapp-provbench-") as tmp_name:
        tmp = Path(tmp_name)
        calls = caller_cost(tmp, args.calls)
        results = scrub(tmp, args.size, args.slices, args.repeats)

    print(f"\n**Machine**: {machine()}; temp dir {tempfile.gettempdir()}\n")
    print(f"(a) Time on the caller's thread, {args.calls:,} calls each\n")
    print("| call | median µs | p95 µs | max µs | note |")
    print("|---|---:|---:|---:|---|")
    for name, samples, note in calls:
        print(
            f"| {name} | {statistics.median(samples):.1f} | {pct(samples, 95):.1f} "
            f"| {max(samples):.0f} | {note} |"
        )
    n = len(next(iter(results.values())))
    base = results["no capture"]
    print(
        f"\n(b) Scrub: `read_slice` of {args.slices} successive slices of a {args.size}^3 "
        f"float32 volume (64^3 chunks), {args.repeats} repeat(s), {n} samples per row\n"
    )
    print("| capture | median ms/slice | p95 ms/slice | ratio of medians | median paired ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, times in results.items():
        med = statistics.median(times)
        paired = statistics.median(t / b for t, b in zip(times, base, strict=True))
        print(
            f"| {name} | {med:.2f} | {pct(times, 95):.2f} | {med / statistics.median(base):.3f} "
            f"| {paired:.3f} |"
        )


if __name__ == "__main__":
    main()
