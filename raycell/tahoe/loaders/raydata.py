"""The Ray Data strategies: a Tahoe split as a Ray Data datasource, read on every rank.
(Parquet shards read in order go through Ray Data's own reader: ``raydata_parquet.py``.)

Ray Data has no h5ad reader (docs/facts.md), and its parquet reader reads a file's row
groups in order, so ``TahoeDatasource`` makes read tasks over rows of a split. Each task
opens its files inside the task, reads its rows (plates as CSR runs, shards as the row
groups that hold them: the same readers as the scDataset strategies) and emits one Arrow
block: CSR rows as ``list<int32>`` gene indices and ``list<float32>`` counts, plus the
task labels. Consumers take whole blocks and cut batches from them in CSR
(``batching.py``), without copying the values, so rows stay sparse until the training
device.

The strategies (registered in ``raycell/tahoe/loaders/strategies.py``):

- ``ray_streaming``: read tasks over consecutive row ranges, in order.
- ``ray_buffer``: the same, through a local shuffle buffer (like streaming_buffer).
- ``ray_block_shuffle``: blocks in a new random order each epoch, grouped into read
  tasks, then the local shuffle buffer (like block_shuffling). A block is
  ``block_size`` rows of a plate, or a row group's rows of a shard.

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
from raycell.tahoe.loaders import batching

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
class ReadRows:
    """The rows of one read task, compactly: the runs ``starts[i]:stops[i]`` of the split.

    A read plan over Tahoe's 93M training rows is 5.7k of these, a few KB each; the
    split's row pointers and labels reach the read tasks once, through the object store.
    """

    starts: np.ndarray  # sorted int64 first rows of its blocks
    stops: np.ndarray  # their ends

    def rows(self) -> np.ndarray:
        lengths = self.stops - self.starts
        before = np.cumsum(lengths) - lengths  # rows of the runs before each
        return np.repeat(self.starts - before, lengths) + np.arange(lengths.sum())

    @property
    def size(self) -> int:
        return int((self.stops - self.starts).sum())


def _read(split_ref: ray.ObjectRef, labels: LabelSpace, task: ReadRows) -> list[pa.Table]:
    """Run inside a Ray task: the split comes zero-copy from the object store, and files
    are opened here, never pickled."""
    rows, split = task.rows(), ray.get(split_ref)
    if split.parquet:  # the row groups that hold the rows, decoded; Arrow chunks, unstacked
        from raycell.tahoe.data.hf_rows import ParquetRows

        parts, at = ParquetRows(split, labels).parts(rows), 0
        codes = labels.expand(split.codes[rows])
        tables = []
        for x in parts:
            tables.append(to_arrow(SparseBatch(x, codes[at : at + x.shape[0]],
                                               rows[at : at + x.shape[0]])))
            at += x.shape[0]
        return [pa.concat_tables(tables)]
    piece = _sub_split(split, rows)
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


def block_bounds(split: TahoeSplit, block_size: int) -> np.ndarray:
    """Where a block shuffle's blocks start, then ``len(split)``: every ``block_size`` rows
    of plates; over parquet shards, each row group's rows of the split (a shard is read
    no finer than a row group, so a block there is one)."""
    if not split.parquet:
        return np.append(np.arange(0, len(split), block_size), len(split))
    starts, at = [], 0
    for piece in split.plates:
        group = np.searchsorted(piece.group_starts, piece.rows, side="right") - 1
        starts.append(at + np.flatnonzero(np.diff(group, prepend=-1)))
        at += piece.n_rows
    return np.append(np.concatenate(starts), at)


def read_plan(n: int, read_rows: int, bounds: np.ndarray | None, seed: int, epoch: int,
              world: int = 1) -> list[list[ReadRows]]:
    """Every rank's read tasks of an epoch, of about ``read_rows`` rows each.

    Without ``bounds``: each rank's contiguous ``1/world`` of the rows, in order.
    With them (``block_bounds``): the blocks in an order drawn from (``seed``, ``epoch``),
    each rank's ``1/world`` of that order, consecutive blocks of it a task until the task
    holds ``read_rows``, each task's blocks sorted so adjacent ones read at once.
    """
    if bounds is None:
        shares = [(r * n // world, (r + 1) * n // world) for r in range(world)]
        return [[ReadRows(np.array([s], np.int64), np.array([min(s + read_rows, hi)], np.int64))
                 for s in range(lo, hi, read_rows)] for lo, hi in shares]
    sizes = np.diff(bounds)
    order = np.random.default_rng([seed, epoch]).permutation(sizes.size)
    plans = []
    for blocks in np.array_split(order, world):
        task = (np.cumsum(sizes[blocks]) - 1) // max(read_rows, 1)  # non-decreasing
        tasks = np.split(blocks, np.flatnonzero(np.diff(task)) + 1) if blocks.size else []
        plans.append([ReadRows(bounds[t], bounds[t + 1]) for t in map(np.sort, tasks)])
    return plans


class TahoeDatasource(Datasource):
    """One read task per ReadRows of a Tahoe split (in the object store), in the order given."""

    def __init__(self, split_ref: ray.ObjectRef, n_vars: int, bytes_per_row: float,
                 labels: LabelSpace, tasks: list[ReadRows]):
        super().__init__()
        self.split_ref, self.n_vars, self.bytes_per_row = split_ref, n_vars, bytes_per_row
        self.labels, self.tasks = labels, tasks

    def get_name(self) -> str:
        return "Tahoe"

    def estimate_inmemory_data_size(self) -> int:
        return int(self.bytes_per_row * sum(t.size for t in self.tasks))

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: DataContext | None = None) -> list[ReadTask]:
        return [ReadTask(partial(_read, self.split_ref, self.labels, task),
                         BlockMetadata(num_rows=task.size,
                                       size_bytes=int(task.size * self.bytes_per_row),
                                       input_files=None, exec_stats=None),
                         per_task_row_limit=per_task_row_limit)
                for task in self.tasks]


def bytes_per_row(split: TahoeSplit) -> float:
    """In-memory Arrow bytes of a row: 8 per stored value (index, count) plus labels. Over
    shards, the values a row holds come from the first row group's footer."""
    if split.parquet:
        from raycell.tahoe.data.hf_rows import open_shard

        group = open_shard(split.plates[0].path, split.filesystem).metadata.row_group(0)
        genes = next(group.column(i) for i in range(group.num_columns)
                     if group.column(i).path_in_schema.startswith("genes."))
        return genes.num_values * 8 / max(group.num_rows, 1) + 40
    nnz = sum(int(p.indptr[-1] - p.indptr[0]) for p in split.plates)
    return nnz * 8 / max(len(split), 1) + 40


