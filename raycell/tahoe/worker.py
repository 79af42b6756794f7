"""The Tahoe plan for the core worker skeleton: one strategy's batches into the 4-head model.

Training batches come from the strategy registry (each rank reads its own share, epoch
by epoch); the test set streams in order through scDataset on every strategy, so every
strategy is scored by the same evaluator. Confusion matrices are all-reduced so rank 0
reports metrics of the whole test set.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from scdataset import Streaming

from raycell.core.worker import Plan, WorkerContext, all_reduce, fit
from raycell.tahoe.config import TahoeConfig
from raycell.tahoe.data.sparse import split_rows
from raycell.tahoe.inputs import TahoeInputs
from raycell.tahoe.loaders.scdataset_loader import make_dataset, make_loader
from raycell.tahoe.loaders.strategies import LoaderSettings, get_strategy
from raycell.tahoe.model.metrics import classification_scores
from raycell.tahoe.model.multitask import MultiTaskLinear

MEASURED_EPOCHS = 10**6  # the loader measurement's epochs: far from any training epoch


class TahoePlan(Plan):
    unit = "cells"
    workload = "tahoe"

    def __init__(self, cfg: TahoeConfig, strategy: str, seed: int, inputs: TahoeInputs,
                 measure: tuple[float, float, str] | None = None):
        self.cfg, self.strategy, self.seed, self.inputs = cfg, strategy, seed, inputs
        # (warm-up, seconds, cache): time the loader alone before training
        self.measure = measure
        self._timings: dict[str, float] = {}
        self._measured: dict[str, float] = {}
        self.epochs = cfg.training.num_epochs
        self.sizes = inputs.labels.sizes()

    def build(self, ctx: WorkerContext) -> None:
        cfg, inputs = self.cfg, self.inputs
        self.device, self.progress = ctx.device, ctx.progress
        torch.manual_seed(self.seed)
        self.sparse = cfg.training.sparse_on(ctx.device.type)
        self.model = MultiTaskLinear(inputs.train.n_vars, self.sizes).to(ctx.device)
        self.ddp_model = ctx.ddp(self.model.for_sparse_ddp() if self.sparse else self.model)
        self.optimizer = torch.optim.Adam(self.ddp_model.parameters(),
                                          lr=cfg.training.learning_rate, fused=True)
        settings = LoaderSettings(
            batch_size=cfg.training.batch_size, fetch_factor=cfg.scdataset.fetch_factor,
            num_workers=cfg.scdataset.num_workers, read_rows=cfg.ray_data.read_rows,
            buffer_rows=cfg.ray_data.shuffle_buffer_rows,
            block_size=cfg.strategies[self.strategy].block_size,
            min_count_baseline=cfg.weights.min_count_baseline, seed=self.seed,
            rank=ctx.rank, world=ctx.world, read_resources=cfg.ray.read_resources)
        strategy = get_strategy(self.strategy)
        self.train_batches = strategy.epochs(inputs.train, inputs.labels, settings)
        if self.measure:
            self._measured = self._measure_loader(ctx)
        self.test_set = make_dataset(
            split_rows(inputs.test, inputs.labels), Streaming(shuffle=False),
            cfg.training.batch_size, cfg.scdataset.fetch_factor, self.seed, ctx.rank, ctx.world)

    def train_epoch(self, epoch: int) -> tuple[dict[str, float], int]:
        loss_sum, cells = 0.0, 0
        self._timings = {}
        log1p = self.cfg.training.log1p
        started = time.perf_counter()
        batches = self.train_batches(epoch - 1)  # loaders count epochs from 0
        try:
            for batch in itertools.islice(batches, self.cfg.training.max_steps):  # None: all
                if not cells:  # the loader's start-up: workers, first fetch, Ray Data planning
                    self._timings = {"startup_seconds": time.perf_counter() - started,
                                     "first_batch_at": time.time()}
                x, y = batch.on(self.device, log1p, self.sparse)
                loss = self.model.loss(self.ddp_model(x), y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                step_loss = loss.item()
                loss_sum += step_loss * len(y)
                cells += len(y)
                self.progress.step(len(y), step_loss)
        finally:
            batches.close()  # a max_steps epoch stops its DataLoader workers or Ray Data now
        return {"train_loss": loss_sum}, cells

    def timings(self) -> dict[str, float]:
        measured, self._measured = self._measured, {}  # reported with the first epoch
        return self._timings | measured

    def _measure_loader(self, ctx: WorkerContext) -> dict[str, float]:
        """The loader alone, as ``raycell bench loaders`` measures it (batches to the
        device, no model), from epochs training never reaches, so training's order stays."""
        from raycell.core import page_cache
        from raycell.core.filesystems import is_url
        from raycell.tahoe.bench.loaders import endless, measure, plate_of_rows
        from raycell.tahoe.config import LoaderBenchSettings

        split = self.inputs.train
        warmup, seconds, cache = self.measure
        files = list(dict.fromkeys(str(p.path) for p in split.plates))
        # cold: the plates leave the page cache before the window and after every fetch
        # in it, as on data larger than memory (``raycell bench loaders --cache cold``)
        cold = cache == "cold" and not is_url(files[0])
        if cold:
            page_cache.evict_settled(files)
        bench = LoaderBenchSettings(
            warmup=warmup, seconds=seconds, device=ctx.device.type,
            consumer="sparse" if self.sparse else "dense",
            fetch_factor=self.cfg.scdataset.fetch_factor, batch_size=self.cfg.training.batch_size)
        batches = endless(self.train_batches, MEASURED_EPOCHS)
        try:
            result = measure(batches, split.codes[:, 1], plate_of_rows(split), bench,
                             cold_files=files if cold else None)
        finally:
            batches.close()
        cells = float(all_reduce(np.array([result["cells"]], dtype=np.float64))[0])
        elapsed = float(all_reduce(np.array([result["seconds"]]), "max")[0])
        return {"loader_cells_per_s": cells / elapsed,
                "batch_drug_entropy": result["drug_entropy"],
                "batch_plate_entropy": result["plate_entropy"]}

    def evaluate(self, epoch: int) -> dict[str, float]:
        """Per-task confusion matrices over this rank's share of the test set, then summed."""
        sizes, device = self.sizes, self.device
        matrices = {t: torch.zeros(n * n, dtype=torch.int64, device=device)
                    for t, n in sizes.items()}
        self.model.eval()
        with torch.no_grad():
            for batch in make_loader(self.test_set, self.cfg.scdataset.num_workers):
                x, y = batch.on(device, self.cfg.training.log1p, self.sparse)
                for i, (task, logits) in enumerate(zip(self.model.tasks, self.model(x),
                                                       strict=True)):
                    n = sizes[task]
                    matrices[task] += torch.bincount(y[:, i] * n + logits.argmax(1),
                                                     minlength=n * n)
        self.model.train()
        scores: dict[str, float] = {}
        for task, n in sizes.items():
            cm = all_reduce(matrices[task].cpu().numpy()).reshape(n, n)
            for name, value in classification_scores(cm).items():
                scores[f"{task}_{name}"] = value
        scores["test_cells"] = int(cm.sum())  # every task sees the same cells
        return scores

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


def train_loop(config: dict[str, Any]) -> None:
    measure = (float(config["warmup_seconds"]), float(config["measure_seconds"]),
               config["cache"]) if "measure_seconds" in config else None  # a search's trial
    plan = TahoePlan(TahoeConfig.model_validate(config["cfg"]), config["strategy"],
                     int(config["seed"]), ray.get(config["inputs"]), measure)
    fit(plan, Path(config["run_dir"]), config["name"])
