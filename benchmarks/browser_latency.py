"""Key press to changed pixels, in a real browser: Playwright driving Debian's Chromium.

The probe measures what a person waits for when they press → on a slice slider: the time from
the key press to the first animation frame in which the plot's pixels differ from before it.

- The plot's canvas is found by walking the page's shadow roots from the figure's host element
  (a CSS class: ``.dashapp-plot``, ``.bench-hv-plot``); the area compared is the figure's
  *frame* (inside the axes) from the BokehJS view, so the toolbar, axes' tick labels and colour
  bar do not count.
- A capture-phase ``keydown`` listener on ``window`` records ``performance.now()``; a
  ``requestAnimationFrame`` loop then reads the frame's pixels (``getImageData``) every frame
  and records the first frame where any pixel differs from the picture before the key press,
  and the last change before the page is quiet again (settled).
- A ``WebSocket`` wrapper installed before the page's scripts timestamps every message from the
  server; Playwright's ``framereceived`` events add up the bytes per key press.

Each press waits for the previous one to settle (no pixel change and no server message for
``quiet_ms``), so presses never overlap. :func:`null_check` presses a key that changes nothing
and expects the probe to time out: evidence that the probe does not fire on its own.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "AppRun",
    "LatencyProbe",
    "PanelServer",
    "PressSample",
    "RssSampler",
    "launch_chromium",
    "measure_app",
    "null_check",
    "percentile",
]

# Debian's Chromium with the flags the browser tests use (off the closed network), from one place.
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from tests.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

VIEWPORT = {"width": 1400, "height": 900}


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, linear interpolation), or None for no values."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    if len(vals) == 1:
        return vals[0]
    pos = (len(vals) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def median(values: list[float]) -> float | None:
    """The median, or None for no values."""
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


# ----------------------------------------------------------------------------- server + memory
class RssSampler(threading.Thread):
    """Samples the resident memory of a process and its children every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(name=f"rss-{pid}", daemon=True)
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.window_peak = 0
        self.last = 0
        self.samples = 0
        self._halt = threading.Event()

    def rss(self) -> int:
        """RSS of the process and all its children now, in bytes."""
        total = 0
        with contextlib.suppress(psutil.Error):
            procs = [self.proc, *self.proc.children(recursive=True)]
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
        return total

    def run(self) -> None:
        while not self._halt.is_set():
            value = self.rss()
            self.last = value
            self.peak = max(self.peak, value)
            self.window_peak = max(self.window_peak, value)
            self.samples += 1
            self._halt.wait(self.interval)

    def reset_window(self) -> None:
        """Start a new measurement window (see :attr:`window_peak`)."""
        self.window_peak = self.last

    def stop(self) -> None:
        self._halt.set()
        self.join(2)


