"""Ray Data's own batcher against raycell's CSR batching (``tahoe/loaders/batching.py``),
side by side on the same materialized blocks of Tahoe-shaped rows, in one process.

    python docs/ray_batcher_bench.py [--blocks 8] [--rows 8192] [--nnz 1455] [--rounds 3]

Each arm turns the dataset into 64-cell SparseBatches: Ray's way (``iter_batches`` of 64
rows, its local shuffle buffer of 16,384 rows where shuffled, each batch Arrow -> CSR) and
raycell's (whole blocks, Arrow -> CSR once, batches cut in scipy). Prints cells/s per arm
and round; figures in docs/benchmarks.md ("Ray Data's batcher").
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ray
import scipy.sparse as sp

from raycell.tahoe.data.sparse import SparseBatch
from raycell.tahoe.loaders import batching
from raycell.tahoe.loaders.raydata import from_arrow, to_arrow

GENES, BATCH, BUFFER = 62_710, 64, 16_384


def block(rows: int, nnz: int, first: int, rng: np.random.Generator):
    indptr = np.arange(rows + 1, dtype=np.int32) * nnz
    indices = np.sort(rng.integers(0, GENES, (rows, nnz)), axis=1).astype(np.int32).ravel()
    x = sp.csr_array((rng.random(rows * nnz, np.float32), indices, indptr), (rows, GENES))
    ids = np.arange(first, first + rows)
    return to_arrow(SparseBatch(x, np.zeros((rows, 4), np.int64), ids))


def arms(dataset):
    def ray_batches(buffer):
        for table in dataset.iter_batches(batch_size=BATCH, batch_format="pyarrow",
                                          local_shuffle_buffer_size=buffer,
                                          local_shuffle_seed=0 if buffer else None):
            yield from_arrow(table, GENES)

    def csr_batches(buffer):
        blocks = (from_arrow(t, GENES)
                  for t in dataset.iter_batches(batch_size=None, batch_format="pyarrow"))
        if buffer:
            return batching.shuffled(blocks, BATCH, buffer, 0)
        return batching.in_order(blocks, BATCH)

    return {"ray, in order": lambda: ray_batches(None),
            "csr, in order": lambda: csr_batches(None),
            "ray, shuffle buffer": lambda: ray_batches(BUFFER),
            "csr, shuffle buffer": lambda: csr_batches(BUFFER)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--nnz", type=int, default=1455)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    rng = np.random.default_rng(0)
    tables = [block(args.rows, args.nnz, i * args.rows, rng) for i in range(args.blocks)]
    dataset = ray.data.from_arrow(tables).materialize()
    ray.data.DataContext.get_current().enable_progress_bars = False
    for round_ in range(1, args.rounds + 1):
        for name, batches in arms(dataset).items():
            started, cells = time.perf_counter(), 0
            for batch in batches():
                cells += len(batch)
            print(f"round {round_}  {name:<20} {cells / (time.perf_counter() - started):>9,.0f}"
                  " cells/s", flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
