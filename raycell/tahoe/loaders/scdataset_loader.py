"""The scDataset strategies' plumbing: one rank's scDataset and DataLoader, epoch by epoch.

The strategies themselves (which scdataset strategy each name means) are in
``raycell/tahoe/loaders/strategies.py``; the test loader of every strategy streams in order through
the same plumbing.
"""

from __future__ import annotations

import numpy as np
from scdataset import SamplingStrategy, scDataset
from torch.utils.data import DataLoader

from raycell.tahoe.data.labels import LabelSpace
from raycell.tahoe.data.plates import TahoeSplit
from raycell.tahoe.data.sparse import TahoeRows, split_rows


class EpochDataset(scDataset):
    """scDataset whose epoch is set explicitly before each pass.

    scDataset counts epochs inside the dataset object. Non-persistent DataLoader
    workers receive a fresh copy each epoch, so their counter never advances and
    every epoch would repeat the first epoch's order (docs/facts.md). ``set_epoch``
    fixes the seed each epoch in the parent, and every worker copy inherits it.

    It also draws the epoch's order there, once: scDataset has every DataLoader
    worker draw the whole order itself (93M indices, ~1.5 GB of memory and a few
    seconds of CPU each on Tahoe's train split), so 8 workers would hold 8 copies.
    Drawn before the workers fork, one copy is shared by all of them.
    """

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        inner = getattr(self.strategy, "inner", self.strategy)
        self.strategy = DrawnOrder(inner, self.collection, self._base_seed + epoch * 1000)


class DrawnOrder:
    """A scdataset strategy with one seed's indices drawn already (for ``EpochDataset``)."""

    def __init__(self, inner: SamplingStrategy, collection, seed: int):
        # scDataset's own seed rule for an epoch: base_seed + epoch * 1000.
        self.inner, self.seed = inner, seed
        self.indices = inner.get_indices(collection, seed=seed)

    def get_indices(self, collection, seed: int | None = None) -> np.ndarray:
        return self.indices if seed == self.seed else self.inner.get_indices(collection, seed=seed)

    def __getattr__(self, name: str):
        if name == "inner":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)  # get_len, _shuffle_before_yield, ...


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



def scdataset_epochs(split: TahoeSplit, labels: LabelSpace, strategy: SamplingStrategy, s):
    """epoch -> this rank's batches: the dataset's seed is fixed per epoch (set_epoch), and
    every rank stops at the fewest batches any rank has, so DDP ranks step together."""
    dataset = make_dataset(split_rows(split, labels), strategy, s.batch_size, s.fetch_factor,
                           s.seed, s.rank, s.world)
    steps = batches_per_rank(dataset)

    def epoch_batches(epoch: int):
        dataset.set_epoch(epoch)
        loader = make_loader(dataset, s.num_workers)
        return (batch for _, batch in zip(range(steps), loader, strict=False))

    return epoch_batches