#: Servers started and not yet stopped: stopped at exit, whatever happens.
_LIVE: set[PanelServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PanelServer:
    """``panel serve SCRIPT --args ...`` on 127.0.0.1 in a subprocess, its memory sampled.

    Use as a context manager: the server is stopped (terminate, then kill) on exit.
    """

    def __init__(
        self,
        script: Path,
        args: list[str],
        cwd: Path,
        log: Path,
        env: dict[str, str] | None = None,
        python_path: Path | None = None,
        serve_options: list[str] | None = None,
    ) -> None:
        self.script, self.args, self.cwd, self.log_path = script, args, cwd, log
        self.serve_options = list(serve_options or [])  # more ``panel serve`` options
        self.port = free_port()
        self.env = env or {}
        self.python_path = python_path
        self.proc: subprocess.Popen | None = None
        self.sampler: RssSampler | None = None
        self._log = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> PanelServer:
        cmd = [
            sys.executable, "-m", "panel", "serve", str(self.script),
            "--port", str(self.port), "--address", "127.0.0.1", "--liveness",
            "--allow-websocket-origin", f"127.0.0.1:{self.port}", *self.serve_options,
        ]  # fmt: skip
        if self.args:
            cmd += ["--args", *self.args]
        # The pages look without the access token, as viewers (dashapp.auth; older commits
        # compared by a benchmark ignore it).
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "DASHAPP_ALLOW_VIEWERS": "1", **self.env}
        if self.python_path is not None:  # the checkout benchmarked, not an installed copy
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(self.python_path), env.get("PYTHONPATH", "")) if p
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=self.cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        _LIVE.add(self)
        self.sampler = RssSampler(self.proc.pid)
        self.sampler.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"panel serve exited:\n{self.log_path.read_text()[-3000:]}")
            url = f"{self.base}/liveness"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"panel serve did not start in {timeout} s")

    def wait_idle(self, cpu_percent: float = 10, quiet_s: float = 2, timeout: float = 60) -> float:
        """Wait until the server uses less than ``cpu_percent`` for ``quiet_s``; return seconds."""
        t0 = time.monotonic()
        proc = psutil.Process(self.proc.pid)
        proc.cpu_percent(None)
        calm_since = None
        while time.monotonic() - t0 < timeout:
            time.sleep(0.5)
            busy = proc.cpu_percent(None)
            if busy < cpu_percent:
                calm_since = calm_since or time.monotonic()
                if time.monotonic() - calm_since >= quiet_s:
                    break
            else:
                calm_since = None
        return time.monotonic() - t0

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text()[-n:] if self.log_path.exists() else ""

    def stop(self) -> None:
        _LIVE.discard(self)
        if self.sampler is not None:
            self.sampler.stop()
        if self.proc is not None and self.proc.poll() is None:
            # With --num-procs the serving processes are children of this one; Tornado's
            # parent does not take them down with it when terminated.
            try:
                children = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.Error:
                children = []
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            for child in children:
                with contextlib.suppress(psutil.Error):
                    child.terminate()
            _, alive = psutil.wait_procs(children, timeout=10)
            for child in alive:
                with contextlib.suppress(psutil.Error):
                    child.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> PanelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------- the probe
#: Installed before the page's own scripts: timestamps every message from the server.
_WS_INIT_JS = """
(() => {
  if (window.__bench) return;
  const bench = window.__bench = {wsLast: 0, wsLog: [], logging: false};
  const Native = window.WebSocket;
  class BenchWebSocket extends Native {
    constructor(...args) {
      super(...args);
      // Added before BokehJS sets onmessage, so it runs first: the time of arrival.
      this.addEventListener('message', (e) => {
        const d = e.data;
        const n = typeof d === 'string' ? d.length : (d.byteLength ?? d.size ?? 0);
        const t = performance.now();
        bench.wsLast = t;
        if (bench.logging) bench.wsLog.push([t, n]);
      });
    }
  }
  window.WebSocket = BenchWebSocket;
})();
"""

