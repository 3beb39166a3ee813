"""Many sessions on one dashapp server: each scrubbing its own dataset, alone and all at once.

Issue 3, requirement 5: ten sessions scrubbing different datasets on one server stay
interactive, and one slow read does not stall the others. One ``panel serve apps/slicer.py``
serves every session; one Chromium opens a page (its own browser context) per session, each
on its own volume (``--size``³ float32, gzip / chunked 64³ / contiguous in turn, each from its
own seed), with the pyramids built beforehand (the steady state after a first visit; on the
~490-pixel plot a 512² slice is still read at full resolution, from the file). The
same in-page probe as ``slicer_bench.py`` (:mod:`browser_latency`) times key press → changed
pixels in each page. Three phases:

1. **alone**: each session presses → ``--presses`` times while the other pages sit idle;
2. **together**: ``--presses`` waves; in each wave every page is armed, then → is pressed in
   all of them within a few milliseconds, then each page's press is collected: ten sessions
   asking for a new slice at the same moment, the worst case for the server;
3. **with a slow neighbour**: the waves again, while one more session views the 1024³ gzip
   volume with ``agg=max``: the pyramid cannot serve a max, so every one of its slices is a
   full-resolution read across the chunking (256 chunks of 1 MB to inflate). Before each
   wave it jumps to a random slice (typed into the slider's number box), so it keeps the
   server's decoder busy throughout.

Prints a table (medians and p95 over all sessions' presses, the spread of per-session medians,
timeouts) and writes everything as JSON to ``benchmarks/out/sessions-<timestamp>.json``.

    python benchmarks/sessions_bench.py                       # 10 sessions, 512³, ~10 min
    python benchmarks/sessions_bench.py --sessions 4 --size 256 --presses 5   # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from browser_latency import (  # noqa: E402
    VIEWPORT,
    AppRun,
    LatencyProbe,
    PanelServer,
    PressSample,
    launch_chromium,
    median,
)
from slicer_bench import (  # noqa: E402
    OUT,
    describe_machine,
    ensure_pyramid,
    log,
    machine,
    start_index,
)
from volumes import (  # noqa: E402
    CHUNK,
    DATASET,
    DEFAULT_CACHE,
    Volume,
    ensure_volume,
    volume_spec,
)

REPO = HERE.parent
LAYOUT_CYCLE = ("gzip", "chunked", "contiguous")
PHASES = ("alone", "together", "slow neighbour")


def session_volumes(n: int, size: int, cache: Path) -> list[Volume]:
    """``n`` different volumes (own seed each), layouts in turn, in ``cache/sessions``."""
    folder = cache / "sessions"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        layout = LAYOUT_CYCLE[i % len(LAYOUT_CYCLE)]
        shape = (size, size, size)
        chunks = None if layout == "contiguous" else (min(CHUNK, size),) * 3
        compression = "gzip" if layout == "gzip" else None
        spec = Volume(folder / f"s{i:02d}-{layout}-{size}.h5", layout, shape, chunks, compression)
        out.append(ensure_volume(spec, seed=1000 + i, progress=False))
    return out


class Session:
    """One page of the server on one volume, with the latency probe installed."""

    def __init__(self, browser: Any, url: str, name: str) -> None:
        self.name, self.url = name, url
        self.context = browser.new_context(viewport=VIEWPORT)
        LatencyProbe.prepare(self.context)
        self.page = self.context.new_page()
        self.page.set_default_timeout(180_000)
        self.probe = LatencyProbe(self.page, ".dashapp-plot")
        self.samples: dict[str, list[PressSample]] = {phase: [] for phase in PHASES}

    def open(self) -> None:
        self.page.goto(self.url)
        self.probe.install(timeout_s=180)
        self.page.mouse.move(1, 1)  # no hover tooltip over the plot
        self.probe.wait_quiet(quiet_ms=1000, timeout_s=120)
        self.focus()

    def focus(self) -> None:
        self.page.locator(".noUi-handle").first.focus()

    def jump(self, index: int) -> None:
        """Type ``index`` into the slice slider's number box (a jump, not a step)."""
        box = self.page.locator(".dashapp-index .bk-input").first
        box.fill(str(index))
        box.press("Enter")
        self.focus()

    def status(self) -> str:
        return self.page.locator(".dashapp-status-text").first.inner_text(timeout=5000)

    def close(self) -> None:
        self.context.close()


