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
    python benchmarks/sessions_bench.py --browsers 1 --procs 2   # 1 page + 9 protocol, 2 procs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import tempfile
import threading
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
    percentile,
)
from protocol_client import ClientLoop, ProtocolSession  # noqa: E402
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
PHASES = ("alone", "together", "slow neighbour", "scrubbing")
#: The plot's inner (height, width) at VIEWPORT, if no page is open to report it (what the
#: page reported in the runs of 2026-12-04).
DEFAULT_FRAME = (636, 499)


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
    clients: list[Client] = (),
) -> list[float]:
    """Every session presses → at (nearly) the same moment, ``waves`` times; returns the
    spread (ms) between the first and the last key press of each wave. Protocol clients
    step their sliders in the same moment (first, since that costs microseconds)."""
    spreads = []
    for w in range(waves):
        for s in sessions:
            s.probe.wait_quiet(timeout_s=30)
        if before_wave is not None:
            before_wave(w)
        for s in sessions:
            s.probe.arm()
        t0 = time.perf_counter()
        steps = [c.session.step_async(1, timeout_s) for c in clients]
        for s in sessions:
            s.page.keyboard.press("ArrowRight")
        spreads.append((time.perf_counter() - t0) * 1000)
        for s in sessions:
            s.samples[phase].append(s.probe.collect(w, timeout_s=timeout_s))
        for c, step in zip(clients, steps, strict=True):
            c.record(phase, step.result(timeout_s + 5))
    return spreads


class Client:
    """A session without a browser (:mod:`protocol_client`), and its steps' timings."""

    def __init__(self, session: ProtocolSession) -> None:
        self.session, self.name, self.url = session, session.name, session.url
        self.samples: dict[str, list[dict[str, Any]]] = {phase: [] for phase in PHASES}

    def record(self, phase: str, result: tuple[float | None, int]) -> None:
        ms, nbytes = result
        self.samples[phase].append({"ms": ms, "bytes": nbytes})

    def step_alone(self, presses: int, timeout_s: float) -> None:
        for _ in range(presses):
            self.record("alone", self.session.step(1, timeout_s))
            time.sleep(0.3)  # as a page waits for quiet between presses


def scrub(
    sessions: list[Session],
    clients: list[Client],
    presses: int,
    timeout_s: float,
    rng: random.Random,
) -> dict[str, Any]:
    """Every protocol client drags its slider without pause (the next step as soon as the
    last frame arrived), alternating direction every 20 steps, while each page presses →
    ``presses`` times, at random moments 0.2-0.7 s apart."""
    import concurrent.futures as cf

    stop = threading.Event()
    counts = [0] * len(clients)

    def drag(i: int, c: Client) -> None:
        for _, ms, nbytes in c.session.drag(timeout_s):
            c.record("scrubbing", (ms, nbytes))
            counts[i] += 1
            if stop.is_set():
                return

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(max(1, len(clients))) as pool:
        futures = [pool.submit(drag, i, c) for i, c in enumerate(clients)]
        try:
            if sessions:
                for i in range(presses):
                    for s in sessions:
                        time.sleep(rng.uniform(0.2, 0.7))
                        s.samples["scrubbing"].append(
                            s.probe.press("ArrowRight", i, timeout_s=timeout_s)
                        )
            else:
                time.sleep(presses * 0.6)
        finally:
            stop.set()
        for f in futures:
            f.result()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "steps": sum(counts), "steps_per_s": sum(counts) / seconds}