#: The pixel probe, installed once the plot is on the page.
_PROBE_JS = """
(hostSelector) => {
  const bench = window.__bench;
  function findAll(root, sel, out) {
    for (const el of root.querySelectorAll(sel)) out.push(el);
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) findAll(el.shadowRoot, sel, out);
    }
    return out;
  }
  const hosts = findAll(document, hostSelector, []);
  if (!hosts.length) throw new Error('no element matches ' + hostSelector);
  const host = hosts[0];
  // The figure's canvases live in the shadow root of its bk-Canvas; the first is the primary
  // layer, where glyphs are drawn (the others are overlays: hover, box zoom).
  const canvases = findAll(host.shadowRoot || host, 'canvas', []);
  if (!canvases.length) throw new Error('no canvas under ' + hostSelector);
  let canvas = canvases[0];
  // The figure's frame (the area inside the axes) from its BokehJS view, in CSS pixels.
  let frame = null, source = 'whole canvas';
  function walk(view) {
    if (view.el === host && view.frame && view.frame.bbox) return view;
    for (const c of (view.child_views ?? [])) { const v = walk(c); if (v) return v; }
    return null;
  }
  const idx = window.Bokeh && window.Bokeh.index;
  const roots = idx ? (typeof idx.roots === 'function' ? idx.roots() : idx.roots) : [];
  for (const root of (roots ?? [])) {
    const view = walk(root);
    if (view) {
      const b = view.frame.bbox;
      frame = [b.left, b.top, b.width, b.height];
      source = 'bokeh frame';
      const primary = view.canvas_view?.primary?.canvas;
      if (primary && canvases.includes(primary)) canvas = primary;
      break;
    }
  }
  const ratio = canvas.width / Math.max(1, canvas.getBoundingClientRect().width || canvas.width);
  if (!frame) frame = [0, 0, canvas.width / ratio, canvas.height / ratio];
  // Inset by 2 px so the axis lines and frame border are left out.
  const px = [frame[0] + 2, frame[1] + 2, frame[2] - 4, frame[3] - 4]
    .map((v) => Math.round(v * ratio));
  const ctx = canvas.getContext('2d');
  const probe = bench.probe = {
    canvas, px, frame, ratio, source,
    armed: false, gen: 0, armT: 0, t0: null, first: null, last: null, changes: 0, frames: 0,
    sampleMs: 0, base: null, prev: null, lastChange: 0,
    grab() {
      const s = performance.now();
      const data = new Uint32Array(ctx.getImageData(px[0], px[1], px[2], px[3]).data.buffer);
      this.sampleMs += performance.now() - s;
      return data;
    },
    differs(a, b) {
      if (!a || !b || a.length !== b.length) return true;
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return true;
      return false;
    },
    run() {
      // One sampling loop at a time: a loop from before a stop() ends at its next frame.
      this.armed = true;
      const gen = ++this.gen;
      requestAnimationFrame(() => this.loop(gen));
    },
    loop(gen) {
      if (!this.armed || gen !== this.gen) return;
      const now = performance.now();
      const cur = this.grab();
      this.frames += 1;
      if (this.t0 !== null) {
        if (this.first === null && this.differs(cur, this.base)) this.first = now;
        if (this.differs(cur, this.prev)) {
          this.last = now; this.changes += 1; this.lastChange = now;
        }
      } else if (this.differs(cur, this.prev)) {
        this.lastChange = now;
      }
      this.prev = cur;
      requestAnimationFrame(() => this.loop(gen));
    },
    start() {
      // Watch the canvas (for quiet detection) without a key press yet.
      this.prev = this.grab();
      this.lastChange = performance.now();
      this.run();
    },
    arm() {
      this.base = this.grab();
      this.prev = this.base;
      this.t0 = null; this.first = null; this.last = null; this.changes = 0;
      this.frames = 0; this.sampleMs = 0;
      bench.wsLog = []; bench.logging = true;
      this.waitKey = true;
      this.armT = performance.now();
      this.run();
    },
    stop() { this.armed = false; this.waitKey = false; bench.logging = false; },
    quiet(ms, timeoutMs) {
      this.start();
      const t0 = performance.now();
      return new Promise((resolve) => {
        const check = () => {
          const now = performance.now();
          const calm = now - Math.max(this.lastChange, bench.wsLast) >= ms;
          if (calm || now - t0 > timeoutMs) { this.stop(); resolve({calm, waited: now - t0}); }
          else setTimeout(check, 20);
        };
        check();
      });
    },
    result(timeoutMs, settleMs, unchangedMs, minData) {
      return new Promise((resolve) => {
        const check = () => {
          const now = performance.now();
          const started = this.t0 ?? this.armT;
          const done = this.first !== null
            && now - Math.max(this.last ?? 0, bench.wsLast) >= settleMs;
          // The server sent image data (a message of minData or more after the key press) but
          // the picture stayed the same for unchangedMs after its last message: a press that
          // changes nothing on screen. (Acknowledgements alone are not an answer: a slow server
          // sends those at once and the image seconds later.)
          const answered = this.t0 !== null
            && bench.wsLog.some((m) => m[0] >= this.t0 && m[1] >= minData);
          const unchanged = this.first === null && answered && now - bench.wsLast >= unchangedMs;
          if (done || unchanged || now - started > timeoutMs) {
            this.stop();
            const ws = bench.wsLog.filter((m) => this.t0 !== null && m[0] >= this.t0);
            // The largest message is the image's buffer: when the new data arrived.
            const big = ws.reduce((a, m) => (a === null || m[1] > a[1] ? m : a), null);
            resolve({
              t0: this.t0, first: this.first, last: this.last, changes: this.changes,
              frames: this.frames, sampleMs: this.sampleMs,
              wsFirst: ws.length ? ws[0][0] : null, wsLast: ws.length ? ws[ws.length - 1][0] : null,
              wsCount: ws.length, wsChars: ws.reduce((a, m) => a + m[1], 0),
              wsBig: big ? big[0] : null, wsBigSize: big ? big[1] : 0,
              timedOut: this.first === null && !unchanged,
              unchanged,
            });
          } else setTimeout(check, 10);
        };
        check();
      });
    },
  };
  if (!bench.keyListener) {
    bench.keyListener = true;
    window.addEventListener('keydown', () => {
      const p = bench.probe;
      if (p && p.waitKey) { p.t0 = performance.now(); p.waitKey = false; }
    }, true);
  }
  return {frame, source, canvas: [canvas.width, canvas.height], ratio, px};
}
"""


