"""What the per-fetch check of the counts costs the loaders (docs/benchmarks.md).

    python docs/count_check_ab.py [--data DIR] [--rounds 3] [--seconds 5] [--out FILE.csv]

The loader bench's own measurement (``measure_strategies``, warm page cache, bare) of
streaming, block_shuffling and random, with ``TahoeRows._check_counts`` (NaN, infinite
or negative counts refused where a fetch reads them) on and off in alternating rounds
of one run, so the two sides share the machine's state (docs/ab.py). Prints the best round of each
and the check's own time on one fetch beside the fetch's, and writes every row to
``--out``.
"""

from __future__ import annotations

import time

import numpy as np
from ab import alternate, bench_inputs, parse

from raycell.tahoe.data import sparse


def check_share(split, labels, fetch_rows: int = 64 * 256, repeats: int = 20) -> str:
    """The check's time against the read of one block_shuffling-like fetch (warm)."""
    rows = sparse.TahoeRows(split, labels)
    fetch_rows = min(fetch_rows, len(rows) // 32 * 16)  # small data: half the rows
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
    args = parse("count_check_ab.csv")
    split, labels, s = bench_inputs(args, ("streaming", "block_shuffling", "random"),
                                    cache="warm")
    frame = alternate(sparse.TahoeRows, "_check_counts", lambda self, *a: None, "check",
                      split, labels, s, args.rounds)
    frame.to_csv(args.out, index=False)
    print(check_share(split, labels))


if __name__ == "__main__":
    main()
