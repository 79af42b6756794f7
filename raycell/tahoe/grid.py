"""The Tahoe grid: one run per (strategy, seed), each a TorchTrainer, through core's runner.

Train V2 pattern (docs/facts.md): a Tune trial runs a driver function that fits a
TorchTrainer, forwarding rank 0's epoch reports to Tune (core/trial.py). A single
strategy is a grid of one, so every run takes the same path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import ray

from raycell.core.config import config_key, numeric_ray_settings
from raycell.core.grid import GridRun, Workload, run_grid
from raycell.core.layout import EPOCH_LOG
from raycell.core.tracking import flatten
from raycell.tahoe.config import TahoeConfig
from raycell.tahoe.inputs import TahoeInputs
from raycell.tahoe.loaders.strategies import get_strategy
from raycell.tahoe.outputs.plots import write_figures
from raycell.tahoe.outputs.report import sections
from raycell.tahoe.outputs.results import CURVE_COLUMNS, EPOCH_METRICS, summary_row
from raycell.tahoe.trial import trial


def run_settings(cfg: TahoeConfig, strategy: str, seed: int) -> dict[str, Any]:
    """Everything that changes a run's numbers (not where its files go)."""
    payload = cfg.model_dump(exclude={"output", "strategies", "ray", "search"})
    payload["training"].pop("seeds")
    payload["ray"] = numeric_ray_settings(cfg.ray)
    if get_strategy(strategy).kind != "ray_data":  # Ray Data settings change no other number
        payload.pop("ray_data")
    payload["strategy"] = {"name": strategy, **cfg.strategies[strategy].model_dump()}
    payload["seed"] = seed
    return payload


def _records(settings: dict[tuple[str, int], dict]):
    def records(run: GridRun, folder: Path) -> dict[str, pd.DataFrame]:
        strategy, seed = run.tags["strategy"], run.tags["seed"]
        epochs = pd.read_csv(folder / EPOCH_LOG).sort_values("epoch")
        curve = epochs.assign(run_key=run.key, strategy=strategy, seed=seed)[CURVE_COLUMNS]
        return {
            "curves.csv": curve,
            # Beside the numbers, the settings that made them (log1p, plates, block size, ...).
            "settings.csv": pd.DataFrame([{"run_key": run.key,
                                           **flatten(settings[strategy, seed])}]),
            "summary.csv": pd.DataFrame([summary_row(strategy, seed, run.key, epochs)]),
        }

    return records


def tahoe_grid(cfg: TahoeConfig, inputs: TahoeInputs, strategies: list[str],
               restart: bool = False) -> pd.DataFrame:
    """Run every (strategy, seed) not finished yet; returns their rows of summary.csv."""
    save_dir = Path(cfg.output.save_dir).resolve()
    grid = [(s, seed) for s in strategies for seed in cfg.training.seeds]
    settings = {run: run_settings(cfg, *run) for run in grid}
    runs = [GridRun(config_key(settings[s, seed]), f"{s}-seed{seed}",
                    {"strategy": s, "seed": seed}, cfg.training.num_epochs) for s, seed in grid]
    workload = Workload(
        name="tahoe", results_file="summary.csv", trial=trial, records=_records(settings),
        metrics=EPOCH_METRICS, params=flatten(cfg.model_dump(exclude={"search"})),
        extra_files=("curves.csv", "settings.csv"), figures=write_figures, report=sections)

    def shared() -> dict[str, Any]:  # built only when something is left to run
        (save_dir / "labels.json").write_text(inputs.labels.to_json())
        # One copy in the object store, zero-copy in every worker.
        return {"cfg": cfg.model_dump(), "inputs": ray.put(inputs)}

    return run_grid(workload, runs, save_dir, cfg.ray, cfg.output.experiment_name, shared,
                    restart)
