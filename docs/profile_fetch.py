"""Where a 16,384-cell fetch's time goes: raycell's CSR reader against the seed's path.

Usage: .venv/bin/python docs/profile_fetch.py [DATA_DIR]   (default: data/bench/tahoe-shaped)
Block shuffling, block 16, fetch_factor 256, batch 64, dense batches on the CPU; the
plates are read once first so both paths run from the page cache. Means of 5 fetches.
"""

import sys
import time
from pathlib import Path

import anndata
import numpy as np
import torch
from anndata.experimental import AnnCollection

from raycell.tahoe.bench.loaders import load_bench_split, warm_page_cache
from raycell.tahoe.data.sparse import TahoeRows

BATCH, FETCH, BLOCK, REPEATS = 64, 64 * 256, 16, 5
split, labels = load_bench_split(Path(sys.argv[1] if len(sys.argv) > 1 else
                                      "data/bench/tahoe-shaped"))
warm_page_cache(split)
rows = TahoeRows(split, labels)
collection = AnnCollection([anndata.read_h5ad(p.path, backed="r") for p in split.plates],
                           join_vars="inner", index_unique="-")
rng = np.random.default_rng(0)
cpu = torch.device("cpu")
stages = {k: 0.0 for k in ("raycell read", "raycell batches", "raycell dense",
                           "seed read (to_adata)", "seed batches", "seed dense")}


def timed(key, fn):
    started = time.perf_counter()
    out = fn()
    stages[key] += (time.perf_counter() - started) / REPEATS
    return out


for _ in range(REPEATS):
    starts = rng.choice(np.arange(0, len(rows), BLOCK), FETCH // BLOCK, replace=False)
    idx = np.sort((starts[:, None] + np.arange(BLOCK)).ravel())
    perm = rng.permutation(FETCH)
    fetched = timed("raycell read", lambda idx=idx: rows[idx])
    batches = timed("raycell batches", lambda f=fetched, p=perm: [
        f[p[i : i + BATCH]] for i in range(0, FETCH, BATCH)])
    # Each dense batch is dropped before the next, as a training step would.
    timed("raycell dense", lambda b=batches: [x.dense_on(cpu, log1p=False)[0].shape for x in b])
    adata = timed("seed read (to_adata)", lambda idx=idx: collection[idx].to_adata())
    views = timed("seed batches", lambda a=adata, p=perm: [
        a[p[i : i + BATCH]] for i in range(0, FETCH, BATCH)])
    timed("seed dense", lambda v=views: [torch.from_numpy(x.X.toarray()).shape for x in v])

for key, seconds in stages.items():
    print(f"{key:<22} {seconds:6.3f} s per fetch  {seconds / (FETCH / BATCH) * 1e3:6.2f} ms/batch")
ours = sum(v for k, v in stages.items() if k.startswith("raycell"))
seed = sum(v for k, v in stages.items() if k.startswith("seed"))
print(f"raycell {FETCH / ours:,.0f} cells/s, seed {FETCH / seed:,.0f} cells/s, "
      f"ratio {seed / ours:.2f}; read only: ratio "
      f"{stages['seed read (to_adata)'] / stages['raycell read']:.2f}")