def epoch_dataset(source: TahoeDatasource, resources: Mapping[str, float]) -> Dataset:
    """The Dataset of some read tasks, read in the order given (preserve_order), each read
    task on a node with ``resources`` (none: anywhere). A task's rows stay one block: Ray
    would cut them into its minimum of 200 blocks, each a block more to pass and convert."""
    dataset = read_datasource(source, resources=dict(resources) or None,
                              override_num_blocks=len(source.tasks))
    dataset.context.execution_options = ExecutionOptions(preserve_order=True)
    return dataset


def ray_data_epochs(split: TahoeSplit, labels: LabelSpace, strategy, s):
    """epoch -> this rank's batches of a Ray Data strategy (``strategy``: a RayDataStrategy).

    Each rank reads its share of the epoch's order and stops at the fewest batches
    any rank has, so DDP ranks step together.
    """
    if split.parquet and not strategy.blocked:  # shards in order: Ray Data's own reader
        from raycell.tahoe.loaders.raydata_parquet import parquet_epochs

        return parquet_epochs(split, labels, strategy, s)
    bounds = block_bounds(split, s.block_size) if strategy.blocked else None
    split_ref, row_bytes = ray.put(split), bytes_per_row(split)  # once a run, not per task

    def epoch_batches(epoch: int) -> Iterator[SparseBatch]:
        shares = read_plan(len(split), s.read_rows, bounds, s.seed, epoch, s.world)
        steps = min(-(-sum(t.size for t in tasks) // s.batch_size) for tasks in shares)
        source = TahoeDatasource(split_ref, split.n_vars, row_bytes, labels, shares[s.rank])
        batches = iter_sparse_batches(
            epoch_dataset(source, s.read_resources), split.n_vars, s.batch_size,
            s.buffer_rows if strategy.shuffle_buffer else None, s.seed + 1000 * epoch + s.rank)
        return (batch for _, batch in zip(range(steps), batches, strict=False))

    return epoch_batches


def iter_sparse_batches(dataset: Dataset, n_vars: int, batch_size: int, buffer_rows: int | None,
                        seed: int) -> Iterator[SparseBatch]:
    """SparseBatches of a Dataset, through a local shuffle buffer of ``buffer_rows`` if set:
    Ray Data hands over whole blocks, cut into batches in CSR (``batching.py``)."""
    blocks = (from_arrow(table, n_vars)
              for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"))
    if buffer_rows:
        return batching.shuffled(blocks, batch_size, buffer_rows, seed)
    return batching.in_order(blocks, batch_size)
