"""The registry of loading strategies: one name -> how its batches are made.

The CLI, configs, Tune grids and reports all use these names. Each scDataset arm
is a scdataset strategy class; the test loader always streams in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scdataset import BlockShuffling, BlockWeightedSampling, SamplingStrategy, Streaming, scDataset
from torch.utils.data import DataLoader

from raycell.core.errors import RaycellError
from raycell.tahoe.config import SCDATASET_STRATEGIES
from raycell.tahoe.sparse import TahoeRows
from raycell.tahoe.weights import group_weights


@dataclass(frozen=True)
class StrategyInputs:
    block_size: int
    n_cells: int
    weights: Callable[[], np.ndarray]  # computed only by the weighted arms


_BUILDERS: dict[str, Callable[[StrategyInputs], SamplingStrategy]] = {
    "streaming": lambda s: Streaming(shuffle=False),
    "streaming_buffer": lambda s: Streaming(shuffle=True),
    "block_shuffling": lambda s: BlockShuffling(block_size=s.block_size),
    "random": lambda s: BlockShuffling(block_size=s.block_size),
    "weighted_block": lambda s: BlockWeightedSampling(
        block_size=s.block_size, weights=s.weights(), replace=True, total_size=s.n_cells
    ),
    "weighted_true": lambda s: BlockWeightedSampling(
        block_size=s.block_size, weights=s.weights(), replace=True, total_size=s.n_cells
    ),
}
assert tuple(_BUILDERS) == SCDATASET_STRATEGIES


def build_strategy(
    name: str, rows: TahoeRows, block_size: int, min_count_baseline: int
) -> SamplingStrategy:
    if name not in _BUILDERS:
        raise RaycellError(
            f"unknown scDataset strategy {name!r} (known: {', '.join(SCDATASET_STRATEGIES)})"
        )
    inputs = StrategyInputs(
        block_size=block_size,
        n_cells=len(rows),
        weights=lambda: group_weights(rows.split.codes, min_count_baseline),
    )
    return _BUILDERS[name](inputs)


class EpochDataset(scDataset):
    """scDataset whose epoch is set explicitly before each pass.

    scDataset counts epochs inside the dataset object. Non-persistent DataLoader
    workers receive a fresh copy each epoch, so their counter never advances and
    every epoch would repeat the first epoch's order (FACTS.md). ``set_epoch``
    fixes the seed each epoch in the parent, and every worker copy inherits it.
    """

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch


def make_dataset(
    rows: TahoeRows | np.ndarray,
    strategy: SamplingStrategy,
    batch_size: int,
    fetch_factor: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> EpochDataset:
    return EpochDataset(
        rows,
        strategy,
        batch_size=batch_size,
        fetch_factor=fetch_factor,
        rank=rank,
        world_size=world_size,
        seed=seed,
    )


def make_loader(dataset: EpochDataset, num_workers: int) -> DataLoader:
    """Batches are made by the dataset (batch_size=None); workers only read and slice."""
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_identity,
        prefetch_factor=2 if num_workers else None,
        persistent_workers=False,
    )


def _identity(batch):
    return batch


def batches_per_rank(dataset: EpochDataset) -> int:
    """Fewest batches any rank gets: DDP ranks must step the same number of times."""
    own = (dataset.rank, dataset.world_size)
    counts = []
    for rank in range(dataset.world_size):
        dataset.rank = rank
        counts.append(len(dataset))
    dataset.rank, dataset.world_size = own
    return min(counts)

