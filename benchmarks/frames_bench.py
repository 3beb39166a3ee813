"""16-bit against float32 pictures, in Chromium: key press to pixels and bytes per press.

The slicer sends each picture as 16-bit codes (``dashapp.views.plot.encode16``), decoded in the
browser by the image glyph's transform, unless ``DASHAPP_FRAME_BITS=32``. This benchmark
serves the same checkout twice, one server per setting, and presses → in one Chromium page per
server and axis, servers alternated press block by press block (the machine's drift is shared
out). It reports, per setting and axis: key press → changed pixels (the probe of
``browser_latency.py``), the bytes the page received per press, and the pictures' arrival
(the largest websocket message) after the key press.

``--throttle MBIT`` also runs every page behind Chromium's network emulation at that many
Mbit/s down (with 20 ms of latency), as a laptop on a home link through an SSH tunnel to a
login node would see it; whether Chromium throttles websocket frames is part of what is
measured (the bytes and arrival times show it).

    python benchmarks/frames_bench.py                        # the 1024³ gzip volume, axes 0 and 2
    python benchmarks/frames_bench.py --throttle 50 --presses 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from browser_latency import (  # noqa: E402
    PanelServer,
    launch_chromium,
    open_slicer,
    percentile,
    probe_page,
)
from slicer_bench import (  # noqa: E402
    OUT,
    describe_machine,
    ensure_pyramid,
    log,
    machine,
    prewarm,
    start_index,
)
from volumes import DATASET, DEFAULT_CACHE, ensure_volume, volume_spec  # noqa: E402


def press_block(browser, server: PanelServer, rel: str, axis: int, n: int, presses: int,
                throttle: float | None) -> list[dict[str, Any]]:  # fmt: skip
    """One page on ``server``: open the slicer on ``rel`` along ``axis`` and press → ``presses``
    times; the samples as dicts."""
    context, page, probe = probe_page(browser)
    try:
        if throttle:
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send(
                "Network.emulateNetworkConditions",
                {
                    "offline": False,
                    "latency": 20,
                    "downloadThroughput": throttle * 1e6 / 8,
                    "uploadThroughput": throttle * 1e6 / 8,
                },
            )
        url = (
            f"{server.base}/slicer?file={rel}&dataset={DATASET}&axis={axis}"
            f"&index={start_index(n, presses)}&cmap=fire&scale=linear"
        )
        open_slicer(page, probe, url, quiet_timeout_s=60)
        out = []
        for i in range(presses):
            probe.wait_quiet(quiet_ms=300, timeout_s=30)
            s = probe.press("ArrowRight", i, timeout_s=30)
            out.append(
                {
                    "latency_ms": s.latency_ms,
                    "picture_ms": s.ws_data_ms,
                    "bytes": s.bytes_received,
                    "timed_out": s.timed_out,
                }
            )
        return out
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--axes", type=int, nargs="+", default=[0, 2])
    p.add_argument("--presses", type=int, default=15, help="presses per page")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--throttle", type=float, help="also behind an emulated link of this Mbit/s")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where volumes live")
    p.add_argument("--dashapp-cache", type=Path, default=OUT / "dashapp-cache")
    args = p.parse_args(argv)

    volume = ensure_volume(volume_spec("gzip", 1024, args.cache))
    ensure_pyramid(volume.path)
    prewarm(volume.path)
    rel = volume.path.relative_to(args.cache).as_posix()
    info = machine(REPO)
    tmp = Path(tempfile.mkdtemp(prefix="frames-bench-"))
    settings = {"16-bit": "16", "float32": "32"}
    servers = {
        name: PanelServer(
            REPO / "apps" / "slicer.py",
            ["--root", str(args.cache)],
            cwd=REPO,
            log=tmp / f"server-{bits}.log",
            env={"DASHAPP_CACHE": str(args.dashapp_cache), "DASHAPP_FRAME_BITS": bits},
        ).start()
        for name, bits in settings.items()
    }
    links = [None] + ([args.throttle] if args.throttle else [])
    samples: dict[str, list[dict[str, Any]]] = {}
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw, tmp)
            for r in range(args.rounds):
                for link in links:
                    for axis in args.axes:
                        for name, server in servers.items():
                            key = f"{name}|{axis}|{link or ''}"
                            log(f"round {r + 1}: {name}, axis {axis}, link {link or 'local'}")
                            samples.setdefault(key, []).extend(
                                press_block(browser, server, rel, axis, 1024, args.presses, link)
                            )
            browser.close()
    finally:
        for s in servers.values():
            s.stop()
    print(describe_machine(info))
    print(
        f"\n1024³ gzip volume (pyramid built, file in the page cache), {args.rounds} rounds × "
        f"{args.presses} presses per setting, axis and link; medians (p95)\n"
    )
    print("| link | axis | pictures | key → pixels | picture arrives | bytes per press |")
    print("|---|---:|---|---:|---:|---:|")
    for key, ss in samples.items():
        name, axis, link = key.split("|")
        ok = [s for s in ss if not s["timed_out"] and s["latency_ms"] is not None]
        lat = [s["latency_ms"] for s in ok]
        pic = [s["picture_ms"] for s in ok if s["picture_ms"] is not None]
        byt = [s["bytes"] for s in ok]

        def fmt(v: list[float]) -> str:
            if not v:
                return "–"
            return f"{statistics.median(v):.0f} ms ({percentile(v, 95):.0f})"

        print(
            f"| {link + ' Mbit/s' if link else 'local'} | {axis} | {name} | {fmt(lat)} | "
            f"{fmt(pic)} | {statistics.median(byt):,.0f} |"
            + (f" {len(ss) - len(ok)} timed out" if len(ok) < len(ss) else "")
        )
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"frames-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                "samples": samples}, indent=1))  # fmt: skip
    print(f"\nsamples: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
