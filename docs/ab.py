"""Side-by-side A/B runs of the loader bench for the docs' scripts (readahead_ab.py,
count_check_ab.py): one piece of raycell on and off in alternating rounds of one run,
so that both sides share the machine's state."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from raycell.tahoe.bench import loaders as bench  # noqa: E402
from raycell.tahoe.config import TAHOE_SHAPED, LoaderBenchSettings  # noqa: E402
from raycell.tahoe.data.synthetic import ensure_tahoe  # noqa: E402


def parse(default_out: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path(default_out))
    return parser.parse_args()


def bench_inputs(args: argparse.Namespace, strategies: tuple[str, ...], **settings):
    """(split, labels, settings) of the loader bench's Tahoe-shaped plates, bare."""
    data = args.data or ensure_tahoe("data/bench/tahoe-shaped", TAHOE_SHAPED)  # as the bench
    split, labels = bench.load_bench_split(Path(data))
    s = LoaderBenchSettings(data=str(data), out="", strategies=strategies, where=("bare",),
                            seconds=args.seconds, warmup=2.0, batch_size=64,
                            fetch_factor=256, block_size=16, num_workers=0, device="cpu",
                            threads=torch.get_num_threads(), rounds=1, **settings)
    return split, labels, s


def alternate(owner: type, name: str, off, column: str, split, labels, s,
              rounds: int) -> pd.DataFrame:
    """``owner.name`` as it is (column True) and replaced by ``off`` (False), in
    alternating rounds; every measured row, and prints the best round of each."""
    on = getattr(owner, name)
    rows = []
    try:
        for round_ in range(rounds):
            for side in (True, False):
                setattr(owner, name, on if side else off)
                for row in bench.measure_strategies(split, labels, s, "bare"):
                    rows.append({**row, column: side, "round": round_ + 1})
                    print(f"round {round_ + 1} {column}={side!s:<5} {row['cache']} "
                          f"{row['strategy']:<17} {row['cells_per_s']:>10,.0f} cells/s", flush=True)
    finally:
        setattr(owner, name, on)
    frame = pd.DataFrame(rows)
    best = frame.groupby(["cache", "strategy", column])["cells_per_s"].max()
    print(best.unstack(column).assign(ratio=lambda t: t[True] / t[False]).round(3))
    return frame