def summarize(samples: list[PressSample]) -> dict[str, Any]:
    """:meth:`AppRun.summary` of the presses, under this report's names, plus the slowest."""
    summary = AppRun(app="", url="", presses=samples).summary()
    lat = [s.latency_ms for s in samples if s.latency_ms is not None]
    return {
        "presses": summary["presses"],
        "median_ms": summary["browser_median_ms"],
        "p95_ms": summary["browser_p95_ms"],
        "max_ms": max(lat) if lat else None,
        "data_median_ms": summary["data_median_ms"],
        "timeouts": summary["timeouts"],
        "unchanged": summary["unchanged"],
    }


def press_alone(session: Session, presses: int, timeout_s: float) -> None:
    for i in range(presses):
        session.probe.wait_quiet(timeout_s=30)
        sample = session.probe.press("ArrowRight", i, timeout_s=timeout_s)
        session.samples["alone"].append(sample)


def press_waves(
    sessions: list[Session],
    phase: str,
    waves: int,
    timeout_s: float,
    before_wave: Any = None,
) -> list[float]:
    """Every session presses → at (nearly) the same moment, ``waves`` times; returns the
    spread (ms) between the first and the last key press of each wave."""
    spreads = []
    for w in range(waves):
        for s in sessions:
            s.probe.wait_quiet(timeout_s=30)
        if before_wave is not None:
            before_wave(w)
        for s in sessions:
            s.probe.arm()
        t0 = time.perf_counter()
        for s in sessions:
            s.page.keyboard.press("ArrowRight")
        spreads.append((time.perf_counter() - t0) * 1000)
        for s in sessions:
            s.samples[phase].append(s.probe.collect(w, timeout_s=timeout_s))
    return spreads


