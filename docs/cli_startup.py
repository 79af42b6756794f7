"""How long `raycell --help`, `raycell status DIR` and `raycell report DIR` take, and
what they import (docs/benchmarks.md).

    python docs/cli_startup.py TAHOE_RESULTS CHEMOE_RESULTS [--src TREE ...] [--repeat 7]

Each ``--src`` is a raycell source tree (a checkout of another commit, say); its
commands run with that tree first on the import path, all trees interleaved
round by round, so a noisy machine slows them alike. Per tree and command: the
median wall time of ``--repeat`` runs of a fresh interpreter, and the heavy
packages ``python -X importtime`` lists.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "ray", "scdataset", "anndata", "h5py", "mlflow", "pandas", "matplotlib")


def run(tree: Path, args: list[str], importtime: bool = False) -> tuple[float, set[str]]:
    # From a folder of no tree: `python -m` puts the working directory first on the path.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    flags = ["-X", "importtime"] if importtime else []
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *flags, "-m", "raycell.cli", *args], env=env,
                          capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    seconds = time.perf_counter() - started
    modules = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
               if line.startswith("import time:")}
    return seconds, {m for m in HEAVY if m in modules}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tahoe_results")
    parser.add_argument("chemoe_results")
    parser.add_argument("--src", nargs="+", default=[str(Path(__file__).parents[1])])
    parser.add_argument("--repeat", type=int, default=7)
    a = parser.parse_args()
    out = Path(tempfile.mkdtemp()) / "both.html"
    commands = {"--help": ["--help"], "status": ["status", a.tahoe_results],
                "report": ["report", a.tahoe_results, a.chemoe_results, "--out", str(out)]}
    trees = [Path(t).resolve() for t in a.src]
    times: dict[tuple[Path, str], list[float]] = {}
    for _ in range(a.repeat):
        for tree in trees:
            for name, args in commands.items():
                times.setdefault((tree, name), []).append(run(tree, args)[0])
    print("| tree | command | median wall (s) | heavy packages imported |")
    print("|---|---|---|---|")
    for tree in trees:
        for name, args in commands.items():
            heavy = run(tree, args, importtime=True)[1]
            print(f"| {tree.name} | `raycell {name}` | {statistics.median(times[tree, name]):.2f} "
                  f"| {', '.join(sorted(heavy)) or 'none'} |")


if __name__ == "__main__":
    main()
