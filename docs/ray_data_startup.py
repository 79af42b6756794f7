"""How long a fresh Ray job waits for its first Ray Data batch (docs/benchmarks.md).

    python docs/ray_data_startup.py PLATE_DIR [--src TREE ...] [--repeat 3]

Each round, for each ``--src`` raycell tree (a checkout of another commit, say), in
turn: a fresh interpreter with that tree first on the import path starts a local
Ray cluster (8 logical CPUs, not timed), then times the ``ray_buffer`` strategy's
first batch over the plates of PLATE_DIR and 50 more. Every read task runs in a
worker process the job starts, so the first batch pays for what those processes
import. Per tree: the median over ``--repeat`` rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ONE_JOB = """
import json, sys, time
from pathlib import Path
import ray
ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
from raycell.tahoe.bench.loaders import load_bench_split, strategy_batches
from raycell.tahoe.config import LoaderBenchSettings
split, labels = load_bench_split(Path(sys.argv[1]))
batches = strategy_batches("ray_buffer", split, labels,
                           LoaderBenchSettings(batch_size=16, fetch_factor=4, block_size=4))
started = time.perf_counter()
next(batches)
first = time.perf_counter() - started
for _ in range(50):
    next(batches)
print(json.dumps({"first": first, "next_50": time.perf_counter() - started - first}))
batches.close()
"""


def one_job(tree: Path, plates: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", ONE_JOB, plates], env=env, check=True,
                          capture_output=True, text=True, cwd=tempfile.gettempdir())
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plates")
    parser.add_argument("--src", nargs="+", default=[str(Path(__file__).parents[1])])
    parser.add_argument("--repeat", type=int, default=3)
    a = parser.parse_args()
    trees = [Path(t).resolve() for t in a.src]
    times: dict[Path, list[dict[str, float]]] = {tree: [] for tree in trees}
    for _ in range(a.repeat):
        for tree in trees:
            times[tree].append(one_job(tree, str(Path(a.plates).resolve())))
    print("| tree | first batch (s) | 50 more (s) |")
    print("|---|---|---|")
    for tree, runs in times.items():
        print(f"| {tree.name} | {statistics.median(r['first'] for r in runs):.1f} "
              f"| {statistics.median(r['next_50'] for r in runs):.2f} |")


if __name__ == "__main__":
    main()
