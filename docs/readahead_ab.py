"""Cold and warm reads with and without the fetch readahead (docs/benchmarks.md).

    python docs/readahead_ab.py [--data DIR] [--rounds 3] [--seconds 5] [--out FILE.csv]

The loader bench's own measurement (``measure_strategies``: cold evicts the plates before
and during each window) of block_shuffling, random and sequential_limit, with
``raycell/tahoe/data/readahead.py``'s hints on and off in alternating rounds of one run
(docs/ab.py), so the two sides share the machine's state. Prints the best round of
each and writes every row to ``--out``.
"""

from __future__ import annotations

from ab import alternate, bench_inputs, parse

from raycell.tahoe.data import sparse


def main() -> None:
    args = parse("readahead_ab.csv")
    split, labels, s = bench_inputs(args, ("block_shuffling", "random", "sequential_limit"))
    frame = alternate(sparse._PlateFile, "readahead", lambda self, bounds: None, "readahead",
                      split, labels, s, args.rounds)
    frame.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
