"""A folder of many files in the browser: time to show it and time per click on a file.

Writes ``--files`` small files (an HDF5 signature and a few bytes, named ``run_NNNNN.h5``) into
a temporary folder, serves it with ``panel serve apps/slicer.py`` and, in Debian's Chromium,
clicks the folder (until its third file is shown) and then two files (until the page names
them). Also times ``list_folder`` alone.

    python benchmarks/big_folder.py [--files 10000]

Not a test: read the numbers, on a quiet machine (docs/performance.md has the last ones).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    from dashapp.data import list_folder
    from tests.conftest import CHROMIUM, CHROMIUM_ARGS, free_port

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        (root / "big").mkdir(parents=True)
        for i in range(args.files):
            (root / "big" / f"run_{i:05d}.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
        t0 = time.perf_counter()
        list_folder(root, "big")
        print(f"list_folder: {time.perf_counter() - t0:.2f} s for {args.files:,} files")
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO), "DASHAPP_CACHE": str(Path(tmp) / "cache")}
        server = subprocess.Popen(
            [sys.executable, "-m", "panel", "serve", "apps/slicer.py", "--port", str(port),
             "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}",
             "--args", "--root", str(root)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(8)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/slicer", timeout=120_000)
                entries = page.locator(".dashapp-entries").first
                entries.get_by_text("big", exact=True).click()
                t0 = time.monotonic()
                entries.get_by_text("run_00003.h5", exact=True).wait_for(timeout=300_000)
                print(f"folder shown: {time.monotonic() - t0:.2f} s")
                for name in ("run_00005.h5", "run_00007.h5"):
                    t0 = time.monotonic()
                    entries.get_by_text(name, exact=True).click(timeout=300_000)
                    expect(
                        page.locator(".dashapp-browser-error, .dashapp-message").first
                    ).to_contain_text(name, timeout=300_000)
                    print(f"click on {name}: {time.monotonic() - t0:.2f} s")
                browser.close()
        finally:
            server.kill()
            server.wait(10)


if __name__ == "__main__":
    main()
