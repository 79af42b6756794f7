"""The CheMoE plan for the core worker skeleton, and the baselines that share its evaluation.

One run = one cell line and fold. The split's arrays sit on the device and batches
are index gathers (no DataLoader: a PDGrapher sample is dense and a split fits in
memory). Every eval_every epochs (and at the end) rank 0 scores the validation
split (loss, DE metrics, expert usage); the best model by *validation* loss
predicts the test split. The last checkpoint also holds best.pt, final.pt,
predictions.npz and test_metrics.json.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from torch.nn import functional as F

from raycell.chemoe.baselines import MeanShift, RidgeBaseline, identity
from raycell.chemoe.config import PDGRAPHER_CELL_LINES, ChemoeConfig
from raycell.chemoe.metrics import de_scores
from raycell.chemoe.model import CheMoE
from raycell.chemoe.samples import RunSamples, load_samples, write_predictions
from raycell.core.worker import Plan, WorkerContext, fit

EVAL_CHUNK = 256  # samples per forward pass when scoring
TEST_METRICS = "test_metrics.json"  # every model's test scores, in its run folder


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


class ChemoePlan(Plan):
    """CheMoE on one cell line and fold. Loss: MSE on treated + aux_loss_weight x load
    balance. At every evaluation rank 0 scores the validation split and keeps the best
    state by validation loss; the checkpoint holds it with the model, the optimizer and
    the shuffling generator, so a resumed run ends with the same best model."""

    unit = "samples"
    workload = "chemoe"

    def __init__(self, cfg: ChemoeConfig, samples: RunSamples):
        self.cfg, self.samples = cfg, samples
        self.epochs = cfg.training.epochs

    def build(self, ctx: WorkerContext) -> None:
        cfg, samples = self.cfg.training, self.samples
        self.ctx = ctx
        torch.manual_seed(cfg.seed)
        self.train = _DeviceSplit(samples, "train", ctx.device)
        self.val = _DeviceSplit(samples, "val", ctx.device)
        self.model = build_model(self.cfg, samples.data.diseased.shape[1],
                                 samples.mol.shape[1]).to(ctx.device)
        # Top-k routing leaves some experts without gradient in a step: DDP must allow that.
        self.ddp = ctx.ddp(self.model, find_unused_parameters=True)
        adam = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.per_rank = len(self.train) // ctx.world  # equal step counts, or DDP hangs
        self.best: dict[str, Any] = {"val_loss": float("inf"), "epoch": 0, "state": None}

    def train_epoch(self, epoch: int) -> tuple[dict[str, float], int]:
        cfg, ctx = self.cfg.training, self.ctx
        order = torch.randperm(len(self.train), generator=self.generator)
        order = order[ctx.rank :: ctx.world][: self.per_rank]
        sums = np.zeros(3)  # loss, mse, aux, each times the batch's samples
        for start in range(0, self.per_rank, cfg.batch_size):
            x, mol, cell, y = self.train.batch(order[start : start + cfg.batch_size]
                                               .to(ctx.device))
            with _autocast(ctx.device):
                pred, routing = self.ddp(x, mol, cell)
            mse = F.mse_loss(pred.float(), y)
            aux = self.model.load_balance_loss(routing.float())
            loss = mse + cfg.aux_loss_weight * aux
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            step = np.array([loss.item(), mse.item(), aux.item()])
            sums += step * len(y)
            ctx.progress.step(len(y), float(step[0]))
        return dict(zip(("train_loss", "train_mse", "train_aux"), sums, strict=True)), \
            self.per_rank

    def evaluates(self, epoch: int) -> bool:
        return epoch % self.cfg.training.eval_every == 0

    def evaluate(self, epoch: int) -> dict[str, float]:
        if self.ctx.rank != 0:
            return {}
        metrics = _validate(self.model, self.val)
        if _improves(metrics["val_loss"], self.best):
            self.best = {"val_loss": metrics["val_loss"], "epoch": epoch,
                         "state": copy.deepcopy(self.model.state_dict())}
        return metrics

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "best": self.best}

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.best = state["best"]

    def finish(self, out: Path) -> dict[str, float]:
        return _finish(self.cfg, self.model, self.best, self.samples, self.ctx.device, out)


def train_loop(config: dict[str, Any]) -> None:
    plan = ChemoePlan(ChemoeConfig.model_validate(config["cfg"]), _samples(config))
    fit(plan, Path(config["run_dir"]), config["name"])


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
    _write_json(out / TEST_METRICS, scores)
    (out / "config.json").write_text(json.dumps(cfg.model_dump(), indent=1))
    return {f"test_{k}": v for k, v in scores.items()}


def _write_json(path: Path, scores: dict) -> None:
    """Strict JSON: an undefined score (NaN) is written as null."""
    clean = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in scores.items()}
    path.write_text(json.dumps(clean, indent=1))


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
    _write_json(out / TEST_METRICS, scores)
    return {f"test_{k}": v for k, v in scores.items()}
