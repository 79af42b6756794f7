"""What the per-fetch check of the counts costs the loaders (docs/benchmarks.md).

    python docs/count_check_ab.py [--data DIR] [--rounds 3] [--seconds 5] [--out FILE.csv]

The loader bench's own measurement (``measure_arms``, warm page cache, bare) of
streaming, block_shuffling and random, with ``TahoeRows._check_counts`` (NaN, infinite
or negative counts refused where a fetch reads them) on and off in alternating rounds
of one run, so the two sides share the machine's state. Prints the best round of each
and the check's own time on one fetch beside the fetch's, and writes every row to
``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from raycell.tahoe import bench, sparse  # noqa: E402
from raycell.tahoe.config import TAHOE_SHAPED  # noqa: E402
from raycell.tahoe.synthetic import ensure_tahoe  # noqa: E402

ARMS = ("streaming", "block_shuffling", "random")


def check_share(split, labels, fetch_rows: int = 64 * 256, repeats: int = 20) -> str:
    """The check's time against the read of one block_shuffling-like fetch (warm)."""
    rows = sparse.TahoeRows(split, labels)
    rng = np.random.default_rng(0)
    starts = rng.choice(len(rows) // 16, fetch_rows // 16, replace=False) * 16
    fetch = np.sort((starts[:, None] + np.arange(16)).ravel())
    rows[fetch]  # warm
    started = time.perf_counter()
    for _ in range(repeats):
        batch = rows[fetch]
    read = (time.perf_counter() - started) / repeats
    plate_of = np.searchsorted(rows.offsets, batch.rows, side="right") - 1
    started = time.perf_counter()
    for _ in range(repeats):
        rows._check_counts(batch.x, batch.rows, plate_of)
    check = (time.perf_counter() - started) / repeats
    return (f"one fetch of {fetch_rows:,} rows ({batch.x.nnz:,} counts): read {1000 * read:.1f} "
            f"ms, of which the check {1000 * check:.2f} ms ({100 * check / read:.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("count_check_ab.csv"))
    args = parser.parse_args()
    data = args.data or ensure_tahoe("data/bench/tahoe-shaped", TAHOE_SHAPED)  # as the bench
    split, labels = bench.load_bench_split(Path(data))
    s = bench.BenchSettings(data=str(data), out="", arms=ARMS, where=("bare",),
                            seconds=args.seconds, warmup_seconds=2.0, batch_size=64,
                            fetch_factor=256, block_size=16, num_workers=0, device="cpu",
                            threads=torch.get_num_threads(), rounds=1, caches=("warm",))
    checking = sparse.TahoeRows._check_counts
    rows = []
    for round_ in range(args.rounds):
        for check in (True, False):
            sparse.TahoeRows._check_counts = checking if check else (lambda self, *a: None)
            for row in bench.measure_arms(split, labels, s, "bare"):
                rows.append({**row, "check": check, "round": round_ + 1})
                print(f"round {round_ + 1} check={check!s:<5} {row['arm']:<16} "
                      f"{row['cells_per_s']:>10,.0f} cells/s", flush=True)
    sparse.TahoeRows._check_counts = checking
    pd.DataFrame(rows).to_csv(args.out, index=False)
    best = pd.DataFrame(rows).groupby(["arm", "check"])["cells_per_s"].max()
    print(best.unstack("check").assign(ratio=lambda t: t[True] / t[False]).round(3))
    print(check_share(split, labels))


if __name__ == "__main__":
    main()
