"""Eviction and residency of files in the page cache, read back with mincore."""

import os
import threading
import time

import pytest

from raycell.core.page_cache import evict, evict_settled, resident_fraction, warm
from tests.tahoe.bench.test_loaders import on_tmpfs


def test_a_file_is_evicted_then_warmed(tmp_path):
    if on_tmpfs(tmp_path):
        pytest.skip("tmpfs keeps files in memory: nothing to evict")
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(32 << 20))  # just written: dirty pages, evict must flush
    warm([path])
    assert resident_fraction([path]) > 0.95
    evict([path])
    assert resident_fraction([path]) < 0.05
    with open(path, "rb") as f:  # reading the first half brings back part (and readahead)
        f.read(16 << 20)
    assert 0.4 < resident_fraction([path]) < 0.95


def test_an_empty_file_counts_as_nothing(tmp_path):
    (tmp_path / "empty").touch()
    assert resident_fraction([tmp_path / "empty"]) == 0.0


def test_eviction_waits_out_a_reader_that_brings_pages_back(tmp_path):
    if on_tmpfs(tmp_path):
        pytest.skip("tmpfs keeps files in memory: nothing to evict")
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(8 << 20))
    warm([path])
    until = time.monotonic() + 0.6

    def straggler():  # a previous reader still finishing: warms the file again and again
        while time.monotonic() < until:
            warm([path])

    reader = threading.Thread(target=straggler)
    reader.start()
    time.sleep(0.05)
    try:
        assert evict_settled([path]) < 0.01
        assert time.monotonic() >= until - 0.3  # it waited for the reader, not just once
    finally:
        reader.join()
