"""Server memory while a person browses a volume larger than this machine's RAM.

One ``panel serve apps/slicer.py`` (dashapp as a user runs it) and one Chromium page. The
volume is ``volumes.py``'s ``huge`` one (2048 × 2048 × 1920 float32, gzip, 64³ chunks: 32 GB
raw, ~22 GiB on disk, more than the 24 GiB of RAM). The run has two phases:

1. **building**: the page opens the volume with no pyramid in the cache, so the server builds
   it in the background (local threads) while the browser keeps pressing → on the slice slider
   of each axis in turn, plus jumps (``PageUp``: 5 slices). Each axis is a new page load, so
   a new session: a long build sees dozens of sessions come and go. Before the pyramid exists
   a 2048² slice is read at overview level 1, averaged from its 1,024 chunks (the chunk layer,
   256 MB at that level, stays in the 512 MB decoded-chunk cache).
2. **built**: the same presses once the pyramid is complete (reads from the overview levels).

The server's resident memory (the process and its children) is sampled every 50 ms; the table
gives the peak and median per phase, the pyramid's build time and size, and the median key
press to changed pixels per phase, and the JSON keeps the RSS of each second of the run.
Memory mapped from files counts in RSS too: the figure is what ``top`` shows, not only the
heap.

    python benchmarks/huge_memory.py                 # generates the volume if missing (~25 min)
    python benchmarks/huge_memory.py --reuse-pyramid # skip phase 1 if a pyramid exists
    python benchmarks/huge_memory.py --no-pyramid 1  # one round of full-resolution reads only

Needs ~22 GiB of disk for the volume and ~32 GB for its pyramid (`--cache`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from browser_latency import (  # noqa: E402
    LatencyProbe,
    PanelServer,
    launch_chromium,
    open_slicer,
    probe_page,
)
from volumes import DATASET, DEFAULT_CACHE, ensure_volume, volume_spec  # noqa: E402

OUT = HERE / "out"


class Timeline:
    """RSS samples of the server, labelled with the phase they were taken in."""

    def __init__(self, server: PanelServer, interval: float = 0.05) -> None:
        self.server, self.interval = server, interval
        self.phase = "start"
        self.samples: list[tuple[float, str, int]] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._halt.is_set():
            self.samples.append((time.monotonic() - t0, self.phase, self.server.sampler.rss()))
            self._halt.wait(self.interval)

    def __enter__(self) -> Timeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join(2)

    def stats(self, phase: str) -> dict[str, float | None]:
        values = [r for _, p, r in self.samples if p == phase]
        if not values:
            return {"peak_mb": None, "median_mb": None, "seconds": 0}
        times = [t for t, p, _ in self.samples if p == phase]
        return {
            "peak_mb": max(values) / 2**20,
            "median_mb": statistics.median(values) / 2**20,
            "seconds": times[-1] - times[0],
        }


def pyramid_ready(cache: Path, volume: Path) -> Path | None:
    """The pyramid folder of ``volume`` in dashapp's cache ``cache``, if complete."""
    root = cache / "pyramids"
    if not root.is_dir():
        return None
    for meta in root.glob("*/meta.json"):
        try:
            if json.loads(meta.read_text()).get("source") == str(volume):
                return meta.parent
        except (OSError, ValueError):
            continue
    return None


class ServerDied(RuntimeError):
    pass


