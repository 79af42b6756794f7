"""Batches cut from whole Ray Data blocks in CSR: in order, or through a local shuffle buffer.

The Ray Data strategies take each block from Ray Data whole (one Arrow -> CSR view, no
copy) and cut their batches here, in scipy, instead of asking Ray Data for 64-row Arrow
batches and converting each. Measured side by side (docs/benchmarks.md, "Ray Data's
batcher"): 1.7x the cells/s in order on the same blocks, and 1.2-2.4x in the loader
bench's pipeline, where Ray's batching thread competes with the read tasks for 2 cores.

``shuffled`` is Ray Data's ``ShufflingBatcher`` algorithm (Ray 2.60,
``ray/data/_internal/batcher.py``) on CSR rows: rows wait until the buffer holds
``buffer_rows``; a generation is the buffer's rows in a random order, and batches are
consecutive slices of that order; a new generation (new rows, then the left-overs)
starts once half the buffer is spent. Each generation's order comes from one seeded
generator, so the batches follow from (seed, blocks) alone: the same batches as Ray's
batcher gives for the same rows and seed (tests/tahoe/loaders/test_batching.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import scipy.sparse as sp

from raycell.tahoe.data.sparse import SparseBatch

COMPACT_AT = 1.5  # Ray's SHUFFLE_BUFFER_COMPACTION_RATIO: rows that start a generation early
REFILL_AT = 0.5  # Ray's SHUFFLE_BUFFER_COMPACTION_THRESHOLD: a generation's rows left


def concat(batches: list[SparseBatch]) -> SparseBatch:
    if len(batches) == 1:
        return batches[0]
    return SparseBatch(sp.vstack([b.x for b in batches], format="csr"),
                       np.concatenate([b.labels for b in batches]),
                       np.concatenate([b.rows for b in batches]))


def in_order(blocks: Iterable[SparseBatch], batch_size: int) -> Iterator[SparseBatch]:
    """Consecutive ``batch_size`` rows across blocks; the last batch may be short."""
    carry: list[SparseBatch] = []
    held = 0
    for block in blocks:
        start = 0
        if carry:  # finish the batch the last block began
            start = min(batch_size - held, len(block))
            carry.append(block[slice(0, start)])
            held += start
            if held < batch_size:
                continue
            yield concat(carry)
            carry, held = [], 0
        for at in range(start, len(block) - batch_size + 1, batch_size):
            yield block[slice(at, at + batch_size)]
        start += (len(block) - start) // batch_size * batch_size
        if start < len(block):
            carry, held = [block[slice(start, len(block))]], len(block) - start
    if carry:
        yield concat(carry)


def shuffled(blocks: Iterable[SparseBatch], batch_size: int, buffer_rows: int,
             seed: int) -> Iterator[SparseBatch]:
    """Batches through a local shuffle buffer of at least ``buffer_rows`` rows."""
    rng = np.random.default_rng(seed)
    buffer_rows = max(buffer_rows, batch_size)
    refill_at, compact_at = max(1, int(buffer_rows * REFILL_AT)), int(buffer_rows * COMPACT_AT)
    pool, order, head = None, np.zeros(0, np.int64), 0
    pending: list[SparseBatch] = []
    waiting = 0  # rows in pending

    def next_batch() -> SparseBatch:
        nonlocal pool, order, head, pending, waiting
        left = order.size - head
        if waiting and (done or left <= refill_at or left < batch_size):  # a new generation
            rest = [pool[order[head:]]] if left else []
            pool = concat(pending + rest)  # Ray's order: new rows, then the left-overs
            order, head, pending, waiting = rng.permutation(len(pool)), 0, [], 0
        taken = order[head : head + batch_size]
        head += taken.size
        return pool[taken]

    done = False
    for block in blocks:
        if len(block):
            pending.append(block)
            waiting += len(block)
        while True:
            left = order.size - head
            if not (left + waiting >= batch_size
                    and (left >= refill_at or left + waiting - batch_size >= compact_at)):
                break
            yield next_batch()
    done = True
    while order.size - head + waiting > 0:
        yield next_batch()
