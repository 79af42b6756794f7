"""Ray Data's in-order strategies over the Hugging Face parquet layout, on its own reader.

``ray_streaming`` and ``ray_buffer`` read each rank's contiguous share of the split's
shards with ``ray.data.read_parquet`` (on local disk or object storage, through the
split's pyarrow filesystem), one dataset an epoch; ``ray_buffer`` adds the local shuffle
buffer. ``ray_block_shuffle`` shuffles row groups, which Ray Data 2.60's parquet reader
cannot (it reads a file's row groups in order), so it reads through ``TahoeDatasource``
(``raydata.py``) like the plates.

A fused ``map_batches`` step keeps the split's rows of each batch and turns them into the
same Arrow rows as the h5ad datasource (``raydata.to_arrow``): the CLS entry dropped,
token ids mapped to model columns, label codes from the split. Which rows a batch holds
comes from Ray Data's ``row_hash`` column: a hash of the file path and the row's
position, which ``_compute_row_hashes`` reproduces for every row of a shard (no filter is
pushed into the read, so a position is the row's place in its file).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import ray

from raycell.core.filesystems import fs_path
from raycell.tahoe.data.hf_rows import decode_cells
from raycell.tahoe.data.labels import LabelSpace
from raycell.tahoe.data.plates import TahoeSplit
from raycell.tahoe.data.sparse import SparseBatch
from raycell.tahoe.loaders.raydata import iter_sparse_batches, to_arrow

SHARD_COLUMNS = ["genes", "expressions"]
CACHED_SHARDS = 16  # per process: each shard's row hashes -> positions
# Rows decoded at once: ~1.5M entries of Tahoe-shaped cells stay in cache (90k cells/s a
# core here, against 49k in blocks of 15,000 rows).
DECODE_ROWS = 1024


def shard_shares(split: TahoeSplit, world: int) -> list[list[str]]:
    """Every rank's shards (URIs, in split order): consecutive shards, each to the rank
    that holds the middle of its rows, so shares are even to within a shard's rows."""
    sizes: dict[str, int] = {}
    for piece in split.plates:  # split order; a shard holding two plates counts once
        sizes[piece.path] = sizes.get(piece.path, 0) + piece.n_rows
    shards = list(sizes)
    rows = np.array([sizes[s] for s in shards])
    middle = np.cumsum(rows) - rows / 2
    rank_of = np.minimum((middle * world // max(rows.sum(), 1)).astype(int), world - 1)
    return [[s for s, r in zip(shards, rank_of, strict=True) if r == rank]
            for rank in range(world)]


def rows_of(split: TahoeSplit, shards: list[str]) -> int:
    taken = set(shards)
    return sum(piece.n_rows for piece in split.plates if piece.path in taken)


class SplitRows:
    """The split's rows of each shard, looked up by Ray Data's row hashes. Runs in the
    read tasks (pickled with the map function; the split comes from the object store)."""

    def __init__(self, split_ref: ray.ObjectRef, labels: LabelSpace):
        self.split_ref, self.labels = split_ref, labels
        self._split: TahoeSplit | None = None
        self._pieces: dict[str, list[int]] = {}  # a shard's path on its filesystem -> pieces
        self._offsets = np.zeros(1, np.int64)  # each piece's first split row
        self._shards: OrderedDict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_split": None, "_pieces": {}, "_shards": OrderedDict(),
                "_offsets": np.zeros(1, np.int64)}

    def __call__(self, table: pa.Table) -> pa.Table:
        split = self._load()
        paths = table.column("path").combine_chunks().dictionary_encode()
        hashes = table.column("row_hash").to_numpy()
        parts = []
        for code, path in enumerate(paths.dictionary.to_pylist()):
            at = np.flatnonzero(paths.indices.to_numpy() == code)
            hashed, positions, split_rows = self._shard(split, path)
            found = np.minimum(np.searchsorted(hashed, hashes[at]), hashed.size - 1)
            if not np.array_equal(hashed[found], hashes[at]):  # never silently a wrong row
                raise RuntimeError(f"Ray Data's row_hash of {path} names no row of it: has "
                                   "its recipe changed (docs/facts.md, Ray 2.60)?")
            position = positions[found]
            member = split_rows[position]
            keep = member >= 0
            if not keep.any():
                continue
            whole = keep.all() and at.size == table.num_rows  # a shard the split takes whole
            piece = table if whole else table.select(SHARD_COLUMNS).take(pa.array(at[keep]))
            uri = split.plates[self._pieces[path][0]].path  # as a person finds it: s3://...
            x = decode_cells(piece, split.token_columns, split.n_vars, uri, position[keep])
            rows = member[keep]
            parts.append(to_arrow(SparseBatch(x, self.labels.expand(split.codes[rows]), rows)))
        return pa.concat_tables(parts) if parts else to_arrow(_empty(split.n_vars))

    def _load(self) -> TahoeSplit:
        """The split, once per process, and which of its pieces each shard holds."""
        if self._split is None:
            self._split = ray.get(self.split_ref)
            for i, piece in enumerate(self._split.plates):
                self._pieces.setdefault(fs_path(piece.path), []).append(i)
            self._offsets = np.cumsum([0] + [p.n_rows for p in self._split.plates])
        return self._split

    def _shard(self, split: TahoeSplit, path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A shard's row hashes (sorted), their positions, and position -> split row (-1:
        not in the split)."""
        if path in self._shards:
            self._shards.move_to_end(path)
            return self._shards[path]
        from ray.data._internal.datasource_v2.common.synthesized_columns import (
            _compute_row_hashes,
        )

        size = int(split.plates[self._pieces[path][0]].group_starts[-1])
        split_rows = np.full(size, -1, np.int64)
        for i in self._pieces[path]:
            first = self._offsets[i]
            split_rows[split.plates[i].rows] = np.arange(first, first + split.plates[i].n_rows)
        hashes = _compute_row_hashes(path, 0, size)
        order = np.argsort(hashes)
        self._shards[path] = hashes[order], order, split_rows
        if len(self._shards) > CACHED_SHARDS:
            self._shards.popitem(last=False)
        return self._shards[path]


def _empty(n_vars: int) -> SparseBatch:
    import scipy.sparse as sp

    return SparseBatch(sp.csr_array((0, n_vars), dtype=np.float32),
                       np.zeros((0, 4), np.int64), np.zeros(0, np.int64))


def shard_dataset(split: TahoeSplit, split_rows: SplitRows, shards: list[str],
                  resources: dict[str, float]) -> ray.data.Dataset:
    """The split's rows of ``shards``, read in the order given."""
    from ray.data import DataContext, ExecutionOptions

    # Ray Data 2.60's second parquet reader (the default) lists files and reads footers in
    # tasks of their own: 5-6 s a dataset here against 0.3 s for the first, and every
    # epoch is a dataset (docs/benchmarks.md). The first reads whole files per task.
    DataContext.get_current().use_datasource_v2 = False
    remote = {"resources": resources} if resources else {}
    dataset = ray.data.read_parquet(
        [fs_path(s) for s in shards], filesystem=split.filesystem, partitioning=None,
        include_paths=True, include_row_hash=True, override_num_blocks=len(shards), **remote,
    ).select_columns([*SHARD_COLUMNS, "path", "row_hash"]).map_batches(
        split_rows, batch_format="pyarrow", batch_size=DECODE_ROWS, **remote)
    dataset.context.execution_options = ExecutionOptions(preserve_order=True)
    return dataset


def parquet_epochs(split: TahoeSplit, labels: LabelSpace, strategy, s):
    """epoch -> this rank's batches of an in-order Ray Data strategy over parquet shards;
    ranks stop at the fewest batches any rank has, so DDP ranks step together."""
    split_rows = SplitRows(ray.put(split), labels)
    shares = shard_shares(split, s.world)
    steps = min(-(-rows_of(split, share) // s.batch_size) for share in shares)

    def epoch_batches(epoch: int) -> Iterator[SparseBatch]:
        if not shares[s.rank]:
            return iter(())
        dataset = shard_dataset(split, split_rows, shares[s.rank], dict(s.read_resources))
        batches = iter_sparse_batches(dataset, split.n_vars, s.batch_size,
                                      s.buffer_rows if strategy.shuffle_buffer else None,
                                      s.seed + 1000 * epoch + s.rank)
        return (batch for _, batch in zip(range(steps), batches, strict=False))

    return epoch_batches
