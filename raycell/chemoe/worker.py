"""The CheMoE Ray Train worker loop, and the baselines that share its evaluation.

One run = one cell line and fold. The split's arrays sit on the device and batches
are index gathers (no DataLoader: a PDGrapher sample is dense and a split fits in
memory). Loss: MSE on treated + aux_loss_weight x load balance. Every eval_every
epochs (and at the end) rank 0 scores the validation split (loss, DE metrics,
expert usage); the best model by *validation* loss predicts the test split. The
last report carries a checkpoint with best.pt, final.pt and predictions.npz.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch.nn import functional as F

from raycell.chemoe.baselines import MeanShift, RidgeBaseline, identity
from raycell.chemoe.config import PDGRAPHER_CELL_LINES, ChemoeConfig
from raycell.chemoe.metrics import de_scores
from raycell.chemoe.model import CheMoE
from raycell.chemoe.samples import RunSamples, load_samples, write_predictions

EVAL_CHUNK = 256  # samples per forward pass when scoring


def _samples(config: dict[str, Any]) -> RunSamples:
    names, features = ray.get(config["features"])  # one copy in the object store
    return load_samples(Path(config["data_dir"]), config["cell_line"], int(config["fold"]),
                        names, features)


class _DeviceSplit:
    """One split's tensors on the training device; batches are index gathers."""

    def __init__(self, samples: RunSamples, name: str, device: torch.device):
        diseased, treated, _, idx = samples.part(name)
        self.diseased = torch.from_numpy(diseased).to(device)
        self.treated = torch.from_numpy(treated).to(device)
        self.mol_row = torch.from_numpy(samples.mol_row[idx]).to(device)
        self.mol = torch.tensor(samples.mol, device=device)  # a copy: Ray gives it read-only
        self.cell = torch.full((len(idx),), samples.cell_index, dtype=torch.long, device=device)

    def __len__(self) -> int:
        return len(self.cell)

    def batch(self, rows: torch.Tensor):
        return (self.diseased[rows], self.mol[self.mol_row[rows]], self.cell[rows],
                self.treated[rows])


def _autocast(device: torch.device):
    """bf16 autocast on GPUs; full precision on CPU (where bf16 matmuls are slow)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict(model: CheMoE, split: _DeviceSplit) -> tuple[np.ndarray, np.ndarray]:
    """Predicted treated (n, genes) and routing weights (n, E), as float32 numpy."""
    model.eval()
    preds, routes = [], []
    device = split.diseased.device
    for start in range(0, len(split), EVAL_CHUNK):
        rows = torch.arange(start, min(start + EVAL_CHUNK, len(split)), device=device)
        x, mol, cell, _ = split.batch(rows)
        with _autocast(device):
            pred, routing = model(x, mol, cell)
        preds.append(pred.float().cpu())
        routes.append(routing.float().cpu())
    model.train()
    return torch.cat(preds).numpy(), torch.cat(routes).numpy()


def _validate(model: CheMoE, val: _DeviceSplit) -> dict[str, float]:
    pred, routing = predict(model, val)
    treated, diseased = val.treated.cpu().numpy(), val.diseased.cpu().numpy()
    scores = de_scores(pred, treated, diseased)
    out = {"val_loss": float(((pred - treated) ** 2).mean())}
    out |= {f"val_{k}": v for k, v in scores.items() if not k.startswith("scored")}
    usage = routing.mean(0)
    out |= {f"expert_{e}_usage": float(u) for e, u in enumerate(usage)}
    return out


def score_test_split(pred: np.ndarray, samples: RunSamples) -> dict[str, float]:
    """The one evaluator every model's test predictions go through."""
    diseased, treated, _, idx = samples.part("test")
    scores = de_scores(pred, treated, diseased)
    return {"r2_top20": scores["r2_top20"], "r2_top40": scores["r2_top40"],
            "r2_top80": scores["r2_top80"], "pearson_de": scores["pearson_de"],
            "n_test": len(idx), "n_scored": scores["scored_top20"]}


def build_model(cfg: ChemoeConfig, n_genes: int, mol_dim: int) -> CheMoE:
    return CheMoE(n_genes, mol_dim, len(PDGRAPHER_CELL_LINES), **cfg.model.model_dump())


