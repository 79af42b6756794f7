"""The strategy registry: every way of loading Tahoe training batches, by name.

The config, CLI, grid, worker, bench and report take the names from ``STRATEGIES``.
Every strategy answers one question through one interface: given a split, the loader
settings, a seed and a rank, what are this rank's batches of epoch ``e``? The
answer depends on nothing but those, so a run resumed at epoch ``e`` reads exactly
the batches an uninterrupted run reads there.

- scDataset strategies (the seed's six) sample through scDataset on the rank.
- Ray Data strategies read through Ray Data's streaming executor on the rank
  (``raycell/tahoe/loaders/raydata.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from raycell.core.errors import RaycellError

if TYPE_CHECKING:  # the registry is read by the config and CLI: no data libraries
    import numpy as np
    from scdataset import SamplingStrategy

    from raycell.tahoe.data.labels import LabelSpace
    from raycell.tahoe.data.plates import TahoeSplit
    from raycell.tahoe.data.sparse import SparseBatch

DEFAULT_BLOCK = 16  # the seed's block size for the block strategies


@dataclass(frozen=True)
class LoaderSettings:
    """What a strategy needs to make one rank's batches (from the config or the bench)."""

    batch_size: int
    fetch_factor: int  # scDataset: batches per fetch
    num_workers: int  # scDataset: DataLoader workers
    read_rows: int  # Ray Data: rows per read task
    buffer_rows: int  # Ray Data: local shuffle buffer
    block_size: int
    min_count_baseline: int  # weighted strategies
    seed: int
    rank: int = 0
    world: int = 1
    # Ray Data: custom resources each read task needs (``ray.read_resources``: data nodes)
    read_resources: Mapping[str, float] = field(default_factory=dict)


EpochBatches = Callable[[int], Iterator["SparseBatch"]]  # epoch -> this rank's batches


class Strategy(ABC):
    """One loading strategy. ``blocked``: reads blocks of ``block_size`` consecutive rows;
    the others are block 1 by definition and a config that says otherwise is refused."""

    kind: str

    def __init__(self, name: str, blocked: bool):
        self.name, self.blocked = name, blocked

    @abstractmethod
    def epochs(self, split: TahoeSplit, labels: LabelSpace, s: LoaderSettings) -> EpochBatches:
        """This rank's batches of each epoch; every rank yields the same number (DDP)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ScDatasetStrategy(Strategy):
    kind = "scdataset"

    def __init__(self, name: str, blocked: bool,
                 sampler: Callable[[LoaderSettings, int, Callable[[], np.ndarray]],
                                   SamplingStrategy]):
        super().__init__(name, blocked)
        self.sampler = sampler  # (settings, n_cells, weights) -> a scdataset strategy

    def sampling(self, split: TahoeSplit, s: LoaderSettings) -> SamplingStrategy:
        from raycell.tahoe.loaders.weights import group_weights

        return self.sampler(s, len(split),
                            lambda: group_weights(split.codes, s.min_count_baseline))

    def epochs(self, split: TahoeSplit, labels: LabelSpace, s: LoaderSettings) -> EpochBatches:
        from raycell.tahoe.loaders.scdataset_loader import scdataset_epochs

        return scdataset_epochs(split, labels, self.sampling(split, s), s)


class RayDataStrategy(Strategy):
    kind = "ray_data"

    def __init__(self, name: str, blocked: bool, shuffle_buffer: bool):
        super().__init__(name, blocked)
        self.shuffle_buffer = shuffle_buffer  # a local shuffle buffer before the batches

    def epochs(self, split: TahoeSplit, labels: LabelSpace, s: LoaderSettings) -> EpochBatches:
        from raycell.tahoe.loaders.raydata import ray_data_epochs

        return ray_data_epochs(split, labels, self, s)


def _streaming(shuffle: bool):
    def sampler(s: LoaderSettings, n: int, weights: Callable[[], np.ndarray]):
        from scdataset import Streaming

        return Streaming(shuffle=shuffle)

    return sampler


def _blocks(size: Callable[[LoaderSettings], int]):
    def sampler(s: LoaderSettings, n: int, weights: Callable[[], np.ndarray]):
        from scdataset import BlockShuffling

        return BlockShuffling(block_size=size(s))

    return sampler


def _weighted(s: LoaderSettings, n: int, weights: Callable[[], np.ndarray]) -> SamplingStrategy:
    from raycell.tahoe.loaders.weights import SortedWeightedSampling

    # scdataset's BlockWeightedSampling(replace=True, total_size=n), drawn in seconds at 93M.
    return SortedWeightedSampling(block_size=s.block_size, weights=weights())


STRATEGIES: dict[str, Strategy] = {strategy.name: strategy for strategy in (
    ScDatasetStrategy("streaming", False, _streaming(shuffle=False)),
    ScDatasetStrategy("streaming_buffer", False, _streaming(shuffle=True)),
    ScDatasetStrategy("block_shuffling", True, _blocks(lambda s: s.block_size)),
    ScDatasetStrategy("random", False, _blocks(lambda s: 1)),
    ScDatasetStrategy("weighted_block", True, _weighted),
    ScDatasetStrategy("weighted_true", False, _weighted),
    RayDataStrategy("ray_streaming", False, shuffle_buffer=False),
    RayDataStrategy("ray_buffer", False, shuffle_buffer=True),
    RayDataStrategy("ray_block_shuffle", True, shuffle_buffer=True),
)}
STRATEGY_NAMES = tuple(STRATEGIES)


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise RaycellError(f"unknown strategy {name!r} (known: {', '.join(STRATEGY_NAMES)})")
    return STRATEGIES[name]
