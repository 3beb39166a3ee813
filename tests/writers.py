"""Real writer processes for live-following tests: a SWMR appender and a groups writer.

Each reads commands on stdin (one line per iteration to write) and answers on stdout, so a test
controls exactly when data lands.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_WRITER = textwrap.dedent(
    """
    import sys, time
    import h5py, numpy as np

    path, layout = sys.argv[1], sys.argv[2]
    shape = (6, 8, 10)

    def volume(i):
        z, y, x = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij")
        return (np.sin(6 * x + i) + np.cos(4 * y - i) + 3 * z + i).astype("f4")

    if layout == "append":
        f = h5py.File(path, "w", libver="latest")
        d = f.create_dataset("model", shape=(1, *shape), maxshape=(None, *shape), dtype="f4",
                             chunks=(1, *shape))
        d[0] = volume(0)
        f.swmr_mode = True
        f.flush()
        print("ready", flush=True)
        for line in sys.stdin:
            n = d.shape[0]
            d.resize(n + 1, axis=0)
            d[n] = volume(n)
            d.flush()
            print("wrote", n, time.time(), flush=True)
        f.close()
    else:
        with h5py.File(path, "w") as f:
            f["iter_0000/model"] = volume(0)
        print("ready", flush=True)
        for i, line in enumerate(sys.stdin, start=1):
            with h5py.File(path, "a") as f:
                f[f"iter_{i:04d}/model"] = volume(i)
            print("wrote", i, time.time(), flush=True)
    """
)


class Writer:
    """A writer subprocess; ``step()`` writes one more iteration and waits until it is on disk."""

    def __init__(self, path: Path, layout: str = "append") -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), layout],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def step(self) -> float:
        """Write one iteration; returns the writer's clock time when it was flushed."""
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().split()
        assert line, "the writer process ended"
        assert line[0] == "wrote", line
        return float(line[2])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
