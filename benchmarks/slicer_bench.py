"""The slicer benchmark: dashapp side by side with plain h5py and a HoloViews app, in one run.

For each volume layout (contiguous, chunked 64³, chunked 64³ + gzip; ``--huge``: a ~30 GB
volume larger than RAM) and each normal axis it measures

1. dashapp's server-side slice change: ``read_slice`` over a drag (successive indices) and a few
   random jumps (:func:`measure_dashapp_server`);
2. plain h5py full-slice reads (``ds[i]``, ``ds[:, i]``, ``ds[:, :, i]``), a fresh file with
   HDF5's default chunk cache: the baseline;
3. key press to changed pixels in Chromium for dashapp (``apps/slicer.py``) and for the classic
   HoloViews DynamicMap + ``rasterize`` app (``benchmarks/hv_app.py``);
4. peak RSS of each ``panel serve`` process (and children);
5. bytes per frame from server to browser;

then prints a markdown table (medians, p95s, ratios, the machine) and writes the results as JSON
to ``benchmarks/out/results-<timestamp>.json``.

    python benchmarks/slicer_bench.py                # 1024³, 30 presses (~30-40 min)
    python benchmarks/slicer_bench.py --quick        # 256³, axes 0 and 2, 5 presses: a smoke run
    python benchmarks/slicer_bench.py --huge         # also the ~30 GB volume (disk!)
    python benchmarks/slicer_bench.py --layouts gzip --axes 0 2 --presses 40
    python benchmarks/slicer_bench.py --layouts gzip --baseline 92463e2 --tools dashapp
                                                     # before/after: commit 92463e2 on the same rows
    python benchmarks/slicer_bench.py --report benchmarks/out/results-….json   # print again

See benchmarks/README.md for what each column means and the caveats.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from browser_latency import (  # noqa: E402
    AppRun,
    PanelServer,
    launch_chromium,
    measure_app,
    median,
    percentile,
)
from volumes import (  # noqa: E402
    DATASET,
    DEFAULT_CACHE,
    LAYOUTS,
    Volume,
    describe_volume,
    ensure_volume,
    volume_spec,
)

OUT = HERE / "out"
TOOLS = ("dashapp", "holoviews")
#: The plot size the server-side measurement asks for, ``(height, width)``.
PLOT_SIZE = (600, 800)


# ----------------------------------------------------------------------------- sequences
def slice_sequence(n: int, steps: int, jumps: int, seed: int = 0) -> list[tuple[str, int]]:
    """A hand dragging the slider: ``steps`` successive indices, then ``jumps`` random ones.

    The drag starts a third of the way in, so it crosses into a new 64-slice chunk row on a
    1024-slice axis only if it is long.
    """
    start = max(0, min(n // 3, n - steps - 1))
    seq = [("drag", min(start + k, n - 1)) for k in range(steps)]
    rng = random.Random(seed)
    seq += [("jump", rng.randrange(n)) for _ in range(jumps)]
    return seq


def start_index(n: int, presses: int) -> int:
    """Where the browser sessions start, so ``presses`` ArrowRights stay inside the axis."""
    return max(0, min(n // 3, n - presses - 2))


def evict(path: Path) -> None:
    """Drop ``path``'s pages from the OS page cache (the next read comes from disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def prewarm(path: Path, max_fraction: float = 0.5) -> float | None:
    """Read ``path`` once so every tool starts with it in the page cache; seconds, or None.

    Skipped (None) when the file is larger than ``max_fraction`` of the available memory: it
    could not stay cached anyway (the point of the huge volume).
    """
    size = path.stat().st_size
    avail = _meminfo().get("MemAvailable", 0)
    if avail and size > max_fraction * avail:
        return None
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while fh.read(16 << 20):
            pass
    return time.perf_counter() - t0


def wait_for_calm(load: float, timeout_s: float = 300) -> float:
    """Wait until the 1-minute load average is below ``load`` (at most ``timeout_s``)."""
    t0 = time.monotonic()
    while os.getloadavg()[0] >= load and time.monotonic() - t0 < timeout_s:
        time.sleep(5)
    return time.monotonic() - t0


def summarize(ms: list[float]) -> dict[str, Any]:
    """Median, p95, min and max of a list of milliseconds."""
    return {
        "median_ms": median(ms),
        "p95_ms": percentile(ms, 95),
        "min_ms": min(ms) if ms else None,
        "max_ms": max(ms) if ms else None,
        "n": len(ms),
    }


