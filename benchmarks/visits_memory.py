"""Server memory as page visits come and go: does a page's memory go away when its session ends?

One ``panel serve apps/slicer.py`` per dashapp commit compared, and one Chromium page that
opens the slicer ``--visits`` times (each visit a new page load, so a new Bokeh session; the
previous one ends), on the 1024³ gzip volume, a new axis and slice each time, and presses → three
times per visit. The server's RSS is read after each visit and again after the page has been
blank for ``--blank`` seconds (Bokeh discards ended sessions after ~15 s). The table gives the
RSS after the first visit, after the last, the growth per visit over the second half (after the
chunk cache has filled) and the RSS once every session has ended.

    python benchmarks/visits_memory.py                          # this work tree, 30 visits
    python benchmarks/visits_memory.py --ref 4f671e3 --ref HEAD # two commits, side by side

Each ``--ref`` is exported with ``git archive`` and served from there (the volume's pyramid,
in ``benchmarks/out/dashapp-cache``, is shared; it is built first if missing).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from browser_latency import PanelServer, launch_chromium, open_slicer, probe_page  # noqa: E402
from slicer_bench import snapshot  # noqa: E402
from volumes import DATASET, DEFAULT_CACHE, ensure_volume, volume_spec  # noqa: E402

OUT = HERE / "out"


def visit_all(server: PanelServer, volume, visits: int, blank: float, logs: Path) -> dict:
    from playwright.sync_api import sync_playwright

    rss: list[float] = []
    presses: list[float] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw, logs)
        context, page, probe = probe_page(browser)
        for v in range(visits):
            axis = v % 3
            index = volume.shape[axis] // 4 + v
            open_slicer(
                page,
                probe,
                f"{server.base}/slicer?file={volume.path.name}&dataset={DATASET}&axis={axis}"
                f"&index={index}&cmap=fire&scale=linear",
            )
            for i in range(3):
                probe.wait_quiet(timeout_s=5)
                s = probe.press("ArrowRight", i, timeout_s=120)
                if s.latency_ms is not None:
                    presses.append(s.latency_ms)
            rss.append(server.sampler.rss() / 2**20)
            print(f"  visit {v + 1:3d}: {rss[-1]:7.0f} MB", flush=True)
        page.goto("about:blank")
        time.sleep(blank)
        after = server.sampler.rss() / 2**20
        context.close()
        browser.close()
    half = len(rss) // 2
    tail = rss[half:]
    growth = (tail[-1] - tail[0]) / max(1, len(tail) - 1)
    return {
        "rss_mb": rss,
        "first_mb": rss[0],
        "last_mb": rss[-1],
        "growth_mb_per_visit": growth,
        "after_blank_mb": after,
        "peak_mb": server.sampler.peak / 2**20,
        "median_press_ms": statistics.median(presses) if presses else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ref", action="append", help="a commit to measure (repeatable)")
    p.add_argument("--visits", type=int, default=30)
    p.add_argument("--blank", type=float, default=45, help="seconds on a blank page at the end")
    p.add_argument("--volumes", type=Path, default=DEFAULT_CACHE, help="volume folder")
    p.add_argument("--cache", type=Path, default=OUT / "dashapp-cache", help="DASHAPP_CACHE")
    args = p.parse_args(argv)

    volume = ensure_volume(volume_spec("gzip", 1024, args.volumes))
    logs = Path(tempfile.mkdtemp(prefix="visits-memory-"))
    refs = args.ref or [None]
    results = {}
    for n, ref in enumerate(refs):
        if ref is not None:
            (logs / f"ref{n}").mkdir()
        src = REPO if ref is None else snapshot(REPO, ref, logs / f"ref{n}")
        label = ref or "work tree"
        print(f"{label}: {args.visits} visits", flush=True)
        server = PanelServer(
            src / "apps" / "slicer.py",
            ["--root", str(volume.path.parent)],
            cwd=src,
            log=logs / f"server-{n}.log",
            env={"DASHAPP_CACHE": str(args.cache)},
            python_path=src,
        )
        with server:
            results[label] = visit_all(server, volume, args.visits, args.blank, logs)
    out = OUT / f"visits-memory-{time.strftime('%Y%m%d-%H%M%S')}.json"
    machine = f"{platform.node()} · {platform.processor() or platform.machine()}"
    out.write_text(json.dumps({"machine": machine, "volume": str(volume.path), **results}))
    print(f"\n{args.visits} page visits, 3 presses each, on {volume.path.name}; {machine}\n")
    print("| dashapp | after visit 1 | after the last | growth per visit (2nd half) "
          "| all sessions ended | peak | median press → pixels |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        press = f"{r['median_press_ms']:.0f} ms" if r["median_press_ms"] is not None else "–"
        print(
            f"| {label} | {r['first_mb']:.0f} MB | {r['last_mb']:.0f} MB "
            f"| {r['growth_mb_per_visit']:.1f} MB | {r['after_blank_mb']:.0f} MB "
            f"| {r['peak_mb']:.0f} MB | {press} |"
        )
    print(f"\nresults in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
