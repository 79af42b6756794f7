"""MLflow recording of Tune trials, from the Tune driver process.

One writer process (Tune's driver) owns the MLflow store, so trials running in
parallel never contend for the sqlite file. One MLflow run per (strategy, seed)
run: params, per-epoch metrics as they arrive, and the summary as an artifact.
"""

from __future__ import annotations

import json
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from raycell.results import EPOCH_METRICS, summary_row


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list) else str(value)
    return out


class MlflowRecorder(Callback):
    def __init__(self, uri: str, experiment_id: str, params: dict[str, str]):
        self.client = MlflowClient(uri)
        self.experiment_id = experiment_id
        self.params = params
        self.runs: dict[str, str] = {}  # trial id -> MLflow run id
        self.last: dict[str, dict] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        cfg = trial.config["run"]
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{cfg['strategy']}-seed{cfg['seed']}",
            tags={"strategy": cfg["strategy"], "run_key": cfg["run_key"]},
        )
        self.runs[trial.trial_id] = run.info.run_id
        params = {**self.params, "strategy": cfg["strategy"], "seed": str(cfg["seed"]),
                  "run_key": cfg["run_key"]}
        batch = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(batch), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run.info.run_id, params=batch[i : i + 100])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self.runs.get(trial.trial_id)
        if run_id is None or "epoch" not in result:
            return
        step, stamp = int(result["epoch"]), int(result.get("timestamp", 0) * 1000)
        metrics = [
            Metric(k, float(v), stamp, step)
            for k, v in result.items()
            if k in EPOCH_METRICS
        ]
        self.client.log_batch(run_id, metrics=metrics)
        self.last[trial.trial_id] = result

    def on_trial_complete(self, iteration, trials, trial, **info):
        run_id = self.runs.get(trial.trial_id)
        last = self.last.get(trial.trial_id)
        if run_id is None:
            return
        if last is not None:
            cfg = trial.config["run"]
            row = summary_row(cfg["strategy"], cfg["seed"], cfg["run_key"], last)
            self.client.log_dict(run_id, row, "summary.json")
        self.client.set_terminated(run_id, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        run_id = self.runs.get(trial.trial_id)
        if run_id is not None:
            self.client.set_terminated(run_id, "FAILED")

