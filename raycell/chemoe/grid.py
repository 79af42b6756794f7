"""The CheMoE grid on Ray Tune: one trial per (cell line, fold, model).

CheMoE trials fit a TorchTrainer (Train V2: a Tune driver function, FACTS.md);
baseline trials fit in the trial itself. Every trial leaves its files in
``<save_dir>/runs/<run_key>/`` (predictions.npz, test_metrics.json, and for CheMoE
best.pt and final.pt); the driver records each in MLflow and upserts its row of
``results.csv``. Everything a run reads is validated before anything is written.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune
from ray.train import FailureConfig, RunConfig
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from raycell.chemoe.config import ChemoeConfig
from raycell.chemoe.inputs import USES_MOLECULES, ChemoeInputs, mol_encoder_of
from raycell.chemoe.worker import run_baseline, train_loop
from raycell.core import runtime
from raycell.core.config import config_key
from raycell.core.rows import upsert
from raycell.core.tracking import MlflowRecorder, flatten

RESULT_COLUMNS = ["model", "cell_line", "fold", "mol_encoder", "r2_top20", "r2_top40", "r2_top80",
                  "pearson_de", "n_test", "n_scored", "run_key", "timestamp"]
CURVE_METRICS = frozenset(
    ["train_loss", "train_mse", "train_aux", "epoch_seconds", "train_seconds", "samples_per_s",
     "val_loss", "val_r2_top20", "val_r2_top40", "val_r2_top80", "val_pearson_de",
     "test_r2_top20", "test_r2_top40", "test_r2_top80", "test_pearson_de", "test_best_epoch",
     "test_best_val_loss", "test_ridge_alpha"]
    + [f"expert_{e}_usage" for e in range(64)]
)


def run_key(cfg: ChemoeConfig, data_dir: Path, cell_line: str, fold: int, model: str) -> str:
    """Hash of what changes a run's numbers: a baseline's key ignores CheMoE's settings."""
    payload: dict[str, Any] = {"data": str(data_dir), "cell_line": cell_line, "fold": fold,
                               "model": model, "mol_encoder": mol_encoder_of(model, cfg)}
    if model in USES_MOLECULES:
        payload["molecules"] = cfg.data.model_dump(include={"kpgt_file", "missing_embedding"})
    if model == "chemoe":
        payload["settings"] = cfg.model.model_dump()
        payload["training"] = cfg.training.model_dump(exclude={"ridge_alphas"})
    if model == "ridge":
        payload["ridge_alphas"] = cfg.training.ridge_alphas
    return config_key(payload)


def _trial(config: dict[str, Any]) -> None:
    """One Tune trial: a CheMoE TorchTrainer, or a baseline fitted here."""
    config = {**{k: v for k, v in config.items() if k != "run"}, **config["run"]}
    out = Path(config["run_dir"])
    if out.exists():
        shutil.rmtree(out)  # a rerun of the same key replaces its files
    out.mkdir(parents=True)
    if config["model"] != "chemoe":
        tune.report(run_baseline(config, out))
        return
    cfg = ChemoeConfig.model_validate(config["cfg"])
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=config,
        scaling_config=runtime.scaling_config(cfg.ray),
        run_config=RunConfig(
            # A fresh Train run per invocation: the same name would resume the old run.
            name=f"{config['cell_line']}-fold{config['fold']}-{config['run_key']}-{config['stamp']}",
            storage_path=config["storage"],
            callbacks=[TuneReportCallback()],
            failure_config=FailureConfig(max_failures=cfg.ray.max_failures),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError("the CheMoE run ended without its final checkpoint")
    with result.checkpoint.as_directory() as d:
        shutil.copytree(d, out, dirs_exist_ok=True)


def run_grid(cfg: ChemoeConfig, inputs: ChemoeInputs) -> pd.DataFrame:
    """Run the grid; returns this invocation's rows of results.csv."""
    save_dir = Path(cfg.output.save_dir).resolve()
    save_dir.mkdir(parents=True, exist_ok=True)
    runtime.ensure_ray(cfg.ray)
    uri = runtime.tracking_uri(save_dir)
    experiment = runtime.experiment_id(uri, cfg.output.experiment_name, save_dir)
    stamp = f"{pd.Timestamp.now():%Y%m%d-%H%M%S}"

    grid = []
    for line in cfg.grid.cell_lines:
        for fold in cfg.grid.folds:
            for model in cfg.grid.models:
                key = run_key(cfg, inputs.data_dir, line, fold, model)
                grid.append({"model": model, "cell_line": line, "fold": fold,
                             "mol_encoder": mol_encoder_of(model, cfg), "run_key": key,
                             "run_dir": str(save_dir / "runs" / key)})
    param_space = {
        "stamp": stamp, "cfg": cfg.model_dump(), "data_dir": str(inputs.data_dir),
        "features": ray.put((inputs.drug_names, inputs.features)),
        "storage": str(save_dir / "ray"), "run": tune.grid_search(grid),
    }
    tuner = tune.Tuner(
        tune.with_resources(_trial, {"CPU": cfg.ray.driver_cpus}),
        param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=cfg.ray.max_concurrent_trials),
        run_config=tune.RunConfig(
            name=f"chemoe-{stamp}", storage_path=str(save_dir / "tune"), verbose=1,
            callbacks=[MlflowRecorder(uri, experiment, flatten(cfg.model_dump()), CURVE_METRICS,
                                      artifacts=lambda run: Path(run["run_dir"]))],
        ),
    )
    results = tuner.fit()
    failed = [r for r in results if r.error is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(grid)} runs failed; first: {failed[0].error}")
    rows = []
    for result in results:
        run, last = result.config["run"], result.metrics
        row = {k: run[k] for k in ("model", "cell_line", "fold", "mol_encoder", "run_key")}
        row |= {k: last[f"test_{k}"] for k in ("r2_top20", "r2_top40", "r2_top80", "pearson_de",
                                               "n_test", "n_scored")}
        row["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        rows.append(row)
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    upsert(save_dir / "results.csv", frame)
    return frame
