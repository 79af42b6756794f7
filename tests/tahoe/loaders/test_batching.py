"""Batches cut from Ray Data blocks in CSR: in order, and through the local shuffle buffer,
checked against Ray Data's own ShufflingBatcher on the same rows and seed."""

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
from ray.data._internal.batcher import ShufflingBatcher

from raycell.tahoe.data.sparse import SparseBatch
from raycell.tahoe.loaders.batching import in_order, shuffled

SIZES = [100, 3, 64, 1000, 7, 0, 500, 1]  # blocks as Ray hands them over, an empty one too


def _blocks(sizes=SIZES):
    first = 0
    for n in sizes:
        rows = np.arange(first, first + n)
        x = sp.random(n, 30, density=0.2, format="csr", random_state=n, dtype=np.float32)
        x.data[:] = np.repeat(rows, np.diff(x.indptr))  # every value names its row
        yield SparseBatch(sp.csr_array(x), np.tile(rows[:, None], (1, 4)), rows)
        first += n


def _check(batch: SparseBatch) -> None:
    """A batch's rows carry their own labels and values: nothing got mixed up."""
    np.testing.assert_array_equal(batch.labels[:, 0], batch.rows)
    np.testing.assert_array_equal(batch.x.data, np.repeat(batch.rows, np.diff(batch.x.indptr)))


def test_in_order_cuts_consecutive_full_batches_across_blocks():
    batches = list(in_order(_blocks(), 64))
    for b in batches:
        _check(b)
    assert [len(b) for b in batches[:-1]] == [64] * (len(batches) - 1)
    np.testing.assert_array_equal(np.concatenate([b.rows for b in batches]),
                                  np.arange(sum(SIZES)))


@pytest.mark.parametrize("buffer_rows", [128, 300, 5000])
def test_shuffled_batches_are_ray_datas_shuffling_batcher_on_csr(buffer_rows):
    ours = list(shuffled(_blocks(), 64, buffer_rows, seed=7))
    batcher, ray_rows = ShufflingBatcher(64, buffer_rows, shuffle_seed=7), []
    for block in _blocks():  # Ray Data's own loop (block_batching.util.blocks_to_batches)
        batcher.add(pa.table({"row": block.rows}))
        while batcher.has_batch():
            ray_rows.append(batcher.next_batch().column("row").to_numpy())
    batcher.done_adding()
    while batcher.has_any():
        ray_rows.append(batcher.next_batch().column("row").to_numpy())
    assert len(ours) == len(ray_rows)
    for batch, want in zip(ours, ray_rows, strict=True):
        _check(batch)
        np.testing.assert_array_equal(batch.rows, want)
    assert not np.array_equal(np.concatenate(ray_rows), np.arange(sum(SIZES)))  # shuffled
