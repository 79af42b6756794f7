"""The Ray Data strategies: Tahoe plates as a Ray Data datasource, read on every rank.
(Parquet shards go through Ray Data's own reader instead: ``raydata_parquet.py``.)

Ray Data has no h5ad reader (docs/facts.md), so ``TahoeDatasource`` makes read tasks
over rows of a split. Each task opens its plate with h5py inside the task, reads
its rows as CSR runs (the same reader as the scDataset strategies) and emits one Arrow
block: CSR rows as ``list<int32>`` gene indices and ``list<float32>`` counts, plus
the task labels. Consumers turn Arrow batches back into ``SparseBatch`` without
copying the values, so rows stay sparse until the training device.

The strategies (registered in ``raycell/tahoe/loaders/strategies.py``):

- ``ray_streaming``: read tasks over consecutive row ranges, in order.
- ``ray_buffer``: the same, through a local shuffle buffer (like streaming_buffer).
- ``ray_block_shuffle``: blocks of ``block_size`` rows in a new random order each
  epoch, grouped into read tasks, then the local shuffle buffer (like block_shuffling).

Every epoch's read tasks, their order, each rank's share and every shuffle seed
come from (seed, epoch, rank) alone. Ray Data's own per-execution reseeding (file
shuffles, a trainer dataset's splits) counts executions from 0 again after a
restart, so a resumed run would replay epoch 0's order; here each rank builds the
epoch's dataset itself, so a run resumed at epoch ``e`` reads what an
uninterrupted run reads there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import ray
import scipy.sparse as sp
from ray.data import DataContext, Dataset, Datasource, ExecutionOptions, ReadTask, read_datasource
from ray.data.block import BlockMetadata

from raycell.tahoe.data.labels import TASKS, LabelSpace
from raycell.tahoe.data.plates import PlateRows, TahoeSplit
from raycell.tahoe.data.sparse import SparseBatch, TahoeRows, runs

ROW, INDICES, VALUES = "row", "indices", "values"


def _sub_split(split: TahoeSplit, rows: np.ndarray) -> TahoeSplit:
    """The sorted ``rows`` of ``split`` as a split of their own: one plate entry per run.

    Row pointers stay absolute offsets into each file's X; a read task cuts its own
    rows out of the split (800 MB of pointers for all of Tahoe) when it runs.
    """
    offsets = np.cumsum([0] + [p.n_rows for p in split.plates])
    pieces = []
    for start, stop in zip(*runs(rows), strict=True):
        while start < stop:  # a run may cross from one plate into the next
            plate = int(np.searchsorted(offsets, start, side="right") - 1)
            end = min(stop, int(offsets[plate + 1]))
            local = start - int(offsets[plate]), end - int(offsets[plate])
            source = split.plates[plate]
            pieces.append(PlateRows(source.path, end - start,
                                    source.indptr[local[0] : local[1] + 1]))
            start = end
    return TahoeSplit(tuple(pieces), split.n_vars, split.codes[rows])


@dataclass(frozen=True)
class RowGroup:
    """The rows of one read task, compactly: ``length`` rows from each of ``starts``.

    A read plan over Tahoe's 93M training rows is 5.7k of these, a few KB each; the
    split's row pointers and labels reach the read tasks once, through the object store.
    """

    starts: np.ndarray  # sorted int64 first rows
    length: int
    n: int  # rows in the split: the last block may be cut short

    def rows(self) -> np.ndarray:
        rows = (self.starts[:, None] + np.arange(self.length)).ravel()
        return rows[rows < self.n]

    @property
    def size(self) -> int:
        return int(np.minimum(self.n - self.starts, self.length).sum())


def _read(split_ref: ray.ObjectRef, labels: LabelSpace, group: RowGroup) -> list[pa.Table]:
    """Run inside a Ray task: the split comes zero-copy from the object store, and h5py
    is opened here, never pickled."""
    rows = group.rows()
    piece = _sub_split(ray.get(split_ref), rows)
    batch = TahoeRows(piece, labels)[np.arange(len(piece))]
    batch.rows = rows
    return [to_arrow(batch)]


def to_arrow(batch: SparseBatch) -> pa.Table:
    x = batch.x
    offsets = pa.array(x.indptr.astype(np.int32))
    columns = {  # the values uncopied where they have the list's type already
        ROW: pa.array(batch.rows.astype(np.int64, copy=False)),
        INDICES: pa.ListArray.from_arrays(offsets, pa.array(x.indices.astype(np.int32,
                                                                               copy=False))),
        VALUES: pa.ListArray.from_arrays(offsets, pa.array(x.data.astype(np.float32,
                                                                           copy=False))),
    }
    columns.update({task: pa.array(batch.labels[:, i]) for i, task in enumerate(TASKS)})
    return pa.table(columns)


def from_arrow(table: pa.Table, n_vars: int) -> SparseBatch:
    """An Arrow batch (possibly a slice of several blocks) as a SparseBatch, values uncopied."""

    def flat(name: str) -> tuple[np.ndarray, np.ndarray]:
        column = table.column(name).combine_chunks()
        offsets = column.offsets.to_numpy()
        return column.flatten().to_numpy(), offsets - offsets[0]

    indices, indptr = flat(INDICES)
    values, _ = flat(VALUES)
    x = sp.csr_array((values, indices, indptr), shape=(table.num_rows, n_vars))
    labels = np.stack([table.column(t).to_numpy() for t in TASKS], axis=1)
    return SparseBatch(x, labels, table.column(ROW).to_numpy())


def row_groups(n: int, read_rows: int, block_size: int | None, seed: int, epoch: int,
               world: int = 1) -> list[list[RowGroup]]:
    """Every rank's read tasks of an epoch, as row groups of ``read_rows`` rows.

    Without ``block_size``: each rank's contiguous ``1/world`` of the rows, in order.
    With it: blocks of ``block_size`` rows in an order drawn from (``seed``,
    ``epoch``), each rank's ``1/world`` of that order, ``read_rows // block_size``
    blocks a task, each task's blocks sorted so adjacent ones read at once.
    """
    if block_size is None:
        bounds = [(r * n // world, (r + 1) * n // world) for r in range(world)]
        return [[RowGroup(np.array([s], np.int64), min(read_rows, hi - s), n)
                 for s in range(lo, hi, read_rows)] for lo, hi in bounds]
    order = np.random.default_rng([seed, epoch]).permutation(np.arange(0, n, block_size))
    per_task = max(1, read_rows // block_size)
    return [[RowGroup(np.sort(starts[i : i + per_task]), block_size, n)
             for i in range(0, starts.size, per_task)]
            for starts in np.array_split(order, world)]


class TahoeDatasource(Datasource):
    """One read task per row group of a Tahoe split (in the object store), in the order given."""

    def __init__(self, split_ref: ray.ObjectRef, n_vars: int, bytes_per_row: float,
                 labels: LabelSpace, groups: list[RowGroup]):
        super().__init__()
        self.split_ref, self.n_vars, self.bytes_per_row = split_ref, n_vars, bytes_per_row
        self.labels, self.groups = labels, groups

    def get_name(self) -> str:
        return "TahoeH5ad"

    def estimate_inmemory_data_size(self) -> int:
        return int(self.bytes_per_row * sum(g.size for g in self.groups))

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: DataContext | None = None) -> list[ReadTask]:
        return [ReadTask(partial(_read, self.split_ref, self.labels, group),
                         BlockMetadata(num_rows=group.size,
                                       size_bytes=int(group.size * self.bytes_per_row),
                                       input_files=None, exec_stats=None),
                         per_task_row_limit=per_task_row_limit)
                for group in self.groups]


def bytes_per_row(split: TahoeSplit) -> float:
    """In-memory Arrow bytes of a row: 8 per stored value (index, count) plus labels."""
    nnz = sum(int(p.indptr[-1] - p.indptr[0]) for p in split.plates)
    return nnz * 8 / max(len(split), 1) + 40


def epoch_dataset(source: TahoeDatasource, resources: Mapping[str, float]) -> Dataset:
    """The Dataset of some row groups, read in the order given (preserve_order), each read
    task on a node with ``resources`` (none: anywhere)."""
    dataset = read_datasource(source, resources=dict(resources) or None)
    dataset.context.execution_options = ExecutionOptions(preserve_order=True)
    return dataset


def ray_data_epochs(split: TahoeSplit, labels: LabelSpace, strategy, s):
    """epoch -> this rank's batches of a Ray Data strategy (``strategy``: a RayDataStrategy).

    Each rank reads its share of the epoch's order and stops at the fewest batches
    any rank has, so DDP ranks step together.
    """
    if split.parquet:  # shards: Ray Data's own parquet reader
        from raycell.tahoe.loaders.raydata_parquet import parquet_epochs

        return parquet_epochs(split, labels, strategy, s)
    block = s.block_size if strategy.blocked else None
    split_ref, row_bytes = ray.put(split), bytes_per_row(split)  # once a run, not per task

    def epoch_batches(epoch: int) -> Iterator[SparseBatch]:
        shares = row_groups(len(split), s.read_rows, block, s.seed, epoch, s.world)
        steps = min(-(-sum(g.size for g in groups) // s.batch_size) for groups in shares)
        source = TahoeDatasource(split_ref, split.n_vars, row_bytes, labels, shares[s.rank])
        batches = iter_sparse_batches(
            epoch_dataset(source, s.read_resources), split.n_vars, s.batch_size,
            s.buffer_rows if strategy.shuffle_buffer else None, s.seed + 1000 * epoch + s.rank)
        return (batch for _, batch in zip(range(steps), batches, strict=False))

    return epoch_batches


def iter_sparse_batches(dataset: Dataset, n_vars: int, batch_size: int, buffer_rows: int | None,
                        seed: int) -> Iterator[SparseBatch]:
    """SparseBatches of a Dataset, through a local shuffle buffer of ``buffer_rows`` if set."""
    tables = dataset.iter_batches(
        batch_size=batch_size,
        batch_format="pyarrow",
        local_shuffle_buffer_size=buffer_rows,
        local_shuffle_seed=seed if buffer_rows else None,
    )
    for table in tables:
        yield from_arrow(table, n_vars)
