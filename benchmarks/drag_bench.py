"""The server's capacity under many sessions: servers side by side, rounds alternated.

Issue 3, requirement 5 (ten sessions on one server stay interactive) is limited by what the
server's event loop spends per slice step. This benchmark measures that and nothing else:
no browser (the sessions are :mod:`protocol_client` sessions: the websocket messages a page
sends for a key press on the slice slider, timed to the last byte of the new picture), the
same ``--sessions`` 512³ volumes as ``sessions_bench.py`` (gzip / chunked / contiguous in
turn, pyramids built beforehand), and several servers compared in one run:

- the checkout itself, and each ``--ref`` commit (exported with ``git archive``);
- each of those with each ``--procs`` value (``panel serve --num-procs N``).

In each round every server in turn gets the same two tests, so the machine's drift between
servers is shared out (this machine is shared and noisy):

1. **together**: ``--waves`` waves in which every session steps at the same moment (the worst
   case: ten users pressing at once); step → picture latency;
2. **dragging**: every session drags without pause (the next step as soon as the last picture
   came, reversing every 20 steps) for ``--seconds``; pictures served per second in all,
   the step latency, and the server's CPU time per picture: in its event loop(s) (the main
   thread, where Panel and Bokeh run: what one process can do at most is 1 / that) and in
   all its threads (with the chunk reading and decoding). The CPU figures depend less on
   the neighbours' load than the rates, and they separate "the server's loop is full" from
   "the machine is full" (here the protocol clients share the server's two cores).

Prints a table (per server: medians over its rounds) and writes the samples as JSON to
``benchmarks/out/drag-<timestamp>.json``.

    python benchmarks/drag_bench.py                                    # this checkout
    python benchmarks/drag_bench.py --ref 86ef41c --procs 1 2          # before/after, 1-2 procs
    python benchmarks/drag_bench.py --env DASHAPP_MMAP_THRESHOLD_KB=0  # with/without a setting
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from browser_latency import PanelServer, median, percentile  # noqa: E402
from protocol_client import ClientLoop, ProtocolSession  # noqa: E402
from sessions_bench import DEFAULT_FRAME, run_and_report, session_volumes  # noqa: E402
from slicer_bench import (  # noqa: E402
    OUT,
    describe_machine,
    ensure_pyramid,
    log,
    machine,
    snapshot,
    start_index,
)
from volumes import DATASET, DEFAULT_CACHE  # noqa: E402

REPO = HERE.parent


class Variant:
    """One server to measure: a dashapp source tree served with ``--num-procs procs``."""

    def __init__(
        self, label: str, src: Path, procs: int, commit: str, env: dict[str, str] | None = None
    ) -> None:
        self.label, self.src, self.procs, self.commit = label, src, procs, commit
        self.env = dict(env or {})  # more environment for its server
        self.server: PanelServer | None = None
        self.rounds: list[dict[str, Any]] = []


def open_sessions(server: PanelServer, volumes, cache: Path, loop: ClientLoop, timeout: float):
    sessions = []
    for i, v in enumerate(volumes):
        rel = v.path.relative_to(cache).as_posix()
        start = start_index(v.shape[0], 60)
        url = (
            f"{server.base}/slicer?file={rel}&dataset={DATASET}&axis=0&index={start}"
            "&cmap=fire&scale=linear"
        )
        s = ProtocolSession(loop, url, DEFAULT_FRAME, f"s{i:02d} {v.layout}").open(180)
        s.step(1, timeout)  # warm-up, not recorded
        sessions.append(s)
    return sessions


def together(sessions: list[ProtocolSession], waves: int, timeout: float) -> list[float | None]:
    """Every session steps at the same moment, ``waves`` times; step → picture ms."""
    out: list[float | None] = []
    for w in range(waves):
        delta = 1 if (w // 10) % 2 == 0 else -1
        futures = [s.step_async(delta, timeout) for s in sessions]
        out += [f.result(timeout + 5)[0] for f in futures]
        time.sleep(0.3)  # quiet between waves, as between key presses
    return out


def server_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """CPU seconds so far of the server's processes: ``{pid: (event-loop thread, all threads)}``.

    The event loop runs in each process's main thread (thread id = pid); the other threads
    read and decode chunks. With ``--num-procs`` the children serve and the parent waits.
    """
    out = {}
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            main = next(t for t in proc.threads() if t.id == proc.pid)
            total = proc.cpu_times()
            out[proc.pid] = (main.user_time + main.system_time, total.user + total.system)
        except (psutil.Error, StopIteration):
            continue
    return out


def cpu_per_picture(before: dict, after: dict, pictures: int, seconds: float) -> dict[str, float]:
    """Server CPU ms per picture served (event loops; whole server) and the busiest loop's
    share of the wall time, from two :func:`server_cpu` readings."""
    loops = {p: after[p][0] - before.get(p, (0.0, 0.0))[0] for p in after}
    total = sum(after[p][1] - before.get(p, (0.0, 0.0))[1] for p in after)
    n = max(pictures, 1)
    return {
        "loop_ms": 1000 * sum(loops.values()) / n,
        "server_ms": 1000 * total / n,
        "busiest_loop": max(loops.values(), default=0.0) / seconds,
    }


def dragging(
    sessions: list[ProtocolSession], seconds: float, timeout: float, pid: int | None = None
) -> dict[str, Any]:
    """Every session drags without pause for ``seconds`` (``pid``: the server, whose CPU
    time per picture is measured too)."""
    stop = threading.Event()
    samples: list[float | None] = []
    lock = threading.Lock()

    def drag(s: ProtocolSession) -> None:
        for _, ms, _ in s.drag(timeout):
            with lock:
                samples.append(ms)
            if stop.is_set():
                return

    cpu0 = server_cpu(pid) if pid is not None else {}
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(len(sessions)) as pool:
        futures = [pool.submit(drag, s) for s in sessions]
        time.sleep(seconds)
        stop.set()
        for f in futures:
            f.result()
    elapsed = time.perf_counter() - t0
    out = {"seconds": elapsed, "steps": samples, "per_s": len(samples) / elapsed}
    if pid is not None:
        out |= cpu_per_picture(cpu0, server_cpu(pid), len(samples), elapsed)
    return out


def _stats(values: list[float | None]) -> dict[str, Any]:
    ok = [v for v in values if v is not None]
    return {
        "n": len(values),
        "timeouts": len(values) - len(ok),
        "median": median(ok) if ok else None,
        "p95": percentile(ok, 95) if ok else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    cache = Path(args.cache)
    os.environ["DASHAPP_CACHE"] = str(args.dashapp_cache)
    sys.path.insert(0, str(REPO))
    info = machine(REPO)
    volumes = session_volumes(args.sessions, args.size, cache)
    for v in volumes:
        ensure_pyramid(v.path)
    tmp = Path(tempfile.mkdtemp(prefix="drag-bench-"))
    trees = [("checkout", REPO, info["dashapp_commit"])]
    for ref in args.ref:
        dest = tmp / f"ref-{len(trees)}"
        dest.mkdir()
        src = snapshot(REPO, ref, dest)
        trees.append((ref, src, machine(REPO, ref)["dashapp_commit"]))
    envs: list[dict[str, str]] = [{}] + [
        dict(kv.split("=", 1) for kv in e.split(",")) for e in args.env
    ]
    variants = [
        Variant(
            " ".join(
                [label]
                + ([f"×{procs}"] if len(args.procs) > 1 else [])
                + [f"{k}={v}" for k, v in env.items()]
            ),
            src,
            procs,
            commit,
            env,
        )
        for label, src, commit in trees
        for procs in args.procs
        for env in envs
    ]
    loop = ClientLoop()
    try:
        for i, v in enumerate(variants):
            v.server = PanelServer(
                v.src / "apps" / "slicer.py",
                ["--root", str(cache)],
                cwd=v.src,
                log=tmp / f"server-{i}.log",
                env={"DASHAPP_CACHE": str(args.dashapp_cache), **v.env},
                python_path=v.src,
                serve_options=["--num-procs", str(v.procs)] if v.procs != 1 else [],
            ).start()
        for r in range(args.rounds):
            for v in variants:
                v.server.wait_idle()
                log(f"round {r + 1}/{args.rounds}: {v.label} ({v.commit}) ...")
                v.server.sampler.reset_window()
                sessions = open_sessions(v.server, volumes, cache, loop, args.timeout)
                try:
                    time.sleep(1)
                    waves = together(sessions, args.waves, args.timeout)
                    drag = dragging(sessions, args.seconds, args.timeout, v.server.proc.pid)
                finally:
                    for s in sessions:
                        s.close()
                v.rounds.append(
                    {
                        "together": waves,
                        "drag_steps": drag["steps"],
                        "drag_per_s": drag["per_s"],
                        "loop_ms": drag["loop_ms"],
                        "server_ms": drag["server_ms"],
                        "busiest_loop": drag["busiest_loop"],
                        "peak_rss_mb": v.server.sampler.window_peak / 2**20,
                    }
                )
                log(
                    f"  together median {_stats(waves)['median']:.0f} ms; "
                    f"dragging {drag['per_s']:.1f} pictures/s, "
                    f"median step {_stats(drag['steps'])['median']:.0f} ms; server CPU per "
                    f"picture {drag['loop_ms']:.1f} ms event loop, {drag['server_ms']:.1f} ms "
                    f"in all; busiest loop {100 * drag['busiest_loop']:.0f} %"
                )
    finally:
        for v in variants:
            if v.server is not None:
                v.server.stop()
        loop.close()
    return {
        "machine": info,
        "settings": vars(args)
        | {"cache": str(args.cache), "dashapp_cache": str(args.dashapp_cache)},
        "variants": [
            {
                "label": v.label,
                "commit": v.commit,
                "procs": v.procs,
                "env": v.env,
                "rounds": v.rounds,
            }
            for v in variants
        ],
    }


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def _cpu(rounds: list[dict[str, Any]]) -> str:
    if not all("loop_ms" in rd for rd in rounds):  # a run from before these were measured
        return "–"
    loop = median([rd["loop_ms"] for rd in rounds])
    return f"{loop:.1f} / {median([rd['server_ms'] for rd in rounds]):.1f}"


def _busy(rounds: list[dict[str, Any]]) -> str:
    if not all("busiest_loop" in rd for rd in rounds):
        return "–"
    return f"{100 * median([rd['busiest_loop'] for rd in rounds]):.0f} %"


def report(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [
        f"{s['sessions']} protocol sessions on {s['size']}³ volumes; {s['rounds']} rounds, "
        f"servers alternated; together: {s['waves']} waves; dragging: {s['seconds']} s",
        "",
        "| server | commit | procs | together median | together p95 | dragging pictures/s "
        "(per round) | dragging step median | server CPU ms per picture: event loop / all "
        "| busiest loop | timeouts | peak RSS |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for v in r["variants"]:
        waves = [x for rd in v["rounds"] for x in rd["together"]]
        steps = [x for rd in v["rounds"] for x in rd["drag_steps"]]
        tw, ts = _stats(waves), _stats(steps)
        rates = [rd["drag_per_s"] for rd in v["rounds"]]
        lines.append(
            f"| {v['label']} | {v['commit']} | {v['procs']} | {_f(tw['median'])} ms | "
            f"{_f(tw['p95'])} ms | {median(rates):.1f} ({', '.join(f'{x:.1f}' for x in rates)}) "
            f"| {_f(ts['median'])} ms | {_cpu(v['rounds'])} | {_busy(v['rounds'])} | "
            f"{tw['timeouts'] + ts['timeouts']} | "
            f"{max(rd['peak_rss_mb'] for rd in v['rounds']):,.0f} MB |"
        )
    base = r["variants"][0]
    base_rate = median([rd["drag_per_s"] for rd in base["rounds"]])
    lines.append("")
    for v in r["variants"][1:]:
        rate = median([rd["drag_per_s"] for rd in v["rounds"]])
        lines.append(f"{v['label']} / {base['label']} pictures/s (medians): {rate / base_rate:.2f}")
    lines += ["", describe_machine(r["machine"])]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=9)
    p.add_argument("--size", type=int, default=512, help="edge of each session's volume")
    p.add_argument("--ref", action="append", default=[], help="also serve this git commit")
    p.add_argument("--procs", type=int, nargs="+", default=[1], help="panel serve --num-procs")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="also serve each tree with these settings, NAME=VALUE[,NAME=VALUE] (repeatable)",
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--waves", type=int, default=20)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where volumes live")
    p.add_argument("--dashapp-cache", type=Path, default=OUT / "dashapp-cache")
    p.add_argument("--report", type=Path, help="print the table of an earlier run's JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_and_report(parse_args(argv), run, report, "drag")


if __name__ == "__main__":
    sys.exit(main())
