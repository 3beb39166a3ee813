"""The decoded-chunk cache under many sessions: decodes and CPU per picture, commits side by side.

Issue 3, requirement 5: ten sessions scrubbing at once. Their chunk layers can add up to more
than the cache's budget (512 MB for one server process, 256 MB each with ``--num-procs 2``),
and an LRU that cycles through more than it holds never hits. This benchmark isolates that
from the server: one process reads the slices that ``drag_bench.py``'s ten sessions ask for
(the same 512³ volumes, gzip / chunked / contiguous in turn; each starts at a third of its
axis and steps ±1, turning every 20 steps), in waves of one slice per session, through
``read_slice`` as the slicer calls it (the direction of motion given, so prefetch runs; each
session its own reader of the cache where the commit has ``reading_for``).

Per commit (the checkout and each ``--ref``, exported with ``git archive``) and per budget, in
a fresh process each, after ``--warm`` waves: chunk decodes per picture (prefetches included),
the process's CPU time per picture (all threads), wall time per picture, and what the cache
holds. No browser, no server: the server's own per-picture costs are ``drag_bench.py``'s.

    python benchmarks/cache_bench.py --ref b15f617                 # before / after, 512 and 256 MB
    python benchmarks/cache_bench.py --budgets 512 256 128 --waves 300
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def worker(files: list[str], budget_mb: int, warm: int, waves: int) -> dict:
    """Runs in a fresh process with the measured dashapp first on sys.path."""
    from dashapp.data import chunks, describe
    from dashapp.data.reader import SliceRequest, read_slice

    chunks.CHUNK_CACHE.resize(budget_mb << 20)
    owner = getattr(chunks, "reading_for", None)
    decodes = [0]
    decode = chunks.DirectReader._decode

    def counting(self, offset):
        decodes[0] += 1
        return decode(self, offset)

    chunks.DirectReader._decode = counting
    infos = [describe(f, "/volume") for f in files]
    pos = [info.shape[0] // 3 for info in infos]
    dirs = [1] * len(infos)
    steps = [0] * len(infos)

    def wave() -> None:
        for i, info in enumerate(infos):
            pos[i] += dirs[i]
            req = SliceRequest(info.path, (1, 2), (pos[i], 0, 0), plot_size=(499, 499))
            if owner is None:
                read_slice(info, req, prefetch=dirs[i])
            else:
                with owner(i):
                    read_slice(info, req, prefetch=dirs[i])
            steps[i] += 1
            if steps[i] % 20 == 0:
                dirs[i] = -dirs[i]

    def settle() -> None:
        while chunks.PREFETCHER.pending():
            time.sleep(0.01)

    for _ in range(warm):
        wave()
    settle()
    d0, c0, t0 = decodes[0], time.process_time(), time.perf_counter()
    per_wave = []
    for _ in range(waves):
        w0 = time.perf_counter()
        wave()
        per_wave.append((time.perf_counter() - w0) * 1000 / len(infos))
    settle()
    pictures = waves * len(infos)
    return {
        "decodes_per_picture": (decodes[0] - d0) / pictures,
        "cpu_ms_per_picture": (time.process_time() - c0) * 1000 / pictures,
        "wall_ms_per_picture": (time.perf_counter() - t0) * 1000 / pictures,
        "wave_ms_median": statistics.median(per_wave),
        "held_mb": chunks.CHUNK_CACHE.nbytes / 2**20,
        "claims": owner is not None,
    }


def measure(src: Path, files: list[str], budget: int, warm: int, waves: int) -> dict:
    code = (
        f"import sys, json; sys.path.insert(0, {str(src)!r}); sys.path.insert(1, {str(HERE)!r})\n"
        "from cache_bench import worker\n"
        f"print('RESULT', json.dumps(worker({files!r}, {budget}, {warm}, {waves})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=3600, cwd=src
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"worker failed in {src}:\n{out.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    from sessions_bench import session_volumes
    from slicer_bench import OUT, describe_machine, machine, snapshot
    from volumes import DEFAULT_CACHE

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", action="append", default=[], help="also measure this git commit")
    p.add_argument("--budgets", type=int, nargs="+", default=[512, 256], help="cache MB")
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--warm", type=int, default=45, help="waves before measuring")
    p.add_argument("--waves", type=int, default=200)
    p.add_argument("--rounds", type=int, default=2, help="repeats of every (commit, budget)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where volumes live")
    args = p.parse_args(argv)

    files = [str(v.path) for v in session_volumes(args.sessions, args.size, args.cache)]
    info = machine(REPO)
    tmp = Path(tempfile.mkdtemp(prefix="cache-bench-"))
    trees = [(f"checkout {info['dashapp_commit']}", REPO)]
    for i, ref in enumerate(args.ref):
        dest = tmp / f"ref-{i}"
        dest.mkdir()
        trees.append((f"{ref} {machine(REPO, ref)['dashapp_commit']}", snapshot(REPO, ref, dest)))
    results: dict[str, list[dict]] = {}
    for r in range(args.rounds):  # rounds alternate the variants: the machine's drift is shared
        for label, src in trees:
            for budget in args.budgets:
                key = f"{label} | {budget} MB"
                res = measure(src, files, budget, args.warm, args.waves)
                results.setdefault(key, []).append(res)
                print(f"round {r + 1}: {key}: {res}", file=sys.stderr, flush=True)
    print(describe_machine(info))
    print(
        f"\n{args.sessions} sessions, {args.size}³ volumes, {args.waves} waves after {args.warm}; "
        f"medians of {args.rounds} rounds\n"
    )
    print("| dashapp | cache | decodes / picture | CPU ms / picture | wall ms / picture | held |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, runs in results.items():
        label, budget = key.split(" | ")

        def med(name: str, runs=runs) -> float:
            return statistics.median(r[name] for r in runs)

        print(
            f"| {label} | {budget} | {med('decodes_per_picture'):.2f} | "
            f"{med('cpu_ms_per_picture'):.1f} | {med('wall_ms_per_picture'):.1f} | "
            f"{med('held_mb'):.0f} MB |"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"cache-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"machine": info, "args": vars(args) | {"cache": str(args.cache)},
                                "results": results}, indent=1))  # fmt: skip
    print(f"\nsamples: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
