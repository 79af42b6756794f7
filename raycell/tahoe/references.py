"""Reference loaders the strategies are measured against (by ``raycell bench loaders``).

Each yields dense batches as (x, rows): what the training loop would receive, and
the split positions of its rows (for batch diversity). None is used for training.

- ``per_row_batches``: random rows one at a time through anndata's backed mode,
  the way AnnLoader reads (FACTS.md: about 20 cells/s on Tahoe).
- ``anncollection_batches``: the seed's path: an AnnCollection over backed plates,
  scDataset block shuffling, ``to_adata()`` per fetch, dense batches.
- ``sequential_batches``: the physical limit of this reader on this machine:
  contiguous row runs read in order and made dense, no shuffling at all.
"""

from __future__ import annotations

from collections.abc import Iterator

import anndata
import numpy as np
import torch
from anndata.experimental import AnnCollection
from scdataset import BlockShuffling

from raycell.core.errors import RaycellError
from raycell.tahoe.plates import TahoeSplit
from raycell.tahoe.scdataset_arms import EpochDataset
from raycell.tahoe.sparse import TahoeRows

DenseBatches = Iterator[tuple[torch.Tensor, np.ndarray]]


def _backed(split: TahoeSplit) -> list[anndata.AnnData]:
    """Whole plates in backed mode. Not views: a row of a backed view reads all of X."""
    plates = [anndata.read_h5ad(p.path, backed="r") for p in split.plates]
    for adata, rows in zip(plates, split.plates, strict=True):
        if adata.n_obs != rows.n_rows:
            raise RaycellError(f"{rows.path}: the references read whole plates only")
    return plates


def _dense(x, device: torch.device) -> torch.Tensor:
    array = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    return torch.from_numpy(array.astype(np.float32, copy=False)).to(device)


def per_row_batches(split: TahoeSplit, batch_size: int, seed: int,
                    device: torch.device) -> DenseBatches:
    plates = _backed(split)
    offsets = np.cumsum([0] + [p.n_rows for p in split.plates])
    rng = np.random.default_rng(seed)
    while True:
        rows = rng.integers(0, offsets[-1], batch_size)
        plate = np.searchsorted(offsets, rows, side="right") - 1
        cells = [plates[p].X[int(r - offsets[p])] for p, r in zip(plate, rows, strict=True)]
        yield torch.cat([_dense(c, device) for c in cells]), rows


def anncollection_batches(split: TahoeSplit, batch_size: int, fetch_factor: int,
                          block_size: int, seed: int, device: torch.device) -> DenseBatches:
    collection = AnnCollection(_backed(split), join_vars="inner", index_unique="-")

    def fetch(coll: AnnCollection, indices: np.ndarray) -> anndata.AnnData:
        adata = coll[indices].to_adata()
        adata.obs["row"] = indices
        return adata

    dataset = EpochDataset(collection, BlockShuffling(block_size=block_size),
                           batch_size=batch_size, fetch_factor=fetch_factor, fetch_callback=fetch,
                           seed=seed)
    for epoch in range(10**9):
        dataset.set_epoch(epoch)
        for batch in dataset:
            yield _dense(batch.X, device), batch.obs["row"].to_numpy()


def sequential_batches(rows: TahoeRows, batch_size: int, fetch_factor: int,
                       device: torch.device) -> DenseBatches:
    chunk = batch_size * fetch_factor
    while True:
        for start in range(0, len(rows), chunk):
            fetched = rows[np.arange(start, min(start + chunk, len(rows)))]
            for at in range(0, len(fetched), batch_size):
                batch = fetched[at : at + batch_size]
                yield batch.dense_on(device, log1p=False)[0], batch.rows
