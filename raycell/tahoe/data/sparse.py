"""CSR row runs straight from h5py: the fast path from plate files to sparse batches.

A fetch is a sorted array of global row ids. For each plate it touches, runs of
consecutive rows are read as one slice of ``X/data`` and ``X/indices`` each, using
row pointers kept in memory (8 bytes a cell, read once, shared with forked
DataLoader workers). Rows stay CSR; they become dense only on the training device.
This avoids AnnCollection.to_adata, which docs/facts.md measured at about 6x slower.

torch is imported only where a batch meets its device: Ray Data read tasks unpickle
this module in fresh worker processes, and torch would add ~2 s of CPU to each.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import h5py
import numpy as np
import scipy.sparse as sp

from raycell.core.errors import BadData
from raycell.tahoe.data.labels import LabelSpace
from raycell.tahoe.data.plates import TahoeSplit
from raycell.tahoe.data.readahead import ByteRanges, hint

if TYPE_CHECKING:
    import torch

    from raycell.tahoe.model.sparse_linear import CsrRows


@dataclass
class SparseBatch:
    """Rows as CSR, their (n, 4) task labels and their row ids in the split."""

    x: sp.csr_array
    labels: np.ndarray
    rows: np.ndarray  # int64 position of each row in its split (for diversity, debugging)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, rows: np.ndarray) -> SparseBatch:
        """Rows by position: how scDataset cuts batches out of a fetch."""
        return SparseBatch(self.x[rows], self.labels[rows], self.rows[rows])

    def on(self, device: torch.device, log1p: bool, sparse: bool
           ) -> tuple[torch.Tensor | CsrRows, torch.Tensor]:
        """The model's input on ``device`` (CsrRows if ``sparse``, else dense) and labels."""
        return self.csr_on(device, log1p) if sparse else self.dense_on(device, log1p)

    def _values(self, log1p: bool) -> sp.csr_array:
        x = self.x
        # Arrow-backed batches (Ray Data strategies) are read-only: torch wants writable memory.
        data = np.log1p(x.data) if log1p else np.require(x.data, requirements="W")  # 0 stays 0
        return sp.csr_array((data, x.indices, x.indptr), shape=x.shape)

    def csr_on(self, device: torch.device, log1p: bool) -> tuple[CsrRows, torch.Tensor]:
        """The rows as CsrRows on ``device``: ~11 KB a Tahoe cell instead of 251 KB dense."""
        import torch

        from raycell.tahoe.model.sparse_linear import CsrRows

        labels = torch.from_numpy(self.labels).to(device, non_blocking=True)
        return CsrRows.from_scipy(self._values(log1p), device), labels

    def dense_on(self, device: torch.device, log1p: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Make the rows dense on ``device``, as late as possible.

        A dense Tahoe row is 251 KB, a CSR one about 11 KB. On a GPU the CSR arrays
        move and a scatter fills a zeroed tensor there; on the CPU scipy's C kernel
        fills it directly, a little faster (docs/benchmarks.md: 1.34 vs 1.61 ms a batch).
        """
        import torch

        labels = torch.from_numpy(self.labels).to(device, non_blocking=True)
        fill = dense_by_scipy if device.type == "cpu" else dense_by_scatter
        return fill(self._values(log1p), device), labels


def dense_by_scipy(x: sp.csr_array, device: torch.device) -> torch.Tensor:
    import torch

    return torch.from_numpy(x.toarray()).to(device)


def dense_by_scatter(x: sp.csr_array, device: torch.device) -> torch.Tensor:
    """Move the CSR arrays to ``device`` and scatter them into a zeroed tensor there."""
    import torch

    values = torch.from_numpy(x.data).to(device, non_blocking=True)
    columns = torch.from_numpy(x.indices.astype(np.int64)).to(device, non_blocking=True)
    lengths = torch.from_numpy(np.diff(x.indptr)).to(device, non_blocking=True)
    rows = torch.repeat_interleave(torch.arange(x.shape[0], device=device), lengths)
    dense = torch.zeros(x.shape, dtype=torch.float32, device=device)
    dense[rows, columns] = values
    return dense


def runs(sorted_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop (exclusive) of each run of consecutive ids in a sorted unique array."""
    if sorted_rows.size == 0:
        return sorted_rows, sorted_rows
    breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
    starts = sorted_rows[np.r_[0, breaks]]
    stops = sorted_rows[np.r_[breaks - 1, sorted_rows.size - 1]] + 1
    return starts, stops


def split_rows(split: TahoeSplit, labels: LabelSpace) -> TahoeRows:
    """The row reader of a split: TahoeRows over h5ad plates, ParquetRows over shards."""
    if split.parquet:
        from raycell.tahoe.data.hf_rows import ParquetRows

        return ParquetRows(split, labels)
    return TahoeRows(split, labels)


class TahoeRows:
    """Row-addressable view of a Tahoe split for scDataset: ``rows[sorted_ids]`` -> SparseBatch.

    Picklable: h5py handles are opened lazily in whichever process reads.
    """

    def __init__(self, split: TahoeSplit, labels: LabelSpace):
        self.split = split
        self.labels = labels
        self.offsets = np.cumsum([0] + [p.n_rows for p in split.plates])
        self.n_vars = split.n_vars
        self._datasets: dict[str, _PlateFile] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_datasets": {}}

    def _open(self, plate: int) -> _PlateFile:
        """A plate's file, opened once per process."""
        path = self.split.plates[plate].path
        if path not in self._datasets:
            self._datasets[path] = _PlateFile(path)
        return self._datasets[path]

    def __getitem__(self, rows: np.ndarray) -> SparseBatch:
        rows = np.asarray(rows)
        # Weighted sampling draws with replacement: read each row once, then repeat.
        unique, inverse = np.unique(rows, return_inverse=True)
        plate_of = np.searchsorted(self.offsets, unique, side="right") - 1
        indptr_parts, index_parts, data_parts = [np.zeros(1, np.int64)], [], []
        nnz = 0
        for plate in np.unique(plate_of):
            local = unique[plate_of == plate] - self.offsets[plate]
            ptr = self.split.plates[plate].indptr
            file = self._open(int(plate))
            starts, stops = runs(local)
            bounds = [(int(ptr[start]), int(ptr[stop])) for start, stop in zip(starts, stops,
                                                                                  strict=True)]
            if len(bounds) > 1:  # one long run: the kernel's own readahead streams it
                file.readahead(bounds)
            for (start, stop), (lo, hi) in zip(zip(starts, stops, strict=True), bounds,
                                               strict=True):
                data_parts.append(file.data[lo:hi])
                index_parts.append(file.indices[lo:hi])
                indptr_parts.append(ptr[start + 1 : stop + 1] - lo + nnz)
                nnz += hi - lo
        empty = [np.zeros(0, np.float32)]
        x = sp.csr_array(
            (
                np.concatenate(data_parts or empty).astype(np.float32, copy=False),
                np.concatenate(index_parts or empty).astype(np.int32, copy=False),
                np.concatenate(indptr_parts),
            ),
            shape=(unique.size, self.n_vars),
        )
        self._check_counts(x, unique, plate_of)
        labels = self.labels.expand(self.split.codes[unique])
        batch = SparseBatch(x, labels, unique)
        return batch if unique.size == rows.size else batch[inverse.ravel()]

    def _check_counts(self, x: sp.csr_array, unique: np.ndarray, plate_of: np.ndarray) -> None:
        """Counts must be finite and non-negative. Checked per fetch, on values read anyway
        (a min and a max: NaN fails ``>= 0``), since a pass over 100M cells before training
        would cost as much as an epoch's reading."""
        values = x.data
        if values.size == 0 or (values.min() >= 0 and np.isfinite(values.max())):
            return
        first = int(np.flatnonzero(~((values >= 0) & np.isfinite(values)))[0])
        row = int(np.searchsorted(x.indptr, first, side="right")) - 1
        plate = int(plate_of[row])
        local = int(unique[row] - self.offsets[plate])
        raise BadData(f"{self.split.plates[plate].path} row {local}: count {values[first]} in "
                      f"X/data (counts must be finite and non-negative)")


class _PlateFile:
    """A plate's X/data and X/indices, and the byte ranges to ask the kernel for."""

    def __init__(self, path: str):
        x = h5py.File(path, "r")["X"]
        self.data, self.indices = x["data"], x["indices"]
        self.layout = (ByteRanges(self.data), ByteRanges(self.indices))
        self.fd = os.open(path, os.O_RDONLY)  # for the hints only; h5py reads on its own
        weakref.finalize(self, os.close, self.fd)

    def readahead(self, bounds: list[tuple[int, int]]) -> None:
        """Queue every run's bytes of both datasets at once (raycell/tahoe/data/readahead.py)."""
        hint(self.fd, [r for lo, hi in bounds for layout in self.layout for r in layout.of(lo, hi)])