def browse(
    page, probe: LatencyProbe, server: PanelServer, file: str, shape, rounds: int, stop
) -> list:
    """Press → and jump on each axis in turn; returns the press samples."""
    samples = []
    base = server.base

    def check() -> None:
        if server.proc.poll() is not None:
            raise ServerDied(f"the server exited ({server.proc.returncode}): killed for memory?")

    for _ in range(rounds):
        for axis in (0, 1, 2):
            check()
            if stop():
                return samples
            index = shape[axis] // 3
            # The build's progress bar updates every second: the page is never quiet while it
            # runs, so open_slicer waits a bounded time (only the plot's pixels time a press).
            open_slicer(
                page,
                probe,
                f"{base}/slicer?file={file}&dataset={DATASET}&axis={axis}&index={index}"
                "&cmap=fire&scale=linear",
            )
            for key in ["ArrowRight"] * 6 + ["PageUp", "ArrowRight", "PageUp", "ArrowLeft"]:
                check()
                probe.wait_quiet(timeout_s=5)
                s = probe.press(key, len(samples), timeout_s=120)
                s_dict = {"axis": axis, "key": key, "ms": s.latency_ms, "timed_out": s.timed_out}
                samples.append(s_dict)
                if stop():
                    return samples
    return samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--volumes", type=Path, default=DEFAULT_CACHE, help="volume folder")
    p.add_argument(
        "--cache", type=Path, default=OUT / "dashapp-cache", help="DASHAPP_CACHE of the server"
    )
    p.add_argument("--reuse-pyramid", action="store_true", help="keep an existing pyramid")
    p.add_argument(
        "--layout",
        default="huge",
        choices=["huge", "gzip", "chunked", "contiguous"],
        help="the volume (default huge; the 1024^3 ones make a 2-minute build, same per-block "
        "memory)",
    )
    p.add_argument("--rounds-built", type=int, default=2, help="rounds over the axes once built")
    p.add_argument(
        "--no-pyramid",
        type=int,
        metavar="ROUNDS",
        help="only browse, with pyramids switched off (full-resolution reads), for ROUNDS rounds",
    )
    args = p.parse_args(argv)

    volume = ensure_volume(volume_spec(args.layout, 1024, args.volumes))
    existing = pyramid_ready(args.cache, volume.path)
    if existing is not None and not (args.reuse_pyramid or args.no_pyramid):
        shutil.rmtree(existing)
    env = {"DASHAPP_CACHE": str(args.cache)}
    if args.no_pyramid:
        env["DASHAPP_PYRAMID_MIN_MB"] = str(10**9)  # no dataset is big enough for one
    logs = Path(tempfile.mkdtemp(prefix="huge-memory-"))
    from playwright.sync_api import sync_playwright

    result: dict = {
        "machine": f"{platform.node()} · {os.cpu_count()} cores · {platform.processor() or ''}",
        "volume": str(volume.path),
        "shape": volume.shape,
        "disk_bytes": volume.path.stat().st_size,
        "raw_bytes": volume.raw_bytes,
    }
    server = PanelServer(
        REPO / "apps" / "slicer.py",
        ["--root", str(volume.path.parent)],
        cwd=REPO,
        log=logs / "server.log",
        env=env,
        python_path=REPO,
    )
    with server, Timeline(server) as tl, sync_playwright() as pw:
        browser = launch_chromium(pw, logs)
        context, page, probe = probe_page(browser)
        presses: dict[str, list] = {}
        t0 = time.monotonic()
        if args.no_pyramid:
            tl.phase = "no pyramid"
            presses["no pyramid"] = browse(
                page, probe, server, volume.path.name, volume.shape, args.no_pyramid, lambda: 0
            )
        elif pyramid_ready(args.cache, volume.path) is None:
            tl.phase = "building"
            presses["building"] = browse(
                page, probe, server, volume.path.name, volume.shape, 1000,
                stop=lambda: pyramid_ready(args.cache, volume.path) is not None,
            )  # fmt: skip
            while pyramid_ready(args.cache, volume.path) is None:
                time.sleep(2)
            result["build_s"] = time.monotonic() - t0
        folder = pyramid_ready(args.cache, volume.path)
        if not args.no_pyramid:
            result["pyramid_bytes"] = sum(f.stat().st_size for f in folder.iterdir())
            tl.phase = "built"
            presses["built"] = browse(
                page, probe, server, volume.path.name, volume.shape, args.rounds_built, lambda: 0
            )
        tl.phase = "end"
        context.close()
        browser.close()
    phases = ("no pyramid", "building", "built")
    for phase in phases:
        result[phase] = tl.stats(phase)
        ms = [s["ms"] for s in presses.get(phase, []) if s["ms"] is not None]
        result[phase]["presses"] = len(presses.get(phase, []))
        result[phase]["timed_out"] = sum(s["timed_out"] for s in presses.get(phase, []))
        result[phase]["median_press_ms"] = statistics.median(ms) if ms else None
    result["peak_mb"] = max(r for _, _, r in tl.samples) / 2**20
    # RSS over time, one sample per second (the peak of each second): where memory grew
    per_second: dict[int, tuple[str, int]] = {}
    for t, phase, rss in tl.samples:
        if rss > per_second.get(int(t), ("", -1))[1]:
            per_second[int(t)] = (phase, rss)
    result["rss_mb_per_second"] = [
        [t, phase, round(rss / 2**20)] for t, (phase, rss) in sorted(per_second.items())
    ]
    out = OUT / f"huge-memory-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({**result, "presses": presses}, indent=1, default=str))
    raw, disk = result["raw_bytes"] / 1e9, result["disk_bytes"] / 2**30
    print(f"\n{result['machine']}\nvolume {volume.path.name}: {volume.shape}, ")
    print(f"{raw:.1f} GB raw, {disk:.1f} GiB on disk")
    if "build_s" in result:
        print(f"pyramid built by the server in {result['build_s']:.0f} s, "
              f"{result['pyramid_bytes'] / 2**30:.1f} GiB")  # fmt: skip
    print("\n| phase | seconds | presses (timed out) | median press → pixels | RSS median | peak")
    print("|---|---:|---:|---:|---:|---:")
    for phase in phases:
        r = result[phase]
        if not r["presses"]:
            continue
        med = f"{r['median_press_ms']:.0f} ms" if r["median_press_ms"] is not None else "–"
        print(f"| {phase} | {r['seconds']:.0f} | {r['presses']} ({r['timed_out']}) | {med} | "
              f"{r['median_mb']:.0f} MB | {r['peak_mb']:.0f} MB |")  # fmt: skip
    print(f"\npeak server RSS over the run: {result['peak_mb']:.0f} MB; results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