@dataclass
class PressSample:
    """One key press: times in ms from the keydown, bytes from the server."""

    press: int
    latency_ms: float | None
    settle_ms: float | None
    ws_first_ms: float | None
    ws_last_ms: float | None
    #: When the largest server message (the image data) arrived.
    ws_data_ms: float | None
    bytes_received: int
    messages: int
    pixel_changes: int
    probe_ms_per_frame: float | None
    timed_out: bool
    #: The server answered but the frame's pixels did not change (see ``unchanged_ms``).
    unchanged: bool = False
    #: How long the page took to be quiet before this press (and whether it got quiet at all).
    quiet_wait_ms: float | None = None
    quiet: bool | None = None


@dataclass
class AppRun:
    """What one app did in one browser session."""

    app: str
    url: str
    presses: list[PressSample] = field(default_factory=list)
    warmup: int = 0
    frame: dict[str, Any] = field(default_factory=dict)
    null_check: dict[str, Any] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    window_peak_rss_mb: float | None = None
    idle_rss_mb: float | None = None
    error: str | None = None

    def measured(self) -> list[PressSample]:
        """The presses after the warm-up ones."""
        return self.presses[self.warmup :]

    def latencies(self) -> list[float]:
        return [p.latency_ms for p in self.measured() if p.latency_ms is not None]

    def summary(self) -> dict[str, Any]:
        """Median and p95 of the latency, bytes per frame, timeouts."""
        lat = self.latencies()
        measured = self.measured()
        kb = [p.bytes_received / 1024 for p in measured if not p.timed_out]
        unchanged = sum(p.unchanged for p in measured)
        return {
            "browser_median_ms": median(lat),
            "browser_p95_ms": percentile(lat, 95),
            "settle_median_ms": median([p.settle_ms for p in measured if p.settle_ms is not None]),
            "ws_first_median_ms": median(
                [p.ws_first_ms for p in measured if p.ws_first_ms is not None]
            ),
            # Key press to the image data's arrival, and from there to changed pixels.
            "data_median_ms": median([p.ws_data_ms for p in measured if p.ws_data_ms is not None]),
            "render_median_ms": median(
                [
                    p.latency_ms - p.ws_data_ms
                    for p in measured
                    if p.latency_ms is not None and p.ws_data_ms is not None
                ]
            ),
            "kb_per_frame": median(kb),
            "timeouts": sum(p.timed_out for p in measured),
            "unchanged": unchanged,
            "presses": len(measured),
            "peak_rss_mb": self.peak_rss_mb,
            "window_peak_rss_mb": self.window_peak_rss_mb,
        }

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary()
        return d


def probe_page(browser: Any, host_selector: str = ".dashapp-plot", timeout_ms: int = 300_000):
    """A new context and page with the latency probe prepared: ``(context, page, probe)``."""
    context = browser.new_context(viewport=VIEWPORT)
    LatencyProbe.prepare(context)
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    return context, page, LatencyProbe(page, host_selector)


def open_slicer(page: Any, probe: Any, url: str, quiet_timeout_s: float = 10) -> None:
    """Load ``url``, install the probe, let the page settle (a bounded wait: a build's
    progress bar keeps it busy), and focus the slice slider for key presses."""
    page.goto(url)
    probe.install(timeout_s=300)
    page.mouse.move(1, 1)  # no hover tooltip over the plot
    probe.wait_quiet(quiet_ms=1000, timeout_s=quiet_timeout_s)
    page.locator(".noUi-handle").first.focus()


def launch_chromium(playwright: Any, tmp: Path) -> Any:
    """Debian's Chromium, headless, kept off the network; its config and cache in ``tmp``."""
    os.environ["XDG_CONFIG_HOME"] = str(tmp / "xdg-config")
    os.environ["XDG_CACHE_HOME"] = str(tmp / "xdg-cache")
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS,
        env={**os.environ},
    )


