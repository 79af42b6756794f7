"""The strategy registry and the scDataset strategies: per-epoch reshuffling with DataLoader
workers, disjoint DDP ranks, equal step counts."""

import numpy as np
import pytest
import scipy.sparse as sp
from scdataset import BlockShuffling, BlockWeightedSampling, Streaming

from raycell.core.errors import RaycellError
from raycell.tahoe.config import load_tahoe_config
from raycell.tahoe.inputs import load_tahoe_inputs
from raycell.tahoe.loaders.scdataset_loader import batches_per_rank, make_dataset, make_loader
from raycell.tahoe.loaders.strategies import STRATEGIES, LoaderSettings, get_strategy
from tests.conftest import tiny_config

N = 2000


@pytest.fixture(scope="module")
def inputs(tahoe_dir, tmp_path_factory):
    return load_tahoe_inputs(tiny_config(tahoe_dir, tmp_path_factory.mktemp("o")))


def _settings(block_size=16, **kw):
    base = dict(batch_size=10, fetch_factor=4, num_workers=0, read_rows=40, buffer_rows=40,
                block_size=block_size, min_count_baseline=1000, seed=7)
    return LoaderSettings(**(base | kw))


def _epoch(collection, strategy, epoch, rank=0, world=1, workers=2):
    ds = make_dataset(collection, strategy, batch_size=10, fetch_factor=4, seed=7,
                      rank=rank, world_size=world)
    ds.set_epoch(epoch)
    return list(make_loader(ds, workers))


def test_registry_builds_the_seed_strategies(inputs):
    cfg = load_tahoe_config("default")
    built = {name: strategy.sampling(inputs.train, _settings(cfg.strategies[name].block_size))
             for name, strategy in STRATEGIES.items() if strategy.kind == "scdataset"}
    assert len(built) == 6
    assert isinstance(built["streaming"], Streaming) and not built["streaming"].shuffle
    assert built["streaming_buffer"].shuffle
    assert isinstance(built["block_shuffling"], BlockShuffling)
    assert built["block_shuffling"].block_size == 16 and built["random"].block_size == 1
    for name in ("weighted_block", "weighted_true"):
        s = built[name]
        assert isinstance(s, BlockWeightedSampling) and s.replace
        assert s.total_size == len(inputs.train) and len(s.cdf) == len(inputs.train)
    assert built["weighted_block"].block_size == 16 and built["weighted_true"].block_size == 1
    with pytest.raises(RaycellError, match="unknown strategy 'bogus'"):
        get_strategy("bogus")


def test_the_registry_says_which_strategies_read_blocks():
    assert {n for n, strategy in STRATEGIES.items() if strategy.blocked} == {
        "block_shuffling", "weighted_block", "ray_block_shuffle"}
    assert {strategy.kind for strategy in STRATEGIES.values()} == {"scdataset", "ray_data"}


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("strategy", [BlockShuffling(block_size=4), BlockShuffling(block_size=1),
                                      Streaming(shuffle=True)])
def test_order_changes_every_epoch_with_several_workers_and_ranks(strategy, world):
    collection = np.arange(N)

    def whole_epoch(e):  # every rank's batches, each rank with two DataLoader workers
        return [np.concatenate(_epoch(collection, strategy, e, r, world)) for r in range(world)]

    epochs = [whole_epoch(e) for e in range(3)]
    for ranks in epochs:
        np.testing.assert_array_equal(np.sort(np.concatenate(ranks)), collection)  # once each
    for rank in range(world):
        assert not np.array_equal(epochs[0][rank], epochs[1][rank])
        assert not np.array_equal(epochs[1][rank], epochs[2][rank])
        # Same seed and epoch: the same order (reproducible runs).
        np.testing.assert_array_equal(epochs[1][rank], whole_epoch(1)[rank])


def test_streaming_is_in_order():
    got = np.concatenate(_epoch(np.arange(N), Streaming(shuffle=False), 0, workers=0))
    np.testing.assert_array_equal(got, np.arange(N))


@pytest.mark.parametrize("strategy", [BlockShuffling(block_size=4), BlockShuffling(block_size=1),
                                      Streaming(shuffle=False)])
def test_ranks_read_disjoint_fetches_that_cover_the_data(strategy):
    collection = np.arange(N)
    per_rank = [np.concatenate(_epoch(collection, strategy, 2, rank=r, world=2)) for r in (0, 1)]
    assert not set(per_rank[0]) & set(per_rank[1])
    np.testing.assert_array_equal(np.sort(np.concatenate(per_rank)), collection)


def test_ddp_ranks_step_the_same_number_of_batches():
    # 2000 cells in fetches of 40 -> 50 fetches: with 3 ranks one rank gets fewer.
    ds = make_dataset(np.arange(N), BlockShuffling(block_size=4), 10, 4, seed=0,
                      rank=1, world_size=3)
    counts = []
    for r in range(3):
        ds.rank = r
        counts.append(len(ds))
    ds.rank = 1
    assert len(set(counts)) > 1
    assert batches_per_rank(ds) == min(counts) and ds.rank == 1


def test_tahoe_batches_stay_sparse_and_epochs_differ(inputs):
    block_shuffling = STRATEGIES["block_shuffling"]
    epochs = block_shuffling.epochs(inputs.train, inputs.labels, _settings(num_workers=2))
    batch, other = (next(iter(epochs(e))) for e in range(2))
    assert sp.issparse(batch.x) and batch.x.format == "csr"
    assert batch.labels.shape == (10, 4)
    assert (batch.x != other.x).nnz > 0


@pytest.mark.parametrize("name", ["block_shuffling", "weighted_true", "streaming_buffer"])
def test_an_epoch_is_the_same_whenever_it_is_read(inputs, name):
    """What exact resume rests on: epoch e's batches depend on (seed, e, rank) only."""
    strategy = STRATEGIES[name]
    fresh = strategy.epochs(inputs.train, inputs.labels, _settings())
    used = strategy.epochs(inputs.train, inputs.labels, _settings())
    list(used(0)), list(used(1))  # an uninterrupted run has read epochs 0 and 1 before
    for a, b in zip(fresh(2), used(2), strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)


def test_ranks_of_a_strategy_step_the_same_number_of_batches(inputs):
    strategy = STRATEGIES["block_shuffling"]
    counts = [len(list(strategy.epochs(inputs.train, inputs.labels,
                                  _settings(rank=r, world=3))(0))) for r in range(3)]
    assert len(set(counts)) == 1 and counts[0] > 0