def run(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    cache = Path(args.cache)
    os.environ["DASHAPP_CACHE"] = str(args.dashapp_cache)
    sys.path.insert(0, str(REPO))  # this checkout's dashapp
    info = machine(REPO)
    log(f"generating / finding {args.sessions} volumes of {args.size}³ ...")
    t0 = time.perf_counter()
    volumes = session_volumes(args.sessions, args.size, cache)
    log(f"volumes ready in {time.perf_counter() - t0:.0f} s")
    pyramids = {}
    for v in volumes:
        pyramids[v.path.name] = ensure_pyramid(v.path)
        log(f"{v.path.name}: pyramid {pyramids[v.path.name].get('state')}")
    slow_volume = None
    if args.slow:
        slow_volume = ensure_volume(volume_spec("gzip", args.slow_size, cache))
        pyramids[slow_volume.path.name] = ensure_pyramid(slow_volume.path)
        log(f"slow neighbour: {slow_volume.path.name} with agg=max (no pyramid reads)")

    tmp = Path(tempfile.mkdtemp(prefix="sessions-bench-"))

    def url(server: PanelServer, volume: Volume, extra: str = "") -> str:
        rel = volume.path.relative_to(cache).as_posix()
        # room for every phase's presses and the warm-up one
        start = start_index(volume.shape[0], 3 * args.presses + 1)
        return (
            f"{server.base}/slicer?file={rel}&dataset={DATASET}&axis=0&index={start}"
            f"&cmap=fire&scale=linear{extra}"
        )

    result: dict[str, Any] = {
        "machine": info,
        "settings": vars(args)
        | {"cache": str(args.cache), "dashapp_cache": str(args.dashapp_cache)},
        "volumes": [{"name": v.path.name, "layout": v.layout, "shape": v.shape} for v in volumes],
        "pyramids": pyramids,
    }
    server = PanelServer(
        REPO / "apps" / "slicer.py",
        ["--root", str(cache)],
        cwd=REPO,
        log=tmp / "server.log",
        env={"DASHAPP_CACHE": str(args.dashapp_cache)},
        python_path=REPO,
    )
    with server, sync_playwright() as pw:
        browser = launch_chromium(pw, tmp)
        sessions = [
            Session(browser, url(server, v), f"s{i:02d} {v.layout}") for i, v in enumerate(volumes)
        ]
        log(f"opening {len(sessions)} pages ...")
        for s in sessions:
            s.open()
            s.probe.press("ArrowRight", -1, timeout_s=args.timeout)  # warm-up, not recorded
        server.wait_idle()
        idle_rss = server.sampler.rss() / 2**20
        server.sampler.reset_window()

        log("phase 1: each session alone")
        for s in sessions:
            press_alone(s, args.presses, args.timeout)
        peak_alone = server.sampler.window_peak / 2**20
        server.sampler.reset_window()

        log(f"phase 2: {len(sessions)} sessions together")
        spreads = press_waves(sessions, "together", args.presses, args.timeout)
        peak_together = server.sampler.window_peak / 2**20
        server.sampler.reset_window()

        slow_info: dict[str, Any] = {}
        if slow_volume is not None:
            log("phase 3: together, beside a session reading full resolution")
            slow = Session(browser, url(server, slow_volume, "&agg=max"), "slow")
            t_open = time.perf_counter()
            slow.open()
            slow_info["open_s"] = time.perf_counter() - t_open
            rng = random.Random(7)
            statuses: list[str] = []

            def jump(w: int) -> None:
                if w and len(statuses) < w:
                    statuses.append(slow.status())
                slow.jump(rng.randrange(slow_volume.shape[0]))

            server.sampler.reset_window()
            spreads += press_waves(sessions, "slow neighbour", args.presses, args.timeout, jump)
            statuses.append(slow.status())
            slow_info["statuses"] = statuses
            peak_slow = server.sampler.window_peak / 2**20
            slow.close()
        else:
            peak_slow = None
        for s in sessions:
            s.close()
        browser.close()
        log_tail = server.log_tail(4000)

    phases = {}
    for phase in PHASES:
        all_samples = [x for s in sessions for x in s.samples[phase]]
        if not all_samples:
            continue
        per_session = [summarize(s.samples[phase])["median_ms"] for s in sessions]
        phases[phase] = summarize(all_samples) | {
            "session_medians_ms": per_session,
        }
    phases["alone"]["peak_rss_mb"] = peak_alone
    phases["together"]["peak_rss_mb"] = peak_together
    if "slow neighbour" in phases:
        phases["slow neighbour"]["peak_rss_mb"] = peak_slow
    result |= {
        "phases": phases,
        "sessions": [
            {"name": s.name, "url": s.url}
            | {phase: [asdict(x) for x in s.samples[phase]] for phase in PHASES}
            for s in sessions
        ],
        "idle_rss_mb": idle_rss,
        "peak_rss_mb": server.sampler.peak / 2**20,
        "wave_spread_ms": {"median": median(spreads), "max": max(spreads) if spreads else None},
        "slow": slow_info,
        "server_log_tail": log_tail,
    }
    return result


def _f(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def report(r: dict[str, Any]) -> str:
    lines = [
        f"{len(r['volumes'])} sessions, one server, each on its own "
        f"{'x'.join(map(str, r['volumes'][0]['shape']))} volume "
        f"({', '.join(sorted({v['layout'] for v in r['volumes']}))}); pyramids built.",
        "",
        "| phase | presses | key → pixels median | p95 | max | per-session medians "
        "| data arrives (median) | timeouts | peak server RSS |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for phase, p in r["phases"].items():
        meds = [m for m in p["session_medians_ms"] if m is not None]
        spread = f"{_f(min(meds))}–{_f(max(meds))} ms" if meds else "-"
        lines.append(
            f"| {phase} | {p['presses']} | {_f(p['median_ms'])} ms | {_f(p['p95_ms'])} ms "
            f"| {_f(p['max_ms'])} ms | {spread} | {_f(p['data_median_ms'])} ms "
            f"| {p['timeouts']} | {_f(p.get('peak_rss_mb'))} MB |"
        )
    alone = r["phases"].get("alone", {}).get("median_ms")
    for phase in ("together", "slow neighbour"):
        m = r["phases"].get(phase, {}).get("median_ms")
        if alone and m:
            lines.append(f"\n{phase} / alone (medians): {m / alone:.2f}")
    ws = r["wave_spread_ms"]
    lines.append(
        f"\nKeys of one wave pressed within {_f(ws['median'])} ms (median; max {_f(ws['max'])})."
    )
    if r.get("slow"):
        st = r["slow"].get("statuses", [])
        lines.append(
            f"Slow neighbour: page opened in {_f(r['slow'].get('open_s'), 1)} s; "
            f"its status after the waves: {st[-1] if st else '-'}"
        )
    lines.append(f"\nServer RSS idle {_f(r['idle_rss_mb'])} MB, peak {_f(r['peak_rss_mb'])} MB.")
    lines.append("\n" + describe_machine(r["machine"]))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--size", type=int, default=512, help="edge of each session's volume")
    ap.add_argument("--presses", type=int, default=10, help="presses per session per phase")
    ap.add_argument("--no-slow", dest="slow", action="store_false", help="skip phase 3")
    ap.add_argument("--slow-size", type=int, default=1024, help="edge of the slow volume")
    ap.add_argument("--timeout", type=float, default=30, help="seconds before a press times out")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where volumes live")
    ap.add_argument("--dashapp-cache", type=Path, default=OUT / "dashapp-cache")
    ap.add_argument("--report", type=Path, help="print the table of an earlier run's JSON")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return 0
    r = run(args)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"sessions-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(r, indent=1, default=str))
    print(report(r))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