class LatencyProbe:
    """The in-page probe of one page, and the bytes its websockets receive."""

    def __init__(self, page: Any, host_selector: str) -> None:
        self.page = page
        self.host_selector = host_selector
        self.bytes = 0
        self.messages = 0
        self.info: dict[str, Any] = {}
        page.on("websocket", self._on_websocket)

    @staticmethod
    def prepare(context: Any) -> None:
        """Install the WebSocket timestamping in every page of ``context`` (before loading)."""
        context.add_init_script(_WS_INIT_JS)

    def _on_websocket(self, ws: Any) -> None:
        ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload: str | bytes) -> None:
        self.bytes += len(payload.encode() if isinstance(payload, str) else payload)
        self.messages += 1

    def install(self, timeout_s: float = 60) -> dict[str, Any]:
        """Find the plot's canvas and frame; wait until the frame shows a non-blank picture."""
        self.page.locator(self.host_selector + " canvas").first.wait_for(timeout=timeout_s * 1000)
        deadline = time.monotonic() + timeout_s
        while True:
            self.info = self.page.evaluate(_PROBE_JS, self.host_selector)
            if self.info["px"][2] > 10 and self.info["px"][3] > 10:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the plot's frame never got a size: {self.info}")
            time.sleep(0.5)
        return self.info

    def wait_quiet(self, quiet_ms: float = 300, timeout_s: float = 30) -> dict[str, Any]:
        """Wait until the frame's pixels and the websocket have been still for ``quiet_ms``."""
        return self.page.evaluate(
            "([ms, t]) => window.__bench.probe.quiet(ms, t)", [quiet_ms, timeout_s * 1000]
        )

    def press(
        self,
        key: str,
        number: int,
        timeout_s: float = 20,
        settle_ms: float = 300,
        unchanged_ms: float = 3000,
        min_data_bytes: int = 16_384,
    ) -> PressSample:
        """Press ``key`` once and time it (the page must be quiet: see :meth:`wait_quiet`).

        A press ends when the pixels changed and the page was then quiet for ``settle_ms``;
        or, as *unchanged*, when the server sent a message of ``min_data_bytes`` or more (image
        data) but the pixels stayed the same for ``unchanged_ms`` after its last message; or
        after ``timeout_s`` (timed out).
        """
        self.arm()
        self.page.keyboard.press(key)
        return self.collect(number, timeout_s, settle_ms, unchanged_ms, min_data_bytes)

    def arm(self) -> None:
        """Start watching for the next key press (the first half of :meth:`press`)."""
        self.bytes = self.messages = 0
        self.page.evaluate("() => window.__bench.probe.arm()")

    def collect(
        self,
        number: int,
        timeout_s: float = 20,
        settle_ms: float = 300,
        unchanged_ms: float = 3000,
        min_data_bytes: int = 16_384,
    ) -> PressSample:
        """Wait for the armed press to end and time it (the second half of :meth:`press`).

        Several pages may be armed and pressed first, then collected one after another: each
        page times its own press in its own clock, so the order of collection does not matter.
        """
        r = self.page.evaluate(
            "([t, s, u, d]) => window.__bench.probe.result(t, s, u, d)",
            [timeout_s * 1000, settle_ms, unchanged_ms, min_data_bytes],
        )
        # Frames that arrived before result() returned have been counted by now (Playwright
        # delivers events in order); give stragglers of the same frame a moment.
        self.page.wait_for_timeout(20)
        t0 = r["t0"]

        def since(t: float | None) -> float | None:
            return None if t is None or t0 is None else t - t0

        return PressSample(
            press=number,
            latency_ms=since(r["first"]),
            settle_ms=since(r["last"]),
            ws_first_ms=since(r["wsFirst"]),
            ws_last_ms=since(r["wsLast"]),
            ws_data_ms=since(r["wsBig"]),
            bytes_received=self.bytes,
            messages=self.messages,
            pixel_changes=r["changes"],
            probe_ms_per_frame=(r["sampleMs"] / r["frames"]) if r["frames"] else None,
            timed_out=bool(r["timedOut"]),
            unchanged=bool(r.get("unchanged")),
        )


