"""Writer's flush to changed pixels: how long a running simulation takes to show in the browser.

A real writer process appends iterations to an HDF5 file with SWMR, one every ``--period``
seconds; ``panel serve apps/slicer.py`` shows it with follow-latest on, in Debian's Chromium.
An in-page probe records (in epoch milliseconds) every animation frame in which the plot's
pixels change; the latency of an iteration is the first change after the writer's ``flush()``
returned. Both clocks are this machine's, so they compare directly.

Run for both watch modes (inotify, and polling every ``--poll`` seconds, as on Lustre/GPFS/NFS):

    python benchmarks/live_bench.py [--iterations 20] [--period 1.5] [--poll 1.0]

Prints a markdown table of median and 95th percentile latency per mode. Not a test: the
targets (p95 <= 1 s with inotify, <= poll interval + 0.5 s with polling) are checked by
reading the table, on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, PanelServer  # noqa: E402
from tests.writers import Writer  # noqa: E402

_PROBE = """() => {
  function first(root, test) {
    for (const el of root.querySelectorAll('*')) {
      if (test(el)) return el;
      if (el.shadowRoot) { const c = first(el.shadowRoot, test); if (c) return c; }
    }
    return null;
  }
  const plot = first(document, el => el.classList && el.classList.contains('dashapp-plot'));
  const canvas = plot && first(plot.shadowRoot || plot, el => el.tagName === 'CANVAS');
  if (!canvas) return false;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  window.__changes = [];
  let last = null;
  function hash() {
    const w = canvas.width, h = canvas.height;
    const d = ctx.getImageData(0, 0, w, h).data;
    let s = 0;
    for (let i = 0; i < d.length; i += 97) s = (s * 31 + d[i]) | 0;
    return s;
  }
  function tick() {
    const now = performance.timeOrigin + performance.now();
    const v = hash();
    if (last !== null && v !== last) window.__changes.push(now);
    last = v;
    requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);
  return true;
}"""


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def run(mode: str, iterations: int, period: float, poll: float, tmp: Path) -> list[float]:
    from playwright.sync_api import sync_playwright

    root = tmp / mode
    root.mkdir()
    writer = Writer(root / "live.h5", "append")
    writer.step()
    env = {
        "DASHAPP_WATCH": mode,
        "DASHAPP_POLL_INTERVAL": str(poll),
        "DASHAPP_CACHE": str(tmp / "cache"),
        "DASHAPP_ALLOW_VIEWERS": "1",  # its page looks without the token (dashapp.auth)
    }
    server = PanelServer(root, tmp, env)
    latencies: list[float] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(server.url + "?file=live.h5&dataset=/model&axis=1&index=3&follow=true")
            page.locator(".dashapp-status-text").first.wait_for(timeout=60_000)
            time.sleep(3)
            assert page.evaluate(_PROBE), "plot canvas not found"
            time.sleep(1)
            for _ in range(iterations):
                before = len(page.evaluate("window.__changes"))
                flushed = writer.step() * 1000
                deadline = time.monotonic() + poll + 10
                seen = None
                while time.monotonic() < deadline:
                    changes = page.evaluate("window.__changes")
                    after = [t for t in changes[before:] if t >= flushed]
                    if after:
                        seen = after[0]
                        break
                    time.sleep(0.02)
                if seen is not None:
                    latencies.append(seen - flushed)
                time.sleep(period)
            browser.close()
    finally:
        server.stop()
        writer.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--period", type=float, default=1.5, help="seconds between flushes")
    parser.add_argument("--poll", type=float, default=1.0, help="polling interval (s)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("inotify", "poll"):
            lat = run(mode, args.iterations, args.period, args.poll, Path(tmp))
            target = 1000.0 if mode == "inotify" else args.poll * 1000 + 500
            rows.append(
                (
                    mode,
                    len(lat),
                    args.iterations,
                    statistics.median(lat) if lat else None,
                    percentile(lat, 95) if lat else None,
                    target,
                )
            )
    with open("/proc/cpuinfo") as fh:
        names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    print(f"\nMachine: {cpu}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"Writer: SWMR append every {args.period:g} s; polling interval {args.poll:g} s\n")
    print("| watch mode | iterations seen | median ms | p95 ms | target p95 ms |")
    print("|---|---|---|---|---|")
    for mode, n, total, med, p95, target in rows:
        med_s = f"{med:.0f}" if med is not None else "-"
        p95_s = f"{p95:.0f}" if p95 is not None else "-"
        print(f"| {mode} | {n}/{total} | {med_s} | {p95_s} | {target:.0f} |")


if __name__ == "__main__":
    main()
