"""The fetch readahead: byte ranges that really hold the elements, in every HDF5 layout,
and hints that bring those pages into the page cache."""

import os
import time
import zlib

import h5py
import numpy as np
import pytest

from raycell.core import page_cache
from raycell.tahoe.data.readahead import ByteRanges, hint
from tests.tahoe.bench.test_loaders import on_tmpfs

VALUES = np.arange(100_003, dtype=np.float32) * 0.5


def _file(tmp_path, **layout) -> str:
    path = str(tmp_path / "x.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=VALUES, **layout)
    return path


def _raw(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


@pytest.mark.parametrize("layout", [{}, {"chunks": (4096,)}], ids=["contiguous", "chunked"])
@pytest.mark.parametrize("lo,hi", [(0, 1), (5000, 5001), (4095, 4097), (70_000, 100_003)])
def test_ranges_hold_the_elements_bytes(tmp_path, layout, lo, hi):
    path = _file(tmp_path, **layout)
    with h5py.File(path) as f:
        (offset, length), = ByteRanges(f["x"]).of(lo, hi)  # laid out in order: one run
    raw = np.frombuffer(_raw(path, offset, length), np.float32)
    # The range starts at the element's chunk (or the element itself) and covers hi.
    start = lo if not layout else lo - lo % 4096
    np.testing.assert_array_equal(raw[: hi - start][lo - start :], VALUES[lo:hi])


def test_compressed_chunks_come_from_hdf5s_chunk_index(tmp_path):
    path = _file(tmp_path, chunks=(4096,), compression="gzip")
    with h5py.File(path) as f:
        layout = ByteRanges(f["x"])
        assert layout.base is None  # sizes differ: no arithmetic layout
        ranges = layout.of(8000, 12_300)  # chunks 1, 2 and 3
    assert len(ranges) == 3
    for k, (offset, length) in zip((1, 2, 3), ranges, strict=True):
        chunk = np.frombuffer(zlib.decompress(_raw(path, offset, length)), np.float32)
        np.testing.assert_array_equal(chunk, VALUES[k * 4096 : (k + 1) * 4096])
    assert layout.of(10, 10) == []


def test_a_hint_brings_the_ranges_into_the_page_cache(tmp_path):
    if on_tmpfs(tmp_path):
        pytest.skip("tmpfs keeps files in memory: nothing to evict or read ahead")
    big = np.random.default_rng(0).random(4_000_000).astype(np.float32)  # 16 MB
    path = str(tmp_path / "big.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=big, chunks=(16_384,))
    page_cache.evict([path])
    assert page_cache.resident_fraction([path]) < 0.05
    with h5py.File(path) as f:
        layout = ByteRanges(f["x"])
    fd = os.open(path, os.O_RDONLY)
    try:
        # The second half, asked for in pieces that touch: merged and queued.
        hint(fd, [r for lo in range(2_000_000, 4_000_000, 100_000)
                  for r in layout.of(lo, lo + 100_000)])
    finally:
        os.close(fd)
    deadline = time.monotonic() + 5  # the hint queues reads; they land soon after
    while page_cache.resident_fraction([path]) < 0.4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 0.4 < page_cache.resident_fraction([path]) < 0.9  # the half asked for, not all