_DRAW_JS = """
([where, timeoutMs]) => {
  const p = window.__bench.probe;
  p.arm();
  p.waitKey = false;
  p.t0 = performance.now();
  // A 6 x 6 px green square, in canvas pixels: inside the frame, or right of it (colour bar).
  const [x0, y0, w, h] = p.px;
  const x = where === 'inside' ? x0 + Math.floor(w / 2) : Math.min(x0 + w + 20, p.canvas.width - 7);
  const y = y0 + Math.floor(h / 2);
  const ctx = p.canvas.getContext('2d');
  ctx.save();
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = '#00ff00';
  ctx.fillRect(x, y, 6, 6);
  ctx.restore();
  return p.result(timeoutMs, 50, timeoutMs, Infinity);
}
"""


def null_check(probe: LatencyProbe, key: str = "Shift", timeout_s: float = 2.0) -> dict[str, Any]:
    """Evidence that the probe times the plot's frame and nothing else.

    1. A key press that changes nothing (``Shift``): the probe must time out.
    2. A square drawn on the canvas right of the frame (where the colour bar is): must time out.
    3. A square drawn inside the frame: must be seen within a few animation frames.

    The drawn squares are gone at the plot's next repaint.
    """
    probe.wait_quiet()
    sample = probe.press(key, -1, timeout_s=timeout_s, unchanged_ms=timeout_s * 1000)
    probe.wait_quiet()
    outside = probe.page.evaluate(_DRAW_JS, ["outside", timeout_s * 1000])
    probe.wait_quiet()
    inside = probe.page.evaluate(_DRAW_JS, ["inside", timeout_s * 1000])
    inside_ms = None if inside["first"] is None else inside["first"] - inside["t0"]
    return {
        "key": key,
        "key_timed_out": sample.timed_out or sample.unchanged,
        "key_bytes_received": sample.bytes_received,
        "outside_frame_draw_seen": not outside["timedOut"],
        "inside_frame_draw_ms": inside_ms,
        "passed": (sample.timed_out or sample.unchanged)
        and outside["timedOut"]
        and not inside["timedOut"],
    }


def measure_app(
    browser: Any,
    app: str,
    url: str,
    host_selector: str,
    presses: int,
    warmup: int = 3,
    server: PanelServer | None = None,
    key: str = "ArrowRight",
    slider_selector: str = ".noUi-handle",
    timeout_s: float = 20,
    settle_ms: float = 300,
    on_press: Any = None,
    before_press: Any = None,
) -> AppRun:
    """Open ``url`` in a fresh page, then press ``key`` on the slider ``presses`` times.

    The first ``warmup`` presses are recorded but left out of the summary. ``peak_rss_mb`` is
    the server's peak since it started, ``window_peak_rss_mb`` since the caller's last
    :meth:`RssSampler.reset_window`, ``idle_rss_mb`` the RSS once the page had loaded.
    """
    run = AppRun(app=app, url=url, warmup=warmup)
    context = browser.new_context(viewport=VIEWPORT)
    LatencyProbe.prepare(context)
    page = context.new_page()
    page.set_default_timeout(120_000)  # a busy shared machine loads pages slowly
    try:
        probe = LatencyProbe(page, host_selector)
        page.goto(url)
        run.frame = probe.install()
        page.mouse.move(1, 1)  # no hover tooltip over the plot
        probe.wait_quiet(quiet_ms=1000, timeout_s=60)
        handle = page.locator(slider_selector).first
        handle.focus()
        run.null_check = null_check(probe)
        if server is not None and server.sampler is not None:
            run.idle_rss_mb = server.sampler.rss() / 2**20
        for i in range(presses):
            quiet = probe.wait_quiet(timeout_s=max(30, timeout_s))
            if before_press is not None:
                before_press(i)
            sample = probe.press(key, i, timeout_s=timeout_s, settle_ms=settle_ms)
            sample.quiet_wait_ms, sample.quiet = quiet.get("waited"), quiet.get("calm")
            run.presses.append(sample)
            if on_press is not None:
                on_press(sample)
        if server is not None and server.sampler is not None:
            run.peak_rss_mb = server.sampler.peak / 2**20
            run.window_peak_rss_mb = server.sampler.window_peak / 2**20
    except Exception as exc:  # one app failing must not lose the others' results
        run.error = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            shot = Path(tempfile.gettempdir()) / f"bench-{app}-{int(time.time())}.png"
            page.screenshot(path=str(shot))
            run.error += f" (screenshot {shot})"
    finally:
        context.close()
    return run
