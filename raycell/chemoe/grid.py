"""The CheMoE grid: one run per (cell line, fold, model), through core's grid runner.

CheMoE runs fit a TorchTrainer (Train V2: a Tune driver function, docs/facts.md);
baselines fit in the trial itself. Every run leaves its files in
``<save_dir>/runs/<run_key>/`` (epochs.csv, predictions.npz, test_metrics.json, and
for CheMoE best.pt and final.pt); its row of ``results.csv`` is made from them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import ray

from raycell.chemoe.config import ChemoeConfig
from raycell.chemoe.inputs import USES_MOLECULES, ChemoeInputs, mol_encoder_of
from raycell.chemoe.report import sections
from raycell.chemoe.results import RESULT_COLUMNS, RESULTS_FILE, SCORES
from raycell.chemoe.trial import trial
from raycell.chemoe.worker import TEST_METRICS
from raycell.core.config import config_key, numeric_ray_settings
from raycell.core.grid import GridRun, Workload, run_grid
from raycell.core.tracking import flatten

CURVE_METRICS = frozenset(
    ["train_loss", "train_mse", "train_aux", "epoch_seconds", "train_seconds", "samples_per_s",
     "eval_seconds",
     "val_loss", "val_r2_top20", "val_r2_top40", "val_r2_top80", "val_pearson_de",
     "test_r2_top20", "test_r2_top40", "test_r2_top80", "test_pearson_de", "test_best_epoch",
     "test_best_val_loss", "test_ridge_alpha"]
)


def run_key(cfg: ChemoeConfig, data_dir: Path, cell_line: str, fold: int, model: str) -> str:
    """Hash of what changes a run's numbers: a baseline's key ignores CheMoE's settings."""
    payload: dict[str, Any] = {"data": str(data_dir), "cell_line": cell_line, "fold": fold,
                               "model": model, "mol_encoder": mol_encoder_of(model, cfg)}
    if model in USES_MOLECULES:
        payload["molecules"] = cfg.data.model_dump(include={"kpgt_file", "missing_embedding"})
    if model == "chemoe":
        payload["ray"] = numeric_ray_settings(cfg.ray)
        payload["settings"] = cfg.model.model_dump()
        payload["training"] = cfg.training.model_dump(exclude={"ridge_alphas"})
    if model == "ridge":
        payload["ridge_alphas"] = cfg.training.ridge_alphas
    return config_key(payload)


def _records(run: GridRun, folder: Path) -> dict[str, pd.DataFrame]:
    scores = json.loads((folder / TEST_METRICS).read_text())
    row = {k: run.tags[k] for k in ("model", "cell_line", "fold", "mol_encoder")}
    row |= {k: scores[k] for k in SCORES} | {"run_key": run.key}
    row["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return {RESULTS_FILE: pd.DataFrame([row], columns=RESULT_COLUMNS)}


def chemoe_grid(cfg: ChemoeConfig, inputs: ChemoeInputs, restart: bool = False) -> pd.DataFrame:
    """Run the grid's unfinished runs; returns the grid's rows of results.csv."""
    save_dir = Path(cfg.output.save_dir).resolve()
    runs = []
    for line in cfg.grid.cell_lines:
        for fold in cfg.grid.folds:
            for model in cfg.grid.models:
                runs.append(GridRun(
                    run_key(cfg, inputs.data_dir, line, fold, model), f"{model}-{line}-fold{fold}",
                    {"model": model, "cell_line": line, "fold": fold,
                     "mol_encoder": mol_encoder_of(model, cfg)},
                    cfg.training.epochs if model == "chemoe" else None))
    usage = {f"expert_{e}_usage" for e in range(cfg.model.num_experts)}
    workload = Workload(name="chemoe", results_file=RESULTS_FILE, trial=trial,
                        records=_records, metrics=CURVE_METRICS | usage,
                        params=flatten(cfg.model_dump(exclude={"search"})), report=sections)

    def shared() -> dict[str, Any]:
        return {"cfg": cfg.model_dump(), "data_dir": str(inputs.data_dir),
                "features": ray.put((inputs.drug_names, inputs.features))}

    return run_grid(workload, runs, save_dir, cfg.ray, cfg.output.experiment_name, shared,
                    restart)
