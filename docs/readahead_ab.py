"""Cold and warm reads with and without the fetch readahead (docs/benchmarks.md).

    python docs/readahead_ab.py [--data DIR] [--rounds 3] [--seconds 5] [--out FILE.csv]

The loader bench's own measurement (``measure_arms``: cold evicts the plates before
and during each window) of block_shuffling, random and sequential_limit, with
``raycell/tahoe/readahead.py``'s hints on and off in alternating rounds of one run,
so the two sides share the machine's state. Prints the best round of each and
writes every row to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from raycell.tahoe import bench, sparse  # noqa: E402
from raycell.tahoe.config import TAHOE_SHAPED  # noqa: E402
from raycell.tahoe.synthetic import ensure_tahoe  # noqa: E402

ARMS = ("block_shuffling", "random", "sequential_limit")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("readahead_ab.csv"))
    args = parser.parse_args()
    data = args.data or ensure_tahoe("data/bench/tahoe-shaped", TAHOE_SHAPED)  # as the bench
    split, labels = bench.load_bench_split(Path(data))
    s = bench.BenchSettings(data=str(data), out="", arms=ARMS, where=("bare",),
                            seconds=args.seconds, warmup_seconds=2.0, batch_size=64,
                            fetch_factor=256, block_size=16, num_workers=0, device="cpu",
                            threads=torch.get_num_threads(), rounds=1)
    hinting = sparse._PlateFile.readahead
    rows = []
    for round_ in range(args.rounds):
        for readahead in (True, False):
            sparse._PlateFile.readahead = hinting if readahead else (lambda self, bounds: None)
            for row in bench.measure_arms(split, labels, s, "bare"):
                rows.append({**row, "readahead": readahead, "round": round_ + 1})
                print(f"round {round_ + 1} readahead={readahead!s:<5} {row['cache']} "
                      f"{row['arm']:<17} {row['cells_per_s']:>10,.0f} cells/s", flush=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)
    best = pd.DataFrame(rows).groupby(["cache", "arm", "readahead"])["cells_per_s"].max()
    print(best.unstack("readahead").assign(ratio=lambda t: t[True] / t[False]).round(2))


if __name__ == "__main__":
    main()
