"""``raycell bench train``: training cells/s of the Tahoe model, dense input against sparse.

The real model (``MultiTaskLinear`` with Tahoe's 50 / 380 / 4 / 27 classes) and the
optimizer every Tahoe run uses (fused Adam, lr 1e-3) train on Tahoe-shaped CSR
batches: counts drawn as the generator draws them, ~1.4k non-zeros a cell. One
step is timed in stages (on a GPU each stage ends with a synchronize):

- to_device: the host CSR batch to the model's device (sparse input: ``CsrRows``
  with its transpose; dense input on a CPU: nothing, the batch is already there);
- densify: the dense (batch x genes) tensor (dense input only; on a GPU this stage
  includes moving the CSR arrays, as ``SparseBatch.dense_on`` does both);
- forward (logits and loss), backward, optimizer (Adam's step and zero_grad).

Inputs alternate round by round from the same initial weights, and the best round
of each counts, so the ratio is measured side by side.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from raycell.core.config import require_device
from raycell.core.rows import write_table
from raycell.tahoe.config import TrainBenchSettings
from raycell.tahoe.data.sparse import SparseBatch
from raycell.tahoe.data.synthetic import count_rows
from raycell.tahoe.model.multitask import MultiTaskLinear

INPUTS = ("dense", "sparse")
TAHOE_CLASSES = {"cell_line": 50, "drug": 380, "moa_broad": 4, "moa_fine": 27}  # docs/facts.md
STAGES = ("to_device", "densify", "forward", "backward", "optimizer")
POOL = 16  # distinct batches, cycled: drawing them is not part of a step


def shaped_batches(genes: int, batch_size: int, nnz_per_cell: int, seed: int
                   ) -> list[SparseBatch]:
    rng = np.random.default_rng(seed)
    x = count_rows(genes, nnz_per_cell, POOL * batch_size, seed)
    labels = np.stack([rng.integers(0, n, x.shape[0]) for n in TAHOE_CLASSES.values()], 1)
    return [SparseBatch(x[i : i + batch_size], labels[i : i + batch_size],
                        np.arange(i, i + batch_size))
            for i in range(0, x.shape[0], batch_size)]


def _train(batches: list[SparseBatch], sparse: bool, device: torch.device, seconds: float,
           warmup_steps: int = 3) -> dict[str, float]:
    torch.manual_seed(0)
    model = MultiTaskLinear(batches[0].x.shape[1], TAHOE_CLASSES).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    spent = dict.fromkeys(STAGES, 0.0)
    steps, cells, clock = 0, 0, 0.0

    def step(batch: SparseBatch, timed: bool) -> None:
        marks = [time.perf_counter()]

        def mark() -> None:
            sync()
            marks.append(time.perf_counter())

        if sparse:
            x, y = batch.csr_on(device, log1p=False)
            mark()
            mark()  # nothing to densify
        else:
            mark()  # the host batch is the input: to_device happens inside densify
            x, y = batch.dense_on(device, log1p=False)
            mark()
        loss = model.loss(model(x), y)
        mark()
        loss.backward()
        mark()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        mark()
        if timed:
            for stage, seconds_spent in zip(STAGES, np.diff(marks), strict=True):
                spent[stage] += seconds_spent

    for i in range(warmup_steps):
        step(batches[i % len(batches)], timed=False)
    while clock < seconds:
        started = time.perf_counter()
        batch = batches[steps % len(batches)]
        step(batch, timed=True)
        clock += time.perf_counter() - started
        steps += 1
        cells += len(batch)
    return {"steps": steps, "seconds": clock, "cells_per_s": cells / clock,
            "ms_per_step": 1000 * clock / steps,
            **{f"{stage}_ms": 1000 * spent[stage] / steps for stage in STAGES}}


def run_train_bench(genes: int, batch_size: int, nnz_per_cell: int, device: str,
                    seconds: float, rounds: int, out: Path) -> pd.DataFrame:
    dev = torch.device(device)
    batches = shaped_batches(genes, batch_size, nnz_per_cell, seed=0)
    nnz = float(np.mean([b.x.nnz / len(b) for b in batches]))
    print(f"bench train: {genes:,} genes, batch {batch_size}, {nnz:,.0f} non-zeros a cell, "
          f"{sum(TAHOE_CLASSES.values())} classes, fused Adam, {device}, "
          f"{torch.get_num_threads()} threads", flush=True)
    rows = []
    for round_ in range(1, rounds + 1):
        for name in INPUTS:
            result = _train(batches, name == "sparse", dev, seconds)
            rows.append({"input": name, "round": round_, **result, "genes": genes,
                         "batch_size": batch_size, "nnz_per_cell": round(nnz, 1),
                         "device": device, "threads": torch.get_num_threads()})
            stages = "  ".join(f"{s} {result[f'{s}_ms']:.1f}" for s in STAGES)
            print(f"  round {round_} {name:<6} {result['cells_per_s']:9,.0f} cells/s "
                  f"({result['ms_per_step']:.1f} ms a step: {stages} ms)", flush=True)
    frame = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "train.csv", frame)
    return frame


def bench_train(settings: TrainBenchSettings | None = None) -> pd.DataFrame:
    """Tahoe training cells/s of one step of the 4-task model, dense input against sparse.

    Parameters
    ----------
    settings : TrainBenchSettings, optional
        What ``raycell bench train`` takes as flags.

    Returns
    -------
    pandas.DataFrame
        One row per (input, round), with each stage's milliseconds, as written to
        ``<out>/train.csv``.
    """
    s = settings or TrainBenchSettings()
    require_device(s.device)
    return run_train_bench(s.genes, s.batch_size, s.nnz_per_cell, s.device, s.seconds,
                           s.rounds, Path(s.out).expanduser().resolve())


def sparse_speedup(frame: pd.DataFrame) -> float:
    """Best round of sparse input's cells/s over the best round of dense input's."""
    best = frame.groupby("input")["cells_per_s"].max()
    return float(best["sparse"] / best["dense"])
