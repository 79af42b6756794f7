"""The Ray Data arms on a real local cluster: rows, order, per-epoch reshuffling, shards."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import ray

from raycell.core.errors import RaycellError
from raycell.tahoe.inputs import load_tahoe_inputs
from raycell.tahoe.raydata import (
    TahoeDatasource,
    execution_options,
    iter_sparse_batches,
    ray_arm,
    tahoe_dataset,
)
from raycell.tahoe.sparse import TahoeRows
from tests.conftest import tiny_config

pytestmark = pytest.mark.ray
READ_ROWS, BLOCK, BATCH, BUFFER = 100, 4, 16, 64


@pytest.fixture(scope="module")
def inputs(tahoe_dir, tmp_path_factory):
    ray.init(num_cpus=4, include_dashboard=False)
    yield load_tahoe_inputs(tiny_config(tahoe_dir, tmp_path_factory.mktemp("o")))
    ray.shutdown()


def _dataset(inputs, name, seed=0):
    ds = tahoe_dataset(name, inputs.train, inputs.labels, READ_ROWS, BLOCK, seed)
    ds.context.execution_options = execution_options()
    return ds


def _epoch(source, inputs, name, seed=0):
    return list(iter_sparse_batches(source, name, inputs.train.n_vars, BATCH, BUFFER, seed))


def test_rows_arrive_as_the_csr_reader_reads_them(inputs):
    batches = _epoch(_dataset(inputs, "ray_block_shuffle"), inputs, "ray_block_shuffle")
    reference = TahoeRows(inputs.train, inputs.labels)
    for batch in batches[:5]:
        expected = reference[np.sort(batch.rows)]
        order = np.argsort(batch.rows)
        assert (batch.x[order] != expected.x).nnz == 0
        np.testing.assert_array_equal(batch.labels[order], expected.labels)
    assert all(len(b) == BATCH for b in batches[:-1])


@pytest.mark.parametrize("name", ["ray_streaming", "ray_buffer", "ray_block_shuffle"])
def test_every_arm_reads_every_row_once_per_epoch(inputs, name):
    rows = np.concatenate([b.rows for b in _epoch(_dataset(inputs, name), inputs, name)])
    np.testing.assert_array_equal(np.sort(rows), np.arange(len(inputs.train)))
    in_order = bool((np.diff(rows) == 1).all())
    assert in_order == (name == "ray_streaming")


def test_block_order_is_new_each_epoch_and_reproducible(inputs):
    name = "ray_block_shuffle"
    ds = _dataset(inputs, name)
    first, second = (np.concatenate([b.rows for b in _epoch(ds, inputs, name, seed=1)])
                     for _ in range(2))
    assert not np.array_equal(first, second)  # a new block order each execution
    again = np.concatenate([b.rows for b in _epoch(_dataset(inputs, name), inputs, name, seed=1)])
    np.testing.assert_array_equal(first, again)  # same seed, same first epoch


def test_read_tasks_take_whole_blocks_of_rows(inputs):
    source = TahoeDatasource(inputs.train, inputs.labels, READ_ROWS, BLOCK, seed=0)
    groups = source._row_groups(None)
    assert all(g.size <= READ_ROWS for g in groups)
    for group in groups:
        blocks, counts = np.unique(group // BLOCK, return_counts=True)
        assert (counts[blocks < len(inputs.train) // BLOCK] == BLOCK).all()
    # Blocks are scattered over the split, not in order.
    assert not np.array_equal(np.concatenate(groups), np.arange(len(inputs.train)))


def test_train_style_shards_split_rows_and_reshuffle_per_epoch(inputs):
    """What Ray Train does with a trainer dataset: streaming_split(n, equal=True)."""
    name = "ray_block_shuffle"
    shards = _dataset(inputs, name).streaming_split(2, equal=True)

    def consume(rank):  # both shards must be read at once, as Train's workers do
        return [np.concatenate([b.rows for b in _epoch(shards[rank], inputs, name, seed=rank)])
                for _ in range(2)]

    with ThreadPoolExecutor(2) as pool:
        (a1, a2), (b1, b2) = pool.map(consume, range(2))
    assert len(a1) == len(b1) and not set(a1) & set(b1)  # equal, disjoint shares
    assert len(a1) + len(b1) > 0.95 * len(inputs.train)
    assert not np.array_equal(a1, a2)  # the second epoch is a new order


def test_unknown_arm_is_a_clear_error(inputs):
    with pytest.raises(RaycellError, match="unknown Ray Data arm 'ray_random'"):
        ray_arm("ray_random")