# ----------------------------------------------------------------------------- server side
def measure_dashapp_server(
    path: Path,
    axis: int,
    steps: list[tuple[str, int]],
    before_read: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """dashapp's server-side slice change: ``read_slice`` for each index of ``steps``.

    This is the one place that calls dashapp's data layer for timing. It makes the call the
    slicer view makes: with the dataset's pyramid when dashapp has one ready (``PYRAMIDS``, see
    :func:`ensure_pyramid`) and ``prefetch`` in the drag's direction (+1 while dragging, 0 for a
    jump), on checkouts whose ``read_slice`` takes them; a plain ``read_slice`` on older ones.
    """
    import inspect

    from dashapp.data import SliceRequest, default_display_dims, describe, read_slice

    with contextlib.suppress(Exception):  # compile datashader's kernels outside the timing
        from dashapp.data import warm_up

        warm_up()
    with contextlib.suppress(Exception):  # start from no open handles
        from dashapp.data import HANDLES

        HANDLES.clear()
    info = describe(path, DATASET)
    display = default_display_dims(3, axis)
    params = inspect.signature(read_slice).parameters
    extra: dict[str, Any] = {}
    if "pyramid" in params:
        extra["pyramid"] = _pyramid(info)

    def request(i: int) -> SliceRequest:
        indices = tuple(i if d == axis else 0 for d in range(3))
        return SliceRequest(DATASET, display, indices, plot_size=PLOT_SIZE)

    def kwargs(kind: str) -> dict[str, Any]:
        if "prefetch" in params:
            return {**extra, "prefetch": 1 if kind == "drag" else 0}
        return extra

    first = steps[0][1]
    # untimed: opens the file, first numba calls
    read_slice(info, request(max(0, first - 1)), **kwargs("jump"))
    times: list[tuple[str, int, float]] = []
    sources: dict[str, int] = {}
    image = None
    try:
        for kind, i in steps:
            if before_read is not None:
                before_read()
            t0 = time.perf_counter()
            image = read_slice(info, request(i), **kwargs(kind))
            times.append((kind, i, (time.perf_counter() - t0) * 1000))
            where = f"{getattr(image, 'source', 'file')} level {getattr(image, 'level', 0)}"
            sources[where] = sources.get(where, 0) + 1
    finally:
        with contextlib.suppress(Exception):
            from dashapp.data import HANDLES

            HANDLES.clear()
    out = summarize([t for _, _, t in times])
    out["drag_median_ms"] = median([t for k, _, t in times if k == "drag"])
    out["jump_median_ms"] = median([t for k, _, t in times if k == "jump"])
    out["image_shape"] = list(image.values.shape) if image is not None else None
    out["notes"] = list(image.notes) if image is not None else []
    out["read_from"] = sources
    out["pyramid"] = extra.get("pyramid") is not None
    out["samples"] = times
    return out


def _pyramid(info: Any) -> Any:
    """The dataset's ready pyramid, as the slicer view gets it (None if none or too small)."""
    try:
        from dashapp.data import PYRAMIDS
    except ImportError:
        return None
    return PYRAMIDS.get(info) if PYRAMIDS.wanted(info) else None


def ensure_pyramid(path: Path, timeout_s: float = 7200) -> dict[str, Any]:
    """Build (or find) dashapp's pyramid of a volume before timing, as the app would.

    The slicer builds it in the background on first view; the benchmark measures the steady
    state after that, and reports how long the build took and its size on disk.
    """
    try:
        from dashapp.data import PYRAMIDS, describe
    except ImportError:
        return {"state": "not in this dashapp"}
    info = describe(path, DATASET)
    if not PYRAMIDS.wanted(info):
        return {"state": "skipped (dataset too small)"}
    t0 = time.perf_counter()
    ready = PYRAMIDS.get(info) is not None
    if not ready:
        PYRAMIDS.ensure(info)
        st = PYRAMIDS.wait(info, timeout=timeout_s)
        if st.state != "ready":
            return {"state": st.state, "message": st.message}
    pyr = PYRAMIDS.get(info)
    folder = getattr(pyr, "dir", None)
    size = None
    if folder is not None:
        size = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
    return {
        "state": "reused" if ready else "built",
        "seconds": None if ready else time.perf_counter() - t0,
        "levels": getattr(pyr, "levels", None),
        "bytes": size,
    }


def measure_h5py(
    path: Path, axis: int, steps: list[tuple[str, int]], cold: bool = False
) -> dict[str, Any]:
    """The baseline: plain h5py full-slice reads, a fresh file with the default chunk cache.

    Runs in a new process: in this one, HDF5 would share the file (and the dataset's chunk
    cache) with any handle dashapp still holds open, and the baseline would read from dashapp's
    larger cache.
    """
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(_measure_h5py, str(path), axis, steps, cold).result()


def _measure_h5py(path: str, axis: int, steps: list[tuple[str, int]], cold: bool) -> dict[str, Any]:
    import h5py

    before_read = (lambda: evict(Path(path))) if cold else None
    times: list[tuple[str, int, float]] = []
    with h5py.File(path, "r") as f:
        ds = f[DATASET]
        sel: list[Any] = [slice(None)] * 3
        sel[axis] = max(0, steps[0][1] - 1)
        ds[tuple(sel)]  # untimed, as for dashapp
        for kind, i in steps:
            sel[axis] = i
            if before_read is not None:
                before_read()
            t0 = time.perf_counter()
            ds[tuple(sel)]
            times.append((kind, i, (time.perf_counter() - t0) * 1000))
    out = summarize([t for _, _, t in times])
    out["drag_median_ms"] = median([t for k, _, t in times if k == "drag"])
    out["jump_median_ms"] = median([t for k, _, t in times if k == "jump"])
    out["samples"] = times
    return out


# ----------------------------------------------------------------------------- browser side
@dataclass
class BrowserPlan:
    """How to start a tool's server and what URL shows a given volume and axis."""

    tool: str
    host_selector: str
    server: Callable[[Volume, int, int, Path], PanelServer]
    url: Callable[[PanelServer, Volume, int, int], str]


def browser_plans(repo: Path, cache: Path, baseline: Path | None = None) -> dict[str, BrowserPlan]:
    """dashapp (``apps/slicer.py --root CACHE``), the HoloViews app (``hv_app.py``) and, with
    ``baseline``, dashapp from that folder (an earlier commit) as the tool ``baseline``."""

    def server_of(checkout: Path, name: str):
        def dashapp_server(volume: Volume, axis: int, index: int, logs: Path) -> PanelServer:
            return PanelServer(
                checkout / "apps" / "slicer.py",
                ["--root", str(cache)],
                cwd=checkout,
                log=logs / f"{name}-{volume.layout}-{axis}.log",
                env={
                    k: os.environ[k]
                    for k in ("DASHAPP_CACHE", "DASHAPP_PYRAMID_MIN_MB")
                    if k in os.environ
                },
                python_path=checkout,
            )

        return dashapp_server

    def dashapp_url(server: PanelServer, volume: Volume, axis: int, index: int) -> str:
        return (
            f"{server.base}/slicer?file={volume.path.name}&dataset={DATASET}&axis={axis}"
            f"&index={index}&cmap=fire&scale=linear"
        )

    def hv_server(volume: Volume, axis: int, index: int, logs: Path) -> PanelServer:
        return PanelServer(
            HERE / "hv_app.py",
            [str(volume.path), str(axis), "--index", str(index)],
            cwd=repo,
            log=logs / f"holoviews-{volume.layout}-{axis}.log",
            python_path=repo,
        )

    def hv_url(server: PanelServer, volume: Volume, axis: int, index: int) -> str:
        return f"{server.base}/hv_app?file={volume.path.name}&axis={axis}&index={index}"

    plans = {
        "dashapp": BrowserPlan("dashapp", ".dashapp-plot", server_of(repo, "dashapp"), dashapp_url),
        "holoviews": BrowserPlan("holoviews", ".bench-hv-plot", hv_server, hv_url),
    }
    if baseline is not None:
        plans["baseline"] = BrowserPlan(
            "baseline", ".dashapp-plot", server_of(baseline, "baseline"), dashapp_url
        )
    return plans


class ServerPool:
    """Servers per tool: a new one per row (``row``), per layout (``layout``) or per run."""

    def __init__(self, scope: str, logs: Path, warm: Callable[..., Any]) -> None:
        self.scope, self.logs, self.warm = scope, logs, warm
        self.shared: dict[str, tuple[str, PanelServer]] = {}

    @contextlib.contextmanager
    def server(self, plan: BrowserPlan, volume: Volume, axis: int, index: int):
        if self.scope == "row":
            with plan.server(volume, axis, index, self.logs) as server:
                yield server, self.warm(plan, server, volume, axis, index)
            return
        key = volume.layout if self.scope == "layout" else ""
        held = self.shared.get(plan.tool)
        if held is not None and held[0] != key:
            held[1].stop()
            held = None
        if held is None:
            server = plan.server(volume, axis, index, self.logs).start()
            self.shared[plan.tool] = (key, server)
            yield server, self.warm(plan, server, volume, axis, index)
        else:
            yield held[1], None

    def close(self) -> None:
        for _, server in self.shared.values():
            server.stop()
        self.shared.clear()


# ----------------------------------------------------------------------------- the machine
def _meminfo() -> dict[str, int]:
    out = {}
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                out[key] = int(parts[0]) * 1024
    return out


def snapshot(repo: Path, ref: str, tmp: Path, name: str = "dashapp-src") -> Path:
    """Export commit ``ref`` of ``repo`` to the folder ``tmp/name`` (``git archive``)."""
    dest = tmp / name
    dest.mkdir()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref], cwd=repo, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def machine(repo: Path, ref: str | None = None) -> dict[str, Any]:
    """CPU, cores, RAM, load, versions, and which dashapp checkout is measured."""
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {"python": platform.python_version()}
    from importlib import metadata

    for dist in ("numpy", "h5py", "bokeh", "panel", "holoviews", "datashader", "playwright"):
        with contextlib.suppress(Exception):
            versions[dist] = metadata.version(dist)
    with contextlib.suppress(Exception):
        import h5py

        versions["hdf5"] = h5py.version.hdf5_version
    with contextlib.suppress(Exception):
        versions["chromium"] = subprocess.run(
            ["/usr/bin/chromium", "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()

    def git(*args: str) -> str:
        with contextlib.suppress(Exception):
            return subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=30
            ).stdout.strip()
        return ""

    dirty = (
        []
        if ref
        else [
            line[3:]
            for line in git("status", "--porcelain", "--", "dashapp", "apps").splitlines()
            if line
        ]
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "ram_gib": round(_meminfo().get("MemTotal", 0) / 2**30, 1),
        "load_avg": list(os.getloadavg()),
        "kernel": platform.release(),
        "versions": versions,
        "dashapp_repo": str(repo),
        "dashapp_commit": git("rev-parse", "--short", ref or "HEAD"),
        "dashapp_ref": ref,
        "dashapp_subject": git("log", "-1", "--format=%s", ref or "HEAD"),
        "dashapp_uncommitted": dirty,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def describe_machine(m: dict[str, Any]) -> str:
    """The machine as markdown lines."""
    v = m["versions"]
    load = "/".join(f"{x:.1f}" for x in m["load_avg"])
    end = m.get("load_avg_end")
    load_end = ", at the end " + "/".join(f"{x:.1f}" for x in end) if end else ""
    commit = m["dashapp_commit"] or "?"
    if m["dashapp_uncommitted"]:
        commit += f" + uncommitted changes in {len(m['dashapp_uncommitted'])} files"
    return "\n".join(
        [
            f"- machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), "
            f"{m['ram_gib']} GiB RAM, no GPU; Linux {m['kernel']}",
            f"- load average (1/5/15 min) at the start {load}{load_end} (shared machine)",
            f"- Python {v.get('python')}, numpy {v.get('numpy')}, h5py {v.get('h5py')} "
            f"(HDF5 {v.get('hdf5')}), bokeh {v.get('bokeh')}, panel {v.get('panel')}, "
            f"holoviews {v.get('holoviews')}, datashader {v.get('datashader')}, "
            f"playwright {v.get('playwright')}, {v.get('chromium', 'chromium ?')}",
            f"- dashapp: {m['dashapp_repo']} at {commit} ({m.get('dashapp_subject', '')[:70]})"
            + (f", exported from git ref {m['dashapp_ref']}" if m.get("dashapp_ref") else ""),
            f"- date: {m['date']}",
        ]
    )


# ----------------------------------------------------------------------------- the table
def _f(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    """One markdown row per (layout, axis, tool)."""
    head = (
        "| layout | axis | tool | server median ms | server p95 ms | browser median ms "
        "| browser p95 ms | settled median ms | peak RSS MB | KB per frame |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        s, b = r.get("server") or {}, r.get("browser") or {}
        browser_med = _f(b.get("browser_median_ms"))
        if b.get("unchanged"):
            browser_med += f" ({b['unchanged']}/{b['presses']} unchanged)"
        if b.get("timeouts"):
            browser_med += f" ({b['timeouts']} timed out)"
        if r.get("error"):
            browser_med = "error"
        lines.append(
            f"| {r['layout']} | {r['axis']} | {r['tool']} | {_f(s.get('median_ms'), 1)} "
            f"| {_f(s.get('p95_ms'), 1)} | {browser_med} | {_f(b.get('browser_p95_ms'))} "
            f"| {_f(b.get('settle_median_ms'))} | {_f(b.get('peak_rss_mb'))} "
            f"| {_f(b.get('kb_per_frame'))} |"
        )
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (layout, axis): HoloViews / dashapp in the browser, dashapp / h5py on the server."""
    by: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["layout"], r["axis"]), {})[r["tool"]] = r
    out = []
    for (layout, axis), tools in by.items():
        d = (tools.get("dashapp") or {}).get("browser") or {}
        base = next(
            (t.get("browser") or {} for name, t in tools.items() if name.startswith("dashapp at ")),
            {},
        )
        h = (tools.get("holoviews") or {}).get("browser") or {}
        ds = (tools.get("dashapp") or {}).get("server") or {}
        hs = (tools.get("h5py") or {}).get("server") or {}
        out.append(
            {
                "layout": layout,
                "axis": axis,
                "hv_over_dashapp_browser_median": _ratio(
                    h.get("browser_median_ms"), d.get("browser_median_ms")
                ),
                "hv_over_dashapp_browser_p95": _ratio(
                    h.get("browser_p95_ms"), d.get("browser_p95_ms")
                ),
                "dashapp_over_h5py_server_median": _ratio(ds.get("median_ms"), hs.get("median_ms")),
                "hv_over_dashapp_rss": _ratio(h.get("peak_rss_mb"), d.get("peak_rss_mb")),
                "hv_over_dashapp_kb": _ratio(h.get("kb_per_frame"), d.get("kb_per_frame")),
                "baseline_over_dashapp_browser_median": _ratio(
                    base.get("browser_median_ms"), d.get("browser_median_ms")
                ),
            }
        )
    return out


def ratio_table(rs: list[dict[str, Any]]) -> str:
    """The ratios as markdown (>1: dashapp is faster / smaller)."""
    lines = [
        "| layout | axis | HoloViews / dashapp browser median | ... p95 | dashapp / h5py server "
        "median | HoloViews / dashapp peak RSS | HoloViews / dashapp KB per frame "
        "| baseline / dashapp browser median |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rs:
        cells = [
            _f(r[k], 2)
            for k in (
                "hv_over_dashapp_browser_median",
                "hv_over_dashapp_browser_p95",
                "dashapp_over_h5py_server_median",
                "hv_over_dashapp_rss",
                "hv_over_dashapp_kb",
                "baseline_over_dashapp_browser_median",
            )
        ]
        lines.append(f"| {r['layout']} | {r['axis']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the run
@dataclass
class Settings:
    """Everything a run was asked to do (recorded in the JSON)."""

    quick: bool
    size: int
    layouts: list[str]
    axes: list[int]
    presses: int
    warmup_presses: int
    steps: int
    jumps: int
    tools: list[str]
    browser: bool
    servers: str
    cold: bool
    pyramids: bool
    press_timeout_s: float
    settle_ms: float
    calm: float | None
    cache: str
    repo: str
    ref: str | None
    dashapp_cache: str
    baseline: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> Settings:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="256³ volumes, few presses: a smoke run")
    p.add_argument("--huge", action="store_true", help="add the ~30 GB volume (needs the disk)")
    p.add_argument("--size", type=int, help="edge of the cubes (default 1024, --quick 256)")
    p.add_argument("--layouts", nargs="+", choices=[*LAYOUTS, "huge"], help="default: all")
    p.add_argument("--axes", nargs="+", type=int, choices=[0, 1, 2], help="default 0 1 2 (0 2)")
    p.add_argument("--presses", type=int, help="ArrowRight presses per session (default 30/5)")
    p.add_argument("--warmup-presses", type=int, default=None, help="left out (default 3/1)")
    p.add_argument("--steps", type=int, help="server-side drag steps (default 30/15)")
    p.add_argument("--jumps", type=int, help="server-side random jumps (default 10/5)")
    p.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS), help="browser apps")
    p.add_argument("--no-browser", action="store_true", help="server-side measurements only")
    p.add_argument(
        "--servers",
        choices=["row", "layout", "run"],
        help="a new panel server per tool and row, per layout, or one for the whole run "
        "(default: layout; run with --quick)",
    )
    p.add_argument("--cold", action="store_true", help="evict the file from the page cache first")
    p.add_argument(
        "--no-pyramids",
        action="store_true",
        help="keep dashapp from building/using pyramids (default: built before timing)",
    )
    p.add_argument("--press-timeout", type=float, default=30, help="seconds before a press fails")
    p.add_argument("--settle-ms", type=float, default=300, help="quiet time that ends a press")
    p.add_argument(
        "--calm",
        type=float,
        metavar="LOAD",
        help="before each row, wait (up to 5 min) for the 1-minute load average to drop below LOAD",
    )
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="volume folder")
    p.add_argument(
        "--repo", type=Path, default=HERE.parent, help="dashapp checkout to measure (default: here)"
    )
    p.add_argument(
        "--ref",
        help="measure this commit of --repo (exported to a temporary folder), not its work tree",
    )
    p.add_argument(
        "--dashapp-cache",
        type=Path,
        default=OUT / "dashapp-cache",
        help="DASHAPP_CACHE for dashapp (its pyramids), kept between runs",
    )
    p.add_argument(
        "--baseline",
        metavar="REF",
        help="also measure commit REF of --repo in the browser, on the same rows right after "
        "dashapp (before/after in one run)",
    )
    a = p.parse_args(argv)
    layouts = a.layouts or list(LAYOUTS)
    if a.huge and "huge" not in layouts:
        layouts.append("huge")
    return Settings(
        quick=a.quick,
        size=a.size or (256 if a.quick else 1024),
        layouts=layouts,
        axes=a.axes or ([0, 2] if a.quick else [0, 1, 2]),
        presses=a.presses or (5 if a.quick else 30),
        warmup_presses=a.warmup_presses if a.warmup_presses is not None else (1 if a.quick else 3),
        steps=a.steps or (15 if a.quick else 30),
        jumps=a.jumps if a.jumps is not None else (5 if a.quick else 10),
        tools=a.tools,
        browser=not a.no_browser,
        servers=a.servers or ("run" if a.quick else "layout"),
        cold=a.cold,
        pyramids=not a.no_pyramids,
        press_timeout_s=a.press_timeout,
        settle_ms=a.settle_ms,
        calm=a.calm,
        cache=str(a.cache.resolve()),
        repo=str(a.repo.resolve()),
        ref=a.ref,
        dashapp_cache=str(a.dashapp_cache.resolve()),
        baseline=a.baseline,
    )


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(settings: Settings) -> dict[str, Any]:
    """Generate the volumes, measure every row, return everything measured."""
    cache = Path(settings.cache)
    tmp = Path(tempfile.mkdtemp(prefix="slicer-bench-"))
    logs = tmp / "logs"
    logs.mkdir()
    info = machine(Path(settings.repo), settings.ref)
    repo = snapshot(Path(settings.repo), settings.ref, tmp) if settings.ref else Path(settings.repo)
    # dashapp's cache (pyramids) for this process and the servers alike; --no-pyramids raises
    # the size a dataset needs before dashapp builds one out of reach.
    os.environ["DASHAPP_CACHE"] = settings.dashapp_cache
    if not settings.pyramids:
        os.environ["DASHAPP_PYRAMID_MIN_MB"] = str(10**12)
    sys.path.insert(0, str(repo))  # measure this checkout's dashapp, not an installed copy
    import dashapp

    log(f"dashapp from {Path(dashapp.__file__).parent}")
    t_gen = time.perf_counter()
    volumes = []
    for layout in settings.layouts:
        volume = ensure_volume(volume_spec(layout, settings.size, cache))
        log(describe_volume(volume))
        volumes.append(volume)
    generation_s = time.perf_counter() - t_gen

    rows: list[dict[str, Any]] = []
    browser_runs: list[dict[str, Any]] = []
    pyramids: dict[str, Any] = {}
    baseline = (
        snapshot(Path(settings.repo), settings.baseline, tmp, "baseline-src")
        if settings.baseline
        else None
    )
    plans = browser_plans(repo, cache, baseline)
    tools = list(settings.tools) + (["baseline"] if baseline is not None else [])

    pw_cm = browser = None
    if settings.browser:
        from playwright.sync_api import sync_playwright

        pw_cm = sync_playwright()
        browser = launch_chromium(pw_cm.__enter__(), tmp)

    def warm(plan: BrowserPlan, server: PanelServer, volume: Volume, axis: int, index: int):
        """One untimed session, then wait for the server to go idle (numba compiles, imports)."""
        t0 = time.perf_counter()
        r = measure_app(
            browser,
            plan.tool + "-warmup",
            plan.url(server, volume, axis, index),
            plan.host_selector,
            presses=2,
            warmup=0,
            timeout_s=settings.press_timeout_s,
        )
        idle = server.wait_idle(timeout=60)
        log(f"  {plan.tool}: warm-up session {time.perf_counter() - t0:.0f} s (idle {idle:.0f} s)")
        return {"seconds": time.perf_counter() - t0, "error": r.error}

    pool = ServerPool(settings.servers, logs, warm)
    try:
        for volume in volumes:
            before_read = (lambda p=volume.path: evict(p)) if settings.cold else None
            if settings.pyramids:
                log(f"{volume.path.name}: dashapp's pyramid (built once, then reused)...")
                pyramids[volume.path.name] = ensure_pyramid(volume.path)
                with contextlib.suppress(Exception):  # close the handle describe() opened
                    from dashapp.data import HANDLES

                    HANDLES.clear()
                log(f"{volume.path.name}: pyramid {pyramids[volume.path.name]}")
            if not settings.cold:
                warmed = prewarm(volume.path)
                log(
                    f"{volume.path.name}: "
                    + (
                        f"read once into the page cache in {warmed:.1f} s"
                        if warmed is not None
                        else "larger than half the free memory: not pre-read"
                    )
                )
            for axis in settings.axes:
                n = volume.shape[axis]
                steps = slice_sequence(n, settings.steps, settings.jumps, seed=axis)
                label = f"{volume.layout} axis {axis}"
                if settings.calm is not None:
                    waited = wait_for_calm(settings.calm)
                    log(
                        f"{label}: waited {waited:.0f} s for the load to drop below {settings.calm}"
                    )
                load = os.getloadavg()[0]
                h = measure_h5py(volume.path, axis, steps, settings.cold)
                log(f"{label}: h5py median {h['median_ms']:.1f} ms, p95 {h['p95_ms']:.1f} ms")
                d = measure_dashapp_server(volume.path, axis, steps, before_read)
                log(f"{label}: dashapp read_slice median {d['median_ms']:.1f} ms, p95 "
                    f"{d['p95_ms']:.1f} ms ({d['image_shape']})")  # fmt: skip
                row_d = {"layout": volume.layout, "axis": axis, "tool": "dashapp", "server": d}
                row_h = {"layout": volume.layout, "axis": axis, "tool": "holoviews", "server": None}
                row_p = {"layout": volume.layout, "axis": axis, "tool": "h5py", "server": h}
                row_b = {
                    "layout": volume.layout,
                    "axis": axis,
                    "tool": f"dashapp at {settings.baseline}",
                    "server": None,
                }
                for r in (row_d, row_h, row_p, row_b):
                    r["load_avg_1min"] = load
                index = start_index(n, settings.presses)
                # The baseline runs right after dashapp on the same row: same load, same volume.
                for tool in tools if browser is not None else []:
                    plan = plans[tool]
                    row = {"dashapp": row_d, "holoviews": row_h, "baseline": row_b}[tool]
                    try:
                        with pool.server(plan, volume, axis, index) as (server, warm_info):
                            server.sampler.reset_window()
                            result: AppRun = measure_app(
                                browser,
                                tool,
                                plan.url(server, volume, axis, index),
                                plan.host_selector,
                                presses=settings.presses + settings.warmup_presses,
                                warmup=settings.warmup_presses,
                                server=server,
                                timeout_s=settings.press_timeout_s,
                                settle_ms=settings.settle_ms,
                                before_press=(lambda i, p=volume.path: evict(p))
                                if settings.cold
                                else None,
                            )
                            summary = result.summary()
                            if settings.servers != "row":  # the server served other rows
                                summary["peak_rss_mb"] = result.window_peak_rss_mb
                            row["browser"] = summary
                            row["error"] = result.error
                            if result.error:
                                row["server_log"] = server.log_tail()
                            browser_runs.append(
                                {
                                    "layout": volume.layout,
                                    "axis": axis,
                                    "warmup_session": warm_info,
                                    **result.to_json(),
                                }
                            )
                        log(
                            f"{label}: {tool} browser median {_f(summary['browser_median_ms'])} "
                            f"ms, p95 {_f(summary['browser_p95_ms'])} ms, "
                            f"{_f(summary['kb_per_frame'])} KB/frame, peak RSS "
                            f"{_f(summary['peak_rss_mb'])} MB, null check "
                            f"{'passed' if result.null_check.get('passed') else 'FAILED'}"
                            + (f", ERROR {result.error}" if result.error else "")
                        )
                    except Exception as exc:  # keep the other rows
                        row["error"] = f"{type(exc).__name__}: {exc}"
                        log(f"{label}: {tool} failed: {row['error']}")
                measured_hv = browser is not None and "holoviews" in settings.tools
                rows += [row_d, row_h, row_p] if measured_hv else [row_d, row_p]
                if baseline is not None and browser is not None:
                    rows.append(row_b)
    finally:
        pool.close()
        if browser is not None:
            browser.close()
            pw_cm.__exit__(None, None, None)
    info["load_avg_end"] = list(os.getloadavg())
    return {
        "settings": asdict(settings),
        "machine": info,
        "volumes": [
            {
                "name": v.path.name,
                "layout": v.layout,
                "shape": list(v.shape),
                "chunks": list(v.chunks) if v.chunks else None,
                "compression": v.compression,
                "file_bytes": v.file_bytes,
                "raw_bytes": v.raw_bytes,
                "generation_s": v.generation_s,
                "reused": v.reused,
            }
            for v in volumes
        ],
        "generation_s": generation_s,
        "pyramids": pyramids,
        "rows": rows,
        "ratios": ratios(rows),
        "browser_runs": browser_runs,
        "logs": str(logs),
    }


def report(results: dict[str, Any]) -> str:
    """The markdown printed at the end of a run."""
    s = results["settings"]
    huge = " (and the huge volume)" if "huge" in s["layouts"] else ""
    lines = [f"## Slicer benchmark: {s['size']}³ float32{huge}"]
    lines += ["", describe_machine(results["machine"]), ""]
    lines.append("Volumes:")
    for v in results["volumes"]:
        made = "reused" if v["reused"] else f"generated in {v['generation_s']:.1f} s"
        ratio = v["raw_bytes"] / max(v["file_bytes"], 1)
        lines.append(
            f"- {v['name']}: {v['layout']}, {v['file_bytes'] / 2**30:.2f} GiB "
            f"(compression {ratio:.2f}), {made}"
        )
    lines.append(f"- volumes ready in {results['generation_s']:.1f} s")
    for name, pyr in results.get("pyramids", {}).items():
        if pyr.get("state") in ("built", "reused"):
            took = f"built in {pyr['seconds']:.0f} s" if pyr.get("seconds") else "reused"
            size = f", {pyr['bytes'] / 2**30:.2f} GiB" if pyr.get("bytes") else ""
            lines.append(f"- dashapp pyramid of {name}: {pyr['levels']} levels{size}, {took}")
        else:
            lines.append(f"- dashapp pyramid of {name}: {pyr.get('state')}")
    lines += [
        "",
        f"Server side: {s['steps']} successive slices + {s['jumps']} random jumps per row "
        f"({'page cache evicted before each read' if s['cold'] else 'file in the page cache'}; "
        f"dashapp {'with its pyramids built beforehand' if s['pyramids'] else 'without pyramids'}"
        "). "
        f"Browser: {s['presses']} ArrowRight presses after {s['warmup_presses']} warm-up ones, "
        + {
            "row": "a new server per tool and row",
            "layout": "a new server per tool and layout (shared by its axes)",
            "run": "one server per tool for all rows",
        }[s["servers"]]
        + ".",
        "",
        table(results["rows"]),
        "",
        "Ratios (> 1: dashapp is faster or smaller; dashapp / h5py > 1: dashapp's server read is "
        "slower than a plain h5py read):",
        "",
        ratio_table(results["ratios"]),
    ]
    runs = results["browser_runs"]
    checks = [r["null_check"].get("passed") for r in runs]
    failed = [r for r in runs if r.get("error")]
    presses = [p for r in runs for p in r["presses"][r["warmup"] :] if p["latency_ms"] is not None]
    after = [
        p for p in presses if p["ws_data_ms"] is not None and p["latency_ms"] >= p["ws_data_ms"]
    ]
    lines += [
        "",
        f"Probe checks: {sum(bool(c) for c in checks)}/{len(checks)} sessions passed the null "
        "checks (a key press that changes nothing, and a square drawn beside the frame, are not "
        "seen; a square drawn inside the frame is); in "
        f"{len(after)}/{len(presses)} timed presses the pixels changed after the image data "
        "arrived.",
    ]
    if failed:
        lines.append(f"Errors in {len(failed)} browser sessions: see the JSON.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--report"]:  # print the report of an earlier run again
        print(report(json.loads(Path(args[1]).read_text())))
        return 0
    settings = parse_args(argv)
    # A SIGTERM ends the run like Ctrl-C: servers are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    results = run(settings)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = OUT / f"results-{stamp}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    print(report(results))
    print(f"\nResults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
