"""The six strategies: per-epoch reshuffling with DataLoader workers, disjoint DDP ranks."""

import numpy as np
import pytest
import scipy.sparse as sp
from scdataset import BlockShuffling, BlockWeightedSampling, Streaming

from raycell.core.errors import RaycellError
from raycell.tahoe.config import SCDATASET_STRATEGIES, load_tahoe_config
from raycell.tahoe.inputs import load_tahoe_inputs
from raycell.tahoe.sparse import TahoeRows
from raycell.tahoe.strategies import batches_per_rank, build_strategy, make_dataset, make_loader
from tests.conftest import tiny_config

N = 2000


@pytest.fixture(scope="module")
def rows(tahoe_dir, tmp_path_factory):
    inputs = load_tahoe_inputs(tiny_config(tahoe_dir, tmp_path_factory.mktemp("o")))
    return TahoeRows(inputs.train, inputs.labels)


def _epoch(collection, strategy, epoch, rank=0, world=1, workers=2):
    ds = make_dataset(collection, strategy, batch_size=10, fetch_factor=4, seed=7,
                      rank=rank, world_size=world)
    ds.set_epoch(epoch)
    return list(make_loader(ds, workers))


def test_registry_builds_the_seed_strategies(rows):
    cfg = load_tahoe_config("default")
    built = {
        name: build_strategy(name, rows, cfg.strategies[name].block_size, 1000)
        for name in SCDATASET_STRATEGIES
    }
    assert isinstance(built["streaming"], Streaming) and not built["streaming"].shuffle
    assert built["streaming_buffer"].shuffle
    assert isinstance(built["block_shuffling"], BlockShuffling)
    assert built["block_shuffling"].block_size == 16 and built["random"].block_size == 1
    for name in ("weighted_block", "weighted_true"):
        s = built[name]
        assert isinstance(s, BlockWeightedSampling) and s.replace
        assert s.total_size == len(rows) and len(s.weights) == len(rows)
    assert built["weighted_block"].block_size == 16 and built["weighted_true"].block_size == 1
    with pytest.raises(RaycellError, match="unknown scDataset strategy 'bogus'"):
        build_strategy("bogus", rows, 1, 0)


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


def test_tahoe_batches_stay_sparse_and_epochs_differ(rows):
    strategy = build_strategy("block_shuffling", rows, 16, 1000)
    batch, other = (_epoch(rows, strategy, e, workers=2)[0] for e in range(2))
    assert sp.issparse(batch.x) and batch.x.format == "csr"
    assert batch.labels.shape == (10, 4)
    assert (batch.x != other.x).nnz > 0
