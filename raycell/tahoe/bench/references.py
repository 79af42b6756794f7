"""Reference loaders the strategies are measured against (by ``raycell bench loaders``).

Each yields host batches as (x, rows): CSR rows as the training loop would receive
them, and the split positions of those rows (for batch diversity). The bench's
consumer makes them dense or CsrRows on the device. None is used for training.

- ``per_row_batches``: random rows one at a time through anndata's backed mode,
  the way AnnLoader reads (docs/facts.md: about 20 cells/s on Tahoe).
- ``anncollection_batches``: the seed's path: an AnnCollection over backed plates,
  scDataset block shuffling, ``to_adata()`` per fetch, dense batches.
- ``sequential_batches``: the limit of this reader on this machine: contiguous
  row runs read in order, no shuffling at all.
- ``storage_batches``: the limit of the storage: each plate file's bytes read in
  order with plain reads, counted as the cells they hold (no rows are decoded).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import anndata
import numpy as np
import scipy.sparse as sp
from anndata.experimental import AnnCollection
from scdataset import BlockShuffling

from raycell.core.errors import RaycellError
from raycell.tahoe.data.plates import TahoeSplit
from raycell.tahoe.data.sparse import TahoeRows
from raycell.tahoe.loaders.scdataset_loader import EpochDataset

HostBatches = Iterator[tuple[sp.csr_array | None, np.ndarray]]


def _backed(split: TahoeSplit) -> list[anndata.AnnData]:
    """Whole plates in backed mode. Not views: a row of a backed view reads all of X."""
    plates = [anndata.read_h5ad(p.path, backed="r") for p in split.plates]
    for adata, rows in zip(plates, split.plates, strict=True):
        if adata.n_obs != rows.n_rows:
            raise RaycellError(f"{rows.path}: the references read whole plates only")
    return plates


def _csr(x) -> sp.csr_array:
    return sp.csr_array(x if sp.issparse(x) else np.asarray(x), dtype=np.float32)


def per_row_batches(split: TahoeSplit, batch_size: int, seed: int) -> HostBatches:
    plates = _backed(split)
    offsets = np.cumsum([0] + [p.n_rows for p in split.plates])
    rng = np.random.default_rng(seed)
    while True:
        rows = rng.integers(0, offsets[-1], batch_size)
        plate = np.searchsorted(offsets, rows, side="right") - 1
        cells = [plates[p].X[int(r - offsets[p])] for p, r in zip(plate, rows, strict=True)]
        yield _csr(sp.vstack([_csr(c) for c in cells], format="csr")), rows


def anncollection_batches(split: TahoeSplit, batch_size: int, fetch_factor: int,
                          block_size: int, seed: int) -> HostBatches:
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
            yield _csr(batch.X), batch.obs["row"].to_numpy()


def sequential_batches(rows: TahoeRows, batch_size: int, fetch_factor: int) -> HostBatches:
    chunk = batch_size * fetch_factor
    while True:
        for start in range(0, len(rows), chunk):
            fetched = rows[np.arange(start, min(start + chunk, len(rows)))]
            for at in range(0, len(fetched), batch_size):
                batch = fetched[at : at + batch_size]
                yield batch.x, batch.rows


def storage_batches(split: TahoeSplit, batch_size: int, fetch_factor: int,
                    read_bytes: int = 8 << 20) -> HostBatches:
    """(None, rows) per batch of cells whose bytes were read, a fetch's worth at a time."""
    buffer = bytearray(read_bytes)
    offsets = np.cumsum([0] + [p.n_rows for p in split.plates])
    while True:
        for plate, first in zip(split.plates, offsets, strict=False):
            per_cell = os.path.getsize(plate.path) / plate.n_rows
            with open(plate.path, "rb", buffering=0) as f:
                for start in range(0, plate.n_rows, batch_size * fetch_factor):
                    stop = min(start + batch_size * fetch_factor, plate.n_rows)
                    left = int((stop - start) * per_cell)
                    while left > 0:
                        got = f.readinto(memoryview(buffer)[: min(left, read_bytes)])
                        left = left - got if got else 0
                    for at in range(start, stop, batch_size):
                        yield None, first + np.arange(at, min(at + batch_size, stop))
