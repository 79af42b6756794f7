"""The OS page cache of data files: evict them for cold reads, warm them, measure it.

Real Tahoe (314 GB) is read from storage, so a loader benchmark over files left in
the page cache measures CPU work only (docs/facts.md). ``posix_fadvise(DONTNEED)`` drops
a file's clean cached pages without root; ``mincore`` says how much of it is still
cached, so a benchmark can check that the eviction took (tmpfs, for one, ignores it).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from collections.abc import Iterable
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_PAGE = mmap.PAGESIZE


def evict(paths: Iterable[str | Path]) -> None:
    """Drop every page of ``paths`` from the page cache (dirty pages are written first)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # DONTNEED leaves dirty pages behind
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def evict_settled(paths: list[str | Path], below: float = 0.01, pause_s: float = 0.1,
                  wait_s: float = 10.0) -> float:
    """Evict ``paths`` until under ``below`` of their pages stay out; the share cached.

    A reader still finishing (a previous strategy's Ray Data tasks run on after its
    iterator closes) brings pages back just after an eviction, so each eviction is
    checked ``pause_s`` later, and repeated until none came back or ``wait_s`` passed.
    """
    deadline = time.monotonic() + wait_s
    while True:
        evict(paths)
        time.sleep(pause_s)
        resident = resident_fraction(paths)
        if resident < below or time.monotonic() > deadline:
            return resident


def warm(paths: Iterable[str | Path], chunk: int = 64 << 20) -> None:
    """Read every byte of ``paths`` once, so reads that follow hit the page cache."""
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(chunk):
                pass


def resident_fraction(paths: Iterable[str | Path]) -> float:
    """Share of the files' pages now in the page cache (0 for empty files)."""
    resident = total = 0
    for path in paths:
        size = os.path.getsize(path)
        if size == 0:
            continue
        pages = -(-size // _PAGE)
        with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mm:
            # ACCESS_COPY maps privately and writably, which ctypes needs for an address;
            # nothing is written, so no page is touched or copied.
            address = ctypes.addressof(ctypes.c_char.from_buffer(mm))
            vec = (ctypes.c_ubyte * pages)()
            if _libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore failed on {path}")
            resident += sum(b & 1 for b in bytes(vec))
        total += pages
    return resident / total if total else 0.0
