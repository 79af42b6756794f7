"""The Tahoe Ray Train worker loop: read, step, evaluate, checkpoint, report.

scDataset arms: every rank builds its own scDataset with its rank and world size,
so ranks read disjoint fetches. Ray Data arms: every rank iterates its shard of
the trainer's "train" dataset (equal split). Either way the test set streams in
order through scDataset, so every arm is scored by the same evaluator; confusion
matrices and throughput counters are all-reduced so rank 0 reports metrics of the
whole test set and of all ranks' training.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from scdataset import Streaming

from raycell.tahoe.config import RAY_DATA_STRATEGIES, TahoeConfig
from raycell.tahoe.inputs import TahoeInputs
from raycell.tahoe.labels import TASKS
from raycell.tahoe.metrics import classification_scores
from raycell.tahoe.model import MultiTaskLinear
from raycell.tahoe.raydata import iter_sparse_batches
from raycell.tahoe.sparse import SparseBatch, TahoeRows
from raycell.tahoe.strategies import batches_per_rank, build_strategy, make_dataset, make_loader

CHECKPOINT_FILE = "model.pt"


def _all_reduce(values: np.ndarray, op: dist.ReduceOp = dist.ReduceOp.SUM) -> np.ndarray:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
    dist.all_reduce(tensor, op=op)
    return tensor.numpy()


def _evaluate(model: MultiTaskLinear, loader, device, log1p: bool, sizes: dict[str, int]):
    """Per-task confusion matrices over this rank's share of the test set, then summed."""
    matrices = {t: torch.zeros(n * n, dtype=torch.int64, device=device) for t, n in sizes.items()}
    model.eval()
    with torch.no_grad():
        for batch in loader:
            x, y = batch.dense_on(device, log1p)
            for i, (task, logits) in enumerate(zip(model.tasks, model(x), strict=True)):
                n = sizes[task]
                matrices[task] += torch.bincount(y[:, i] * n + logits.argmax(1), minlength=n * n)
    model.train()
    scores = {}
    for task, n in sizes.items():
        cm = _all_reduce(matrices[task].cpu().numpy()).reshape(n, n)
        for name, value in classification_scores(cm).items():
            scores[f"{task}_{name}"] = value
    scores["test_cells"] = int(cm.sum())  # every task sees the same cells
    return scores


def _train_batches(cfg: TahoeConfig, strategy: str, seed: int, inputs: TahoeInputs,
                   rank: int, world: int) -> Callable[[int], Iterator[SparseBatch]]:
    """epoch -> this rank's training batches of that epoch."""
    batch_size = cfg.training.batch_size
    if strategy in RAY_DATA_STRATEGIES:
        shard = ray.train.get_dataset_shard("train")
        return lambda epoch: iter_sparse_batches(
            shard, strategy, inputs.train.n_vars, batch_size, cfg.ray_data.shuffle_buffer_rows,
            seed + 1000 * epoch + rank,
        )
    rows = TahoeRows(inputs.train, inputs.labels)
    dataset = make_dataset(
        rows,
        build_strategy(strategy, rows, cfg.strategies[strategy].block_size,
                       cfg.weights.min_count_baseline),
        batch_size, cfg.scdataset.fetch_factor, seed, rank, world,
    )
    steps = batches_per_rank(dataset)

    def epoch_batches(epoch: int) -> Iterator[SparseBatch]:
        dataset.set_epoch(epoch)
        loader = make_loader(dataset, cfg.scdataset.num_workers)
        return (batch for _, batch in zip(range(steps), loader, strict=False))

    return epoch_batches


def train_loop(config: dict[str, Any]) -> None:
    cfg = TahoeConfig.model_validate(config["cfg"])
    strategy, seed = config["strategy"], int(config["seed"])
    inputs: TahoeInputs = ray.get(config["inputs"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(seed)

    train_batches = _train_batches(cfg, strategy, seed, inputs, rank, world)
    test_ds = make_dataset(
        TahoeRows(inputs.test, inputs.labels), Streaming(shuffle=False),
        cfg.training.batch_size, cfg.scdataset.fetch_factor, seed, rank, world,
    )
    workers = cfg.scdataset.num_workers
    sizes = inputs.labels.sizes()
    log1p = cfg.training.log1p

    model = MultiTaskLinear(inputs.train.n_vars, sizes).to(device)
    ddp_model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.Adam(ddp_model.parameters(), lr=cfg.training.learning_rate, fused=True)
    start_epoch, train_seconds = 0, 0.0
    resumed = ray.train.get_checkpoint()
    if resumed:  # Ray Train restarted the run after a failure: carry on from the last epoch
        with resumed.as_directory() as d:
            state = torch.load(Path(d) / CHECKPOINT_FILE, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, train_seconds = state["epoch"] + 1, state["train_seconds"]

    for epoch in range(start_epoch, cfg.training.num_epochs):
        loss_sum, cells, started = 0.0, 0, time.perf_counter()
        for batch in train_batches(epoch):
            x, y = batch.dense_on(device, log1p)
            loss = model.loss(ddp_model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            cells += len(y)
        elapsed = time.perf_counter() - started
        # Throughput of the whole job: cells of every rank over the slowest rank's time.
        loss_sum, cells = (float(v) for v in _all_reduce(np.array([loss_sum, cells])))
        elapsed = float(_all_reduce(np.array([elapsed]), dist.ReduceOp.MAX)[0])
        train_seconds += elapsed

        started = time.perf_counter()
        scores = _evaluate(model, make_loader(test_ds, workers), device, log1p, sizes)
        metrics = {
            "epoch": epoch + 1,
            "train_loss": float(loss_sum / max(cells, 1)),
            "epoch_seconds": elapsed,
            "train_seconds": train_seconds,
            "cells_per_s": cells / elapsed if elapsed > 0 else 0.0,
            "train_cells": int(cells),
            "eval_seconds": time.perf_counter() - started,
            **scores,
        }
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                torch.save(
                    {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "epoch": epoch, "train_seconds": train_seconds, "tasks": list(TASKS)},
                    Path(tmp) / CHECKPOINT_FILE,
                )
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)