def summarize_client(samples: list[dict[str, Any]]) -> dict[str, Any]:
    ms = [x["ms"] for x in samples if x["ms"] is not None]
    return {
        "steps": len(samples),
        "median_ms": median(ms),
        "p95_ms": percentile(ms, 95),
        "max_ms": max(ms) if ms else None,
        "timeouts": sum(x["ms"] is None for x in samples),
        "frame_bytes_median": median([x["bytes"] for x in samples if x["ms"] is not None]),
    }


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
        start = start_index(volume.shape[0], 4 * args.presses + 25)
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
        serve_options=["--num-procs", str(args.procs)] if args.procs != 1 else [],
    )
    n_pages = len(volumes) if args.browsers is None else min(args.browsers, len(volumes))
    with server, sync_playwright() as pw:
        browser = launch_chromium(pw, tmp)
        sessions = [
            Session(browser, url(server, v), f"s{i:02d} {v.layout}")
            for i, v in enumerate(volumes[:n_pages])
        ]
        log(f"opening {len(sessions)} pages ...")
        for s in sessions:
            s.open()
            s.probe.press("ArrowRight", -1, timeout_s=args.timeout)  # warm-up, not recorded
        frame = DEFAULT_FRAME
        if sessions:
            px = sessions[0].probe.info["px"]
            frame = (round(px[3]), round(px[2]))
        loop = ClientLoop()
        clients = []
        if n_pages < len(volumes):
            log(f"opening {len(volumes) - n_pages} protocol sessions (plot frame {frame}) ...")
        for i, v in enumerate(volumes[n_pages:], start=n_pages):
            c = Client(ProtocolSession(loop, url(server, v), frame, f"s{i:02d} {v.layout}"))
            c.session.open(timeout=180)
            c.session.step(1, args.timeout)  # warm-up, not recorded
            clients.append(c)
        server.wait_idle()
        idle_rss = server.sampler.rss() / 2**20
        server.sampler.reset_window()
        peaks: dict[str, float] = {}

        log("phase 1: each session alone")
        for s in sessions:
            press_alone(s, args.presses, args.timeout)
        for c in clients:
            c.step_alone(args.presses, args.timeout)
        peaks["alone"] = server.sampler.window_peak / 2**20
        server.sampler.reset_window()

        log(f"phase 2: {len(volumes)} sessions together")
        spreads = press_waves(sessions, "together", args.presses, args.timeout, None, clients)
        peaks["together"] = server.sampler.window_peak / 2**20
        server.sampler.reset_window()

        slow_info: dict[str, Any] = {}
        if slow_volume is not None:
            log("phase 3: together, beside a session reading full resolution")
            rng = random.Random(7)
            slow_url = url(server, slow_volume, "&agg=max")
            t_open = time.perf_counter()
            if clients or not sessions:  # the neighbour needs no browser either
                slow_c = Client(ProtocolSession(loop, slow_url, frame, "slow"))
                slow_c.session.open(timeout=180)
                slow_info["open_s"] = time.perf_counter() - t_open
                jumps: list[Any] = []

                def jump(w: int) -> None:
                    jumps.append(slow_c.session.jump_async(rng.randrange(slow_volume.shape[0])))

                server.sampler.reset_window()
                spreads += press_waves(
                    sessions, "slow neighbour", args.presses, args.timeout, jump, clients
                )
                for j in jumps:
                    slow_c.record("slow neighbour", j.result(args.timeout + 5))
                slow_info["jumps"] = summarize_client(slow_c.samples["slow neighbour"])
                slow_c.session.close()
            else:
                slow = Session(browser, slow_url, "slow")
                slow.open()
                slow_info["open_s"] = time.perf_counter() - t_open
                statuses: list[str] = []

                def jump(w: int) -> None:
                    if w and len(statuses) < w:
                        statuses.append(slow.status())
                    slow.jump(rng.randrange(slow_volume.shape[0]))

                server.sampler.reset_window()
                spreads += press_waves(sessions, "slow neighbour", args.presses, args.timeout, jump)
                statuses.append(slow.status())
                slow_info["statuses"] = statuses
                slow.close()
            peaks["slow neighbour"] = server.sampler.window_peak / 2**20
            server.sampler.reset_window()

        scrubbing: dict[str, Any] = {}
        if clients:
            log(f"phase 4: {len(clients)} protocol sessions drag without pause")
            scrubbing = scrub(sessions, clients, args.presses, args.timeout, random.Random(11))
            peaks["scrubbing"] = server.sampler.window_peak / 2**20
        for s in sessions:
            s.close()
        for c in clients:
            c.session.close()
        loop.close()
        browser.close()
        log_tail = server.log_tail(4000)

    phases = {}
    for phase in PHASES:
        all_samples = [x for s in sessions for x in s.samples[phase]]
        client_samples = [x for c in clients for x in c.samples[phase]]
        if not all_samples and not client_samples:
            continue
        phases[phase] = {"peak_rss_mb": peaks.get(phase)}
        if all_samples:
            per_session = [summarize(s.samples[phase])["median_ms"] for s in sessions]
            phases[phase] |= summarize(all_samples) | {"session_medians_ms": per_session}
        if client_samples:
            phases[phase]["protocol"] = summarize_client(client_samples) | {
                "session_medians_ms": [
                    summarize_client(c.samples[phase])["median_ms"] for c in clients
                ]
            }
    result |= {
        "pages": len(sessions),
        "protocol_sessions": len(clients),
        "frame": frame,
        "phases": phases,
        "sessions": [
            {"name": s.name, "url": s.url}
            | {phase: [asdict(x) for x in s.samples[phase]] for phase in PHASES}
            for s in sessions
        ],
        "clients": [{"name": c.name, "url": c.url} | c.samples for c in clients],
        "scrubbing": scrubbing,
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
    pages, clients = r.get("pages", len(r["volumes"])), r.get("protocol_sessions", 0)
    who = f"{pages} Chromium pages" + (f" + {clients} protocol sessions" if clients else "")
    lines = [
        f"{len(r['volumes'])} sessions ({who}), one server "
        f"({r['settings'].get('procs', 1)} process(es)), each on its own "
        f"{'x'.join(map(str, r['volumes'][0]['shape']))} volume "
        f"({', '.join(sorted({v['layout'] for v in r['volumes']}))}); pyramids built.",
        "",
        "| phase | sessions | presses | median | p95 | max | per-session medians "
        "| data arrives (median) | timeouts | peak server RSS |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]

    def row(phase: str, kind: str, p: dict[str, Any], n: Any, data: Any, rss: Any) -> str:
        meds = [m for m in p["session_medians_ms"] if m is not None]
        spread = f"{_f(min(meds))}–{_f(max(meds))} ms" if meds else "-"
        return (
            f"| {phase} | {kind} | {n} | {_f(p['median_ms'])} ms | {_f(p['p95_ms'])} ms "
            f"| {_f(p['max_ms'])} ms | {spread} | {data} | {p['timeouts']} | {rss} |"
        )

    for phase, p in r["phases"].items():
        rss = f"{_f(p.get('peak_rss_mb'))} MB"
        if p.get("presses"):
            data = f"{_f(p['data_median_ms'])} ms"
            lines.append(row(phase, "pages: key → pixels", p, p["presses"], data, rss))
            rss = ""
        if p.get("protocol"):
            q = p["protocol"]
            lines.append(row(phase, "protocol: step → frame", q, q["steps"], "(same)", rss))
    for kind, get in (
        ("pages", lambda p: p.get("median_ms")),
        ("protocol", lambda p: (p.get("protocol") or {}).get("median_ms")),
    ):
        alone = get(r["phases"].get("alone", {}))
        for phase in PHASES[1:]:
            m = get(r["phases"].get(phase, {}))
            if alone and m:
                lines.append(f"{kind}: {phase} / alone (medians): {m / alone:.2f}")
    ws = r["wave_spread_ms"]
    lines.append(
        f"\nKeys of one wave pressed within {_f(ws['median'])} ms (median; max {_f(ws['max'])})."
    )
    if r.get("scrubbing"):
        sc = r["scrubbing"]
        lines.append(
            f"Scrubbing: {sc['steps']} frames served to the protocol sessions in "
            f"{sc['seconds']:.1f} s ({sc['steps_per_s']:.1f} frames/s)."
        )
    if r.get("slow"):
        sl = r["slow"]
        st = sl.get("statuses", [])
        tail = (
            f"its jumps took {_f(sl['jumps']['median_ms'])} ms (median)"
            if sl.get("jumps")
            else f"its status after the waves: {st[-1] if st else '-'}"
        )
        lines.append(f"Slow neighbour: opened in {_f(sl.get('open_s'), 1)} s; {tail}")
    lines.append(f"\nServer RSS idle {_f(r['idle_rss_mb'])} MB, peak {_f(r['peak_rss_mb'])} MB.")
    lines.append("\n" + describe_machine(r["machine"]))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--size", type=int, default=512, help="edge of each session's volume")
    ap.add_argument("--presses", type=int, default=10, help="presses per session per phase")
    ap.add_argument(
        "--browsers",
        type=int,
        help="sessions that are Chromium pages (default: all); the rest are protocol clients",
    )
    ap.add_argument(
        "--procs", type=int, default=1, help="server processes (panel serve --num-procs)"
    )
    ap.add_argument("--no-slow", dest="slow", action="store_false", help="skip phase 3")
    ap.add_argument("--slow-size", type=int, default=1024, help="edge of the slow volume")
    ap.add_argument("--timeout", type=float, default=30, help="seconds before a press times out")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where volumes live")
    ap.add_argument("--dashapp-cache", type=Path, default=OUT / "dashapp-cache")
    ap.add_argument("--report", type=Path, help="print the table of an earlier run's JSON")
    return ap.parse_args(argv)


def run_and_report(args: argparse.Namespace, run, report, prefix: str) -> int:
    """A benchmark's ``main``: with ``--report`` print an earlier run's table; else ``run``,
    save the result as ``benchmarks/out/<prefix>-<timestamp>.json`` and print its table."""
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return 0
    r = run(args)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{prefix}-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(r, indent=1, default=str))
    print(report(r))
    print(f"\nresults: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_and_report(parse_args(argv), run, report, "sessions")


if __name__ == "__main__":
    sys.exit(main())
