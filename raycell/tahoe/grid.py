"""The Tahoe grid on Ray Tune: one trial per (strategy, seed), each fitting a TorchTrainer.

Train V2 pattern (FACTS.md): a Tune trial runs a driver function that builds and
fits a TorchTrainer, with TuneReportCallback forwarding rank 0's epoch reports.
A single strategy is a grid of one, so every run takes the same path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune
from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from raycell.core import runtime
from raycell.core.config import config_key
from raycell.core.rows import upsert
from raycell.core.tracking import MlflowRecorder, flatten
from raycell.tahoe.config import RAY_DATA_STRATEGIES, TahoeConfig
from raycell.tahoe.inputs import TahoeInputs
from raycell.tahoe.raydata import execution_options, tahoe_dataset
from raycell.tahoe.results import CURVE_COLUMNS, EPOCH_METRICS, SUMMARY_COLUMNS, summary_row
from raycell.tahoe.worker import train_loop


def run_settings(cfg: TahoeConfig, strategy: str, seed: int) -> dict[str, Any]:
    """Everything that changes a run's numbers (not where its files go)."""
    payload = cfg.model_dump(exclude={"output", "strategies"})
    payload["training"].pop("seeds")
    if strategy not in RAY_DATA_STRATEGIES:  # keeps the keys of existing scDataset rows
        payload.pop("ray_data")
    payload["strategy"] = {"name": strategy, **cfg.strategies[strategy].model_dump()}
    payload["seed"] = seed
    return payload


def _trial(config: dict[str, Any]) -> None:
    """A Tune trial: fit one TorchTrainer for one (strategy, seed)."""
    cfg = TahoeConfig.model_validate(config["cfg"])
    strategy = config["strategy"]
    datasets = {}
    if strategy in RAY_DATA_STRATEGIES:  # Ray Data arms reach the workers as dataset shards
        inputs: TahoeInputs = ray.get(config["inputs"])
        datasets["train"] = tahoe_dataset(
            strategy, inputs.train, inputs.labels, cfg.ray_data.read_rows,
            cfg.strategies[strategy].block_size, int(config["seed"]),
        )
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=config,
        datasets=datasets,
        dataset_config=DataConfig(execution_options={"train": execution_options()}),
        scaling_config=runtime.scaling_config(cfg.ray),
        run_config=RunConfig(
            # A fresh Train run per invocation: the same name would resume the old run.
            name=f"{config['strategy']}-seed{config['seed']}-{config['run_key']}-{config['stamp']}",
            storage_path=config["storage"],
            callbacks=[TuneReportCallback()],
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.output.checkpoints_to_keep),
            failure_config=FailureConfig(max_failures=cfg.ray.max_failures),
        ),
    )
    trainer.fit()


def run_grid(cfg: TahoeConfig, inputs: TahoeInputs, strategies: list[str]) -> pd.DataFrame:
    """Run every (strategy, seed), record it in MLflow, write summary.csv and curves.csv."""
    save_dir = Path(cfg.output.save_dir).resolve()
    save_dir.mkdir(parents=True, exist_ok=True)
    runtime.ensure_ray(cfg.ray)
    uri = runtime.tracking_uri(save_dir)
    experiment = runtime.experiment_id(uri, cfg.output.experiment_name, save_dir)
    (save_dir / "labels.json").write_text(inputs.labels.to_json())

    grid = [(s, seed) for s in strategies for seed in cfg.training.seeds]
    settings = {(s, seed): run_settings(cfg, s, seed) for s, seed in grid}
    keys = {run: config_key(payload) for run, payload in settings.items()}  # the run keys
    inputs_ref = ray.put(inputs)  # one copy in the object store, zero-copy in every worker
    stamp = f"{pd.Timestamp.now():%Y%m%d-%H%M%S}"
    param_space = {
        "stamp": stamp,
        "cfg": cfg.model_dump(),
        "inputs": inputs_ref,
        "storage": str(save_dir / "ray"),
        "run": tune.grid_search([{"strategy": s, "seed": seed, "run_key": keys[s, seed]}
                                 for s, seed in grid]),
    }
    tuner = tune.Tuner(
        tune.with_resources(_flatten_trial, {"CPU": cfg.ray.driver_cpus}),
        param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=cfg.ray.max_concurrent_trials),
        run_config=tune.RunConfig(
            name=f"tahoe-{stamp}",
            storage_path=str(save_dir / "tune"),
            callbacks=[MlflowRecorder(
                uri, experiment, flatten(cfg.model_dump()), EPOCH_METRICS,
                summarize=lambda run, last: summary_row(run["strategy"], run["seed"],
                                                        run["run_key"], last),
            )],
            verbose=1,
        ),
    )
    results = tuner.fit()
    failed = [r for r in results if r.error is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(grid)} runs failed; first: {failed[0].error}")

    summaries, curves = [], []
    for result in results:
        run = result.config["run"]
        frame = result.metrics_dataframe
        if frame is None or frame.empty or "epoch" not in frame:
            raise RuntimeError(f"run {run['strategy']} seed {run['seed']} reported no epochs")
        frame = frame.dropna(subset=["epoch"]).sort_values("epoch")
        summaries.append(summary_row(run["strategy"], run["seed"], run["run_key"],
                                     frame.iloc[-1].to_dict()))
        curve = frame.assign(**run)[CURVE_COLUMNS]
        curves.append(curve)
    upsert(save_dir / "curves.csv", pd.concat(curves, ignore_index=True))
    # Beside the numbers, the settings that made them (log1p, plates, block size, ...).
    upsert(save_dir / "settings.csv", pd.DataFrame(
        [{"run_key": keys[run], **flatten(payload)} for run, payload in settings.items()]))
    summary = pd.DataFrame(summaries, columns=SUMMARY_COLUMNS)
    return upsert(save_dir / "summary.csv", summary)


def _flatten_trial(config: dict[str, Any]) -> None:
    """Tune nests the grid entry under 'run'; the trial and worker see it flat."""
    _trial({**{k: v for k, v in config.items() if k != "run"}, **config["run"]})
