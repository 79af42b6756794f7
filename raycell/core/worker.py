"""One Ray Train worker skeleton for every workload; a workload hands it a ``Plan``.

The skeleton owns what both workloads do alike: the device and DDP ranks, resuming
from ``ray.train.get_checkpoint()``, all-reducing the epoch's sums, one definition
of throughput, rank 0's epoch log and checkpoint, and the report. The plan owns
what differs: how to build the model and data, one epoch, the evaluation, and the
state a checkpoint holds.

A checkpoint is written at every evaluation with the plan's state, the epoch,
the training time so far and the RNG states, so a run restarted by Ray Train
(``max_failures``) or resumed by a rerun of the grid continues at the next epoch
with the numbers an uninterrupted run would have.
"""

from __future__ import annotations

import random
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from raycell.core.layout import EPOCH_LOG, STATE_FILE
from raycell.core.metrics import Progress
from raycell.core.placement import record_placement
from raycell.core.rows import upsert


@dataclass(frozen=True)
class WorkerContext:
    rank: int
    world: int
    device: torch.device
    progress: Progress  # live figures for Prometheus: call ``step`` after every batch

    def ddp(self, model: torch.nn.Module, **ddp_kwargs: Any) -> torch.nn.Module:
        """The model wrapped for data-parallel training (itself on one rank)."""
        kwargs = {"parallel_strategy_kwargs": ddp_kwargs} if ddp_kwargs else {}
        return ray.train.torch.prepare_model(model, **kwargs)


class Plan(ABC):
    """What a workload hands the skeleton. Epochs count from 1."""

    epochs: int
    unit: str  # what is counted: "cells" reports cells_per_s
    workload: str  # "tahoe", "chemoe": tags the live metrics
    strategy: str = ""  # Tahoe's loading strategy (none for CheMoE): tags the live metrics

    @abstractmethod
    def build(self, ctx: WorkerContext) -> None:
        """Model, optimizer and data on ``ctx.device``, as for epoch 1."""

    @abstractmethod
    def train_epoch(self, epoch: int) -> tuple[dict[str, float], int]:
        """Train one epoch on this rank: (sums of per-item values, items). The skeleton
        reports each sum over all ranks divided by all ranks' items: a mean per item."""

    def timings(self) -> dict[str, float]:
        """This rank's timings of the epoch just trained, reported as they are (rank 0's).
        ``startup_seconds``: the part of the epoch before its first step (the loader's
        workers, plan and first read), counted apart from training time."""
        return {}

    def evaluates(self, epoch: int) -> bool:
        return True

    @abstractmethod
    def evaluate(self, epoch: int) -> dict[str, float]:
        """Scores after ``epoch``, called on every rank; rank 0's are reported."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything besides the global RNGs that the next epoch depends on."""

    @abstractmethod
    def load(self, state: dict[str, Any]) -> None: ...

    def finish(self, out: Path) -> dict[str, float]:
        """Rank 0, after the last epoch: files for the final checkpoint, metrics to add."""
        return {}


def all_reduce(values: np.ndarray, op: str = "sum") -> np.ndarray:
    """Sum (or max) an array over the ranks; itself on one rank."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor.numpy()


def _rng_states() -> dict[str, Any]:
    """The global RNGs as tensors and plain types, so a checkpoint loads with
    ``weights_only=True`` (no pickled objects to run)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {"torch": torch.get_rng_state(),
              "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                        "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
              "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def load_state(path: Path, device: torch.device | str = "cpu", mmap: bool = False) -> dict:
    """A checkpoint's state, read with ``weights_only=True``: tensors and plain types only,
    since a checkpoint folder on shared storage must not run code when it is read.
    ``pickle.UnpicklingError`` if it holds anything else."""
    return torch.load(path, map_location=device, weights_only=True, mmap=mmap)


def fit(plan: Plan, run_dir: str | Path, name: str) -> None:
    """Run ``plan`` inside a Ray Train worker, from the last checkpoint if there is one."""
    run_dir = Path(run_dir)
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    worker = WorkerContext(rank, ctx.get_world_size(), ray.train.torch.get_device(),
                           Progress(plan.workload, name, plan.strategy, rank, plan.unit))
    plan.build(worker)
    start, train_seconds = 1, 0.0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            saved = load_state(Path(folder) / STATE_FILE, worker.device)
        plan.load(saved["plan"])
        _set_rng_states(saved["rng"])
        start, train_seconds = saved["epoch"] + 1, saved["train_seconds"]
    resumed_from = start - 1  # told once, with the next report: the driver prints it
    record_placement(run_dir, rank, worker.world, start)

    for epoch in range(start, plan.epochs + 1):
        worker.progress.epoch(epoch)
        started = time.perf_counter()
        sums, items = plan.train_epoch(epoch)
        timings = plan.timings()
        # Training time starts at the first step: a loader's start-up (Ray Data's executor
        # above all) is reported beside it, so strategies compare on training alone.
        elapsed = time.perf_counter() - started - timings.get("startup_seconds", 0.0)
        worker.progress.flush()
        totals = all_reduce(np.array([items, *sums.values()], dtype=np.float64))
        # Throughput of the whole run: every rank's items over the slowest rank's time.
        elapsed = float(all_reduce(np.array([elapsed]), "max")[0])
        train_seconds += elapsed
        items = int(totals[0])
        metrics: dict[str, Any] = {
            "epoch": epoch,
            **{k: float(v) / max(items, 1) for k, v in zip(sums, totals[1:], strict=True)},
            "epoch_seconds": elapsed,
            "train_seconds": train_seconds,
            f"{plan.unit}_per_s": items / elapsed if elapsed > 0 else 0.0,
            f"train_{plan.unit}": items,
            "startup_seconds": 0.0,
            **timings,
        }
        last = epoch == plan.epochs
        if not (last or plan.evaluates(epoch)):
            if worker.rank == 0:
                _log_epoch(run_dir, metrics)
            ray.train.report(metrics | {"resumed_from": resumed_from})
            resumed_from = 0
            continue
        started = time.perf_counter()
        metrics |= plan.evaluate(epoch)
        metrics["eval_seconds"] = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as tmp:
            saved_checkpoint = None
            if worker.rank == 0:
                if last:
                    metrics |= plan.finish(Path(tmp))
                torch.save({"plan": plan.state(), "rng": _rng_states(), "epoch": epoch,
                            "train_seconds": train_seconds}, Path(tmp) / STATE_FILE)
                _log_epoch(run_dir, metrics)
                saved_checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics | {"resumed_from": resumed_from}, checkpoint=saved_checkpoint)
            resumed_from = 0


def _log_epoch(run_dir: Path, metrics: dict[str, Any]) -> None:
    """The run's own record of an epoch, before it is reported: a grid that is killed
    between the checkpoint and MLflow can log the epoch from here when it resumes."""
    upsert(run_dir / EPOCH_LOG, pd.DataFrame([metrics]), key="epoch")
