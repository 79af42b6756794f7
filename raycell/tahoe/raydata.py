"""The Ray Data arms: Tahoe plates as a Ray Data datasource, fed to Ray Train as shards.

Ray Data has no h5ad reader (FACTS.md), so ``TahoeDatasource`` makes read tasks
over rows of a split. Each task opens its plate with h5py inside the task, reads
its rows as CSR runs (the same reader as the scDataset arms) and emits one Arrow
block: CSR rows as ``list<int32>`` gene indices and ``list<float32>`` counts, plus
the task labels. Consumers turn Arrow batches back into ``SparseBatch`` without
copying the values, so rows stay sparse until the training device.

The arms, by name (the registry the CLI, configs, grids and bench share):

- ``ray_streaming``: read tasks over consecutive row ranges, in order.
- ``ray_buffer``: the same, through a local shuffle buffer (like streaming_buffer).
- ``ray_block_shuffle``: blocks of ``block_size`` rows in a new random order each
  epoch, grouped into read tasks, then the local shuffle buffer (like block_shuffling).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from ray.data import DataContext, Dataset, Datasource, ExecutionOptions, ReadTask, read_datasource
from ray.data.block import BlockMetadata

from raycell.core.errors import RaycellError
from raycell.tahoe.config import RAY_DATA_STRATEGIES
from raycell.tahoe.labels import TASKS, LabelSpace
from raycell.tahoe.plates import PlateRows, TahoeSplit
from raycell.tahoe.sparse import SparseBatch, TahoeRows, runs

ROW, INDICES, VALUES = "row", "indices", "values"


@dataclass(frozen=True)
class RayArm:
    shuffle_blocks: bool  # blocks of rows in a fresh random order each epoch
    shuffle_buffer: bool  # a local shuffle buffer between the reader and the batches


RAY_ARMS = {
    "ray_streaming": RayArm(shuffle_blocks=False, shuffle_buffer=False),
    "ray_buffer": RayArm(shuffle_blocks=False, shuffle_buffer=True),
    "ray_block_shuffle": RayArm(shuffle_blocks=True, shuffle_buffer=True),
}
assert tuple(RAY_ARMS) == RAY_DATA_STRATEGIES


def ray_arm(name: str) -> RayArm:
    if name not in RAY_ARMS:
        raise RaycellError(f"unknown Ray Data arm {name!r} (known: {', '.join(RAY_ARMS)})")
    return RAY_ARMS[name]


def _sub_split(split: TahoeSplit, rows: np.ndarray) -> TahoeSplit:
    """The sorted ``rows`` of ``split`` as a split of their own: one plate entry per run.

    Row pointers stay absolute offsets into each file's X, so a read task carries
    only the pointers of its own rows, not the split's (800 MB for all of Tahoe).
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


def _read(piece: TahoeSplit, labels: LabelSpace, rows: np.ndarray) -> list[pa.Table]:
    """Run inside a Ray task: h5py is opened here, never pickled."""
    batch = TahoeRows(piece, labels)[np.arange(len(piece))]
    batch.rows = rows
    return [to_arrow(batch)]


def to_arrow(batch: SparseBatch) -> pa.Table:
    x = batch.x
    offsets = pa.array(x.indptr.astype(np.int32))
    columns = {
        ROW: pa.array(batch.rows.astype(np.int64)),
        INDICES: pa.ListArray.from_arrays(offsets, pa.array(x.indices.astype(np.int32))),
        VALUES: pa.ListArray.from_arrays(offsets, pa.array(x.data.astype(np.float32))),
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


class TahoeDatasource(Datasource):
    """Read tasks over the rows of a Tahoe split, ``read_rows`` rows per task.

    With ``block_size`` set, rows are taken in blocks of ``block_size`` whose order
    is drawn from (``seed``, execution index): every epoch (execution) gets a new,
    reproducible order, the way Ray's own file shuffling reseeds per execution.
    Each task reads its blocks sorted, so runs of adjacent blocks are read at once.
    """

    def __init__(self, split: TahoeSplit, labels: LabelSpace, read_rows: int,
                 block_size: int | None = None, seed: int = 0):
        super().__init__()
        self.split, self.labels = split, labels
        self.read_rows, self.block_size, self.seed = read_rows, block_size, seed

    def get_name(self) -> str:
        return "TahoeH5ad"

    def estimate_inmemory_data_size(self) -> int:
        nnz = sum(int(p.indptr[-1] - p.indptr[0]) for p in self.split.plates)
        return nnz * 8 + len(self.split) * 40

    def _row_groups(self, data_context: DataContext | None) -> list[np.ndarray]:
        n = len(self.split)
        if self.block_size is None:
            return [np.arange(s, min(s + self.read_rows, n)) for s in range(0, n, self.read_rows)]
        epoch = data_context._execution_idx if data_context is not None else 0
        starts = np.random.default_rng([self.seed, epoch]).permutation(
            np.arange(0, n, self.block_size))
        per_task = max(1, self.read_rows // self.block_size)
        groups = []
        for i in range(0, starts.size, per_task):
            chosen = np.sort(starts[i : i + per_task])
            rows = (chosen[:, None] + np.arange(self.block_size)).ravel()
            groups.append(rows[rows < n])
        return groups

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: DataContext | None = None) -> list[ReadTask]:
        tasks = []
        for rows in self._row_groups(data_context):
            piece = _sub_split(self.split, rows)
            nnz = sum(int(p.indptr[-1] - p.indptr[0]) for p in piece.plates)
            meta = BlockMetadata(num_rows=rows.size, size_bytes=nnz * 8 + rows.size * 40,
                                 input_files=sorted({p.path for p in piece.plates}),
                                 exec_stats=None)
            tasks.append(ReadTask(partial(_read, piece, self.labels, rows), meta,
                                  per_task_row_limit=per_task_row_limit))
        return tasks


def tahoe_dataset(name: str, split: TahoeSplit, labels: LabelSpace, read_rows: int,
                  block_size: int, seed: int) -> Dataset:
    """The Ray Dataset of one arm over a split (no local shuffle: that is the consumer's)."""
    arm = ray_arm(name)
    source = TahoeDatasource(split, labels, read_rows, block_size if arm.shuffle_blocks else None,
                             seed)
    return read_datasource(source)


def execution_options() -> ExecutionOptions:
    """Blocks in read-task order: in-order streaming stays in order, shuffles reproducible."""
    return ExecutionOptions(preserve_order=True)


def iter_sparse_batches(source, name: str, n_vars: int, batch_size: int, buffer_rows: int,
                        seed: int) -> Iterator[SparseBatch]:
    """SparseBatches from a Dataset or a Train dataset shard (a DataIterator)."""
    arm = ray_arm(name)
    tables = source.iter_batches(
        batch_size=batch_size,
        batch_format="pyarrow",
        local_shuffle_buffer_size=buffer_rows if arm.shuffle_buffer else None,
        local_shuffle_seed=seed if arm.shuffle_buffer else None,
    )
    for table in tables:
        yield from_arrow(table, n_vars)
