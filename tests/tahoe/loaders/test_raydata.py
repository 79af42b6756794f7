"""The Ray Data strategies on the session's Ray cluster, over h5ad plates (raycell's own
datasource) and over the same cells as parquet shards (Ray Data's read_parquet in order,
raycell's datasource over row groups for the block shuffle): rows,
order, per-epoch reshuffling from the epoch alone (exact resume), ranks' shares."""

import itertools

import numpy as np
import pytest

from raycell.tahoe.data.sparse import split_rows
from raycell.tahoe.inputs import load_tahoe_inputs
from raycell.tahoe.loaders.raydata import block_bounds, read_plan
from raycell.tahoe.loaders.strategies import STRATEGIES, LoaderSettings
from tests.conftest import tiny_config

pytestmark = pytest.mark.ray
READ_ROWS, BLOCK, BATCH, BUFFER, GROUP = 100, 4, 16, 64, 64


@pytest.fixture(scope="module")
def snapshot(tahoe_dir, tmp_path_factory):
    """The plates as shards of 300 cells (3 a plate), row groups of GROUP."""
    from raycell.tahoe.data.hf_layout import convert_h5ad

    return convert_h5ad(tahoe_dir, tmp_path_factory.mktemp("hf") / "snapshot",
                        rows_per_shard=300, rows_per_group=GROUP)


@pytest.fixture(scope="module", params=["h5ad", "parquet"])
def inputs(request, tahoe_dir, tmp_path_factory, ray_address):
    out = tmp_path_factory.mktemp("o")
    if request.param == "h5ad":
        return load_tahoe_inputs(tiny_config(tahoe_dir, out))
    snapshot = request.getfixturevalue("snapshot")
    return load_tahoe_inputs(tiny_config(None, out, **{"data.h5ad_dir": None,
                                                       "data.parquet_dir": str(snapshot)}))


def _epochs(inputs, name, seed=0, rank=0, world=1):
    s = LoaderSettings(batch_size=BATCH, fetch_factor=4, num_workers=0, read_rows=READ_ROWS,
                       buffer_rows=BUFFER, block_size=BLOCK if STRATEGIES[name].blocked else 1,
                       min_count_baseline=1000, seed=seed, rank=rank, world=world)
    return STRATEGIES[name].epochs(inputs.train, inputs.labels, s)


def _rows(epoch_batches, epoch):
    return np.concatenate([b.rows for b in epoch_batches(epoch)])


def test_rows_arrive_as_the_csr_reader_reads_them(inputs):
    batches = list(_epochs(inputs, "ray_block_shuffle")(0))
    reference = split_rows(inputs.train, inputs.labels)
    for batch in batches[:5]:
        expected = reference[np.sort(batch.rows)]
        order = np.argsort(batch.rows)
        assert (batch.x[order] != expected.x).nnz == 0
        np.testing.assert_array_equal(batch.labels[order], expected.labels)
    assert all(len(b) == BATCH for b in batches[:-1])


@pytest.mark.parametrize("name", ["ray_streaming", "ray_buffer", "ray_block_shuffle"])
def test_every_strategy_reads_every_row_once_per_epoch(inputs, name):
    rows = _rows(_epochs(inputs, name), 0)
    np.testing.assert_array_equal(np.sort(rows), np.arange(len(inputs.train)))
    in_order = bool((np.diff(rows) == 1).all())
    assert in_order == (name == "ray_streaming")


def test_block_order_comes_from_the_epoch_not_from_how_many_epochs_ran(inputs):
    """A resumed run reads epoch 2 first: it must get what an uninterrupted run gets."""
    name = "ray_block_shuffle"
    uninterrupted = _epochs(inputs, name, seed=1)
    first, second, third = (_rows(uninterrupted, e) for e in range(3))
    assert not np.array_equal(first, second)  # a new order each epoch
    resumed = _epochs(inputs, name, seed=1)
    np.testing.assert_array_equal(_rows(resumed, 2), third)
    assert not np.array_equal(_rows(_epochs(inputs, name, seed=2), 2), third)  # seeded


def test_streaming_over_shards_reads_the_batches_of_streaming_over_plates(
        tahoe_dir, snapshot, tmp_path):
    plates = load_tahoe_inputs(tiny_config(tahoe_dir, tmp_path / "a"))
    shards = load_tahoe_inputs(tiny_config(None, tmp_path / "b", **{
        "data.h5ad_dir": None, "data.parquet_dir": str(snapshot)}))
    want, got = (list(_epochs(i, "ray_streaming")(0)) for i in (plates, shards))
    assert len(want) == len(got)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)
        assert (a.x != b.x).nnz == 0
        np.testing.assert_array_equal(a.labels, b.labels)


def test_read_tasks_take_whole_blocks_of_rows(tahoe_dir, tmp_path):
    inputs = load_tahoe_inputs(tiny_config(tahoe_dir, tmp_path))
    n = len(inputs.train)
    (plan,) = read_plan(n, READ_ROWS, block_bounds(inputs.train, BLOCK), seed=0, epoch=0)
    groups = [g.rows() for g in plan]
    assert all(g.size == task.size <= READ_ROWS for g, task in zip(groups, plan, strict=True))
    for group in groups:
        blocks, counts = np.unique(group // BLOCK, return_counts=True)
        assert (counts[blocks < n // BLOCK] == BLOCK).all()
    # Blocks are scattered over the split, not in order.
    assert not np.array_equal(np.concatenate(groups), np.arange(n))
    np.testing.assert_array_equal(np.sort(np.concatenate(groups)), np.arange(n))


def test_over_shards_a_block_is_a_row_groups_rows(snapshot, tmp_path):
    split = load_tahoe_inputs(tiny_config(None, tmp_path, **{
        "data.h5ad_dir": None, "data.parquet_dir": str(snapshot)})).train
    bounds = block_bounds(split, BLOCK)
    offsets = np.cumsum([0] + [p.n_rows for p in split.plates])
    group_of = np.concatenate([  # (shard, row group) of every split row
        [hash((p.path, g)) for g in np.searchsorted(p.group_starts, p.rows, "right")]
        for p in split.plates])
    assert bounds[0] == 0 and bounds[-1] == offsets[-1] and np.all(np.diff(bounds) > 0)
    for a, b in itertools.pairwise(bounds):
        assert len(set(group_of[a:b])) == 1  # one row group's rows ...
        assert b == bounds[-1] or group_of[b] != group_of[a]  # ... all of them
    assert np.diff(bounds).max() <= GROUP
    (plan,) = read_plan(len(split), READ_ROWS, bounds, seed=0, epoch=0)
    rows = np.concatenate([t.rows() for t in plan])
    np.testing.assert_array_equal(np.sort(rows), np.arange(len(split)))


@pytest.mark.parametrize("name", ["ray_streaming", "ray_block_shuffle"])
def test_ranks_read_disjoint_shares_in_equal_steps(inputs, name):
    ranks = [[b.rows for b in _epochs(inputs, name, rank=r, world=2)(1)] for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])  # DDP ranks step together
    a, b = np.concatenate(ranks[0]), np.concatenate(ranks[1])
    assert not set(a) & set(b)
    assert len(a) + len(b) > 0.9 * len(inputs.train)


def test_a_read_task_imports_neither_torch_nor_anndata():
    """Read tasks unpickle the datasource's module in fresh worker processes, 8 at once
    here: torch and anndata there doubled a fresh job's first batch (docs/benchmarks.md)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import sys, raycell.tahoe.loaders.raydata; "
         "print(sorted({'torch', 'anndata'} & set(sys.modules)))"],
        capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr[-2000:]