def train_loop(config: dict[str, Any]) -> None:
    cfg = ChemoeConfig.model_validate(config["cfg"])
    train_cfg = cfg.training
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(train_cfg.seed)

    samples = _samples(config)
    train, val = _DeviceSplit(samples, "train", device), _DeviceSplit(samples, "val", device)
    model = build_model(cfg, samples.data.diseased.shape[1], samples.mol.shape[1]).to(device)
    # Top-k routing leaves some experts without gradient in a step: DDP must allow that.
    ddp = ray.train.torch.prepare_model(
        model, parallel_strategy_kwargs={"find_unused_parameters": True})
    adam = torch.optim.AdamW if train_cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = adam(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    generator = torch.Generator().manual_seed(train_cfg.seed)
    per_rank = len(train) // world  # equal step counts on every rank, or DDP hangs
    best = {"val_loss": float("inf"), "epoch": 0, "state": None}
    train_seconds = 0.0

    for epoch in range(1, train_cfg.epochs + 1):
        order = torch.randperm(len(train), generator=generator)[rank::world][:per_rank]
        sums = np.zeros(3)  # mse, aux, samples
        started = time.perf_counter()
        for start in range(0, per_rank, train_cfg.batch_size):
            x, mol, cell, y = train.batch(order[start : start + train_cfg.batch_size].to(device))
            with _autocast(device):
                pred, routing = ddp(x, mol, cell)
            mse = F.mse_loss(pred.float(), y)
            aux = model.load_balance_loss(routing.float())
            loss = mse + train_cfg.aux_loss_weight * aux
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums += (mse.item() * len(y), aux.item() * len(y), len(y))
        elapsed = time.perf_counter() - started
        sums = _all_reduce(sums)
        train_seconds += elapsed
        metrics = {"epoch": epoch, "train_loss": (sums[0] + train_cfg.aux_loss_weight * sums[1])
                   / sums[2], "train_mse": sums[0] / sums[2], "train_aux": sums[1] / sums[2],
                   "epoch_seconds": elapsed, "train_seconds": train_seconds,
                   "samples_per_s": sums[2] / elapsed}
        last = epoch == train_cfg.epochs
        if rank == 0 and (epoch % train_cfg.eval_every == 0 or last):
            metrics |= _validate(model, val)
            if _improves(metrics["val_loss"], best):
                best = {"val_loss": metrics["val_loss"], "epoch": epoch,
                        "state": copy.deepcopy(model.state_dict())}
        if not last:
            ray.train.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                metrics |= _finish(cfg, model, best, samples, device, Path(tmp))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)


def _improves(val_loss: float, best: dict) -> bool:
    """Whether a validation loss beats the best so far. A NaN loss never compares less,
    so without this a run whose validations are NaN would end with no best state: the
    first evaluation always counts, and a finite loss replaces a NaN best."""
    return (best["state"] is None or math.isnan(best["val_loss"])
            or val_loss < best["val_loss"])


def _finish(cfg: ChemoeConfig, model: CheMoE, best: dict, samples: RunSamples,
            device: torch.device, out: Path) -> dict[str, float]:
    """Save final and best weights, predict the test split with the best, score it."""
    torch.save(model.state_dict(), out / "final.pt")
    torch.save(best["state"], out / "best.pt")
    model.load_state_dict(best["state"])
    pred, _ = predict(model, _DeviceSplit(samples, "test", device))
    write_predictions(out, samples, pred)
    scores = score_test_split(pred, samples)
    scores |= {"best_epoch": best["epoch"], "best_val_loss": best["val_loss"]}
    _write_json(out / "test_metrics.json", scores)
    (out / "config.json").write_text(json.dumps(cfg.model_dump(), indent=1))
    return {f"test_{k}": v for k, v in scores.items()}


def _write_json(path: Path, scores: dict) -> None:
    """Strict JSON: an undefined score (NaN) is written as null."""
    clean = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in scores.items()}
    path.write_text(json.dumps(clean, indent=1))


def _all_reduce(values: np.ndarray) -> np.ndarray:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
    dist.all_reduce(tensor)
    return tensor.numpy()


def run_baseline(config: dict[str, Any], out: Path) -> dict[str, float]:
    """Fit a baseline on the training split, predict the test split, score it."""
    cfg = ChemoeConfig.model_validate(config["cfg"])
    samples = _samples(config)
    diseased, _, mol, _ = samples.part("test")
    name = config["model"]
    if name == "identity":
        pred = identity(diseased)
        extra = {}
    elif name == "mean_shift":
        d, t, _, idx = samples.part("train")
        pred = MeanShift().fit(d, t, samples.data.drug[idx]).predict(
            diseased, samples.data.drug[samples.split["test"]])
        extra = {}
    else:
        ridge = RidgeBaseline(cfg.training.ridge_alphas).fit(
            samples.part("train")[:3], samples.part("val")[:3])
        pred, extra = ridge.predict(diseased, mol), {"ridge_alpha": ridge.alpha}
    write_predictions(out, samples, pred)
    scores = score_test_split(pred, samples) | extra
    _write_json(out / "test_metrics.json", scores)
    return {f"test_{k}": v for k, v in scores.items()}
