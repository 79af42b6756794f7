"""Ask the kernel for a whole fetch's bytes before h5py reads them one run at a time.

h5py reads a fetch's row runs one after another, a few chunk-sized reads each. From
cold storage every read waits for the disk in turn, one request in flight.
``posix_fadvise(WILLNEED)`` over every run's bytes first queues them all at once, so
the storage serves them side by side and h5py's reads find them in the page cache.
It is a hint: a wrong byte range costs speed, never a wrong row. Pages already
cached cost one cheap call.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

_PROBES = 5  # chunks checked to confirm the file lays chunks out one after another


class ByteRanges:
    """Where elements ``[lo, hi)`` of one 1-D h5py dataset lie in its file.

    A layout is ``units`` of ``unit`` elements: chunks, or single elements for a
    contiguous dataset. Either they follow each other from ``base`` (no table), or
    HDF5's chunk index gives each one's start and size.
    """

    def __init__(self, dataset: h5py.Dataset):
        dsid, item = dataset.id, dataset.dtype.itemsize
        self.base: int | None = None  # None: use the table
        self.starts = self.sizes = np.zeros(0, np.int64)
        if dataset.chunks is None:
            self.unit, self.unit_bytes, self.base = 1, item, dsid.get_offset()
            return
        self.unit = dataset.chunks[0]
        self.unit_bytes = self.unit * item
        n_chunks = dsid.get_num_chunks()
        # anndata writes X/data and X/indices front to back without compression, so
        # chunk k starts at base + k * chunk bytes: checked on a few chunks, no table.
        probes = np.unique(np.linspace(0, n_chunks - 1, _PROBES).astype(int)) if n_chunks else []
        infos = [dsid.get_chunk_info(int(k)) for k in probes]
        if len(infos) and all(
                i.size == self.unit_bytes and i.chunk_offset[0] == k * self.unit
                and i.byte_offset == infos[0].byte_offset + k * self.unit_bytes
                for k, i in zip(probes, infos, strict=True)):
            self.base = infos[0].byte_offset
            return
        # Compressed or scattered chunks: one pass over HDF5's chunk index.
        self.starts = np.zeros(n_chunks, np.int64)
        self.sizes = np.zeros(n_chunks, np.int64)

        def record(info) -> None:
            k = info.chunk_offset[0] // self.unit
            self.starts[k], self.sizes[k] = info.byte_offset, info.size

        dsid.chunk_iter(record)

    def of(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """(offset, length) ranges of the file holding elements ``[lo, hi)``."""
        if hi <= lo:
            return []
        first, last = lo // self.unit, (hi - 1) // self.unit
        if self.base is not None:
            return [(self.base + first * self.unit_bytes, (last - first + 1) * self.unit_bytes)]
        return list(zip(self.starts[first:last + 1].tolist(), self.sizes[first:last + 1].tolist(),
                        strict=True))


def hint(fd: int, ranges: list[tuple[int, int]]) -> None:
    """Queue the byte ranges for reading (posix_fadvise WILLNEED), adjacent ones merged."""
    merged: list[list[int]] = []
    for offset, length in sorted(ranges):
        if merged and offset <= merged[-1][0] + merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], offset + length - merged[-1][0])
        else:
            merged.append([offset, length])
    for offset, length in merged:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
