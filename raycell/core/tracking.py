"""MLflow recording of Tune trials, from the Tune driver process.

One writer process (Tune's driver) owns the MLflow store, so trials running in
parallel never contend for the sqlite file. One MLflow run per grid entry (the
trial config's "run": its values name the run and become tags and params):
per-epoch metrics as they arrive, then a summary and the run's files as artifacts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from ray.tune import Callback


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
    """``metrics``: result keys logged per epoch; ``summarize(run, last result)``: a dict
    logged as summary.json; ``artifacts(run)``: a folder logged when the trial ends."""

    def __init__(self, uri: str, experiment_id: str, params: dict[str, str],
                 metrics: Collection[str],
                 summarize: Callable[[dict, dict], dict] | None = None,
                 artifacts: Callable[[dict], Path] | None = None):
        self.client = MlflowClient(uri)
        self.experiment_id = experiment_id
        self.params = params
        self.metrics = metrics
        self.summarize, self.artifacts = summarize, artifacts
        self.runs: dict[str, str] = {}  # trial id -> MLflow run id
        self.last: dict[str, dict] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        cfg = trial.config["run"]
        described = {k: str(v) for k, v in cfg.items()}
        run = self.client.create_run(
            self.experiment_id,
            run_name="-".join(v for k, v in described.items() if k not in ("run_key", "run_dir")),
            tags=described,
        )
        self.runs[trial.trial_id] = run.info.run_id
        params = {**self.params, **described}
        batch = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(batch), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run.info.run_id, params=batch[i : i + 100])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self.runs.get(trial.trial_id)
        # Results without metrics (Tune's own bookkeeping) are neither logged nor kept as
        # the last result; a run without epochs (a baseline) logs at step 0.
        step, stamp = int(result.get("epoch", 0)), int(result.get("timestamp", 0) * 1000)
        metrics = [
            Metric(k, float(v), stamp, step)
            for k, v in result.items()
            if k in self.metrics and isinstance(v, int | float)
        ]
        if run_id is None or not metrics:
            return
        self.client.log_batch(run_id, metrics=metrics)
        self.last[trial.trial_id] = result

    def on_trial_complete(self, iteration, trials, trial, **info):
        run_id = self.runs.get(trial.trial_id)
        last = self.last.get(trial.trial_id)
        if run_id is None:
            return
        cfg = trial.config["run"]
        if last is not None and self.summarize is not None:
            self.client.log_dict(run_id, self.summarize(cfg, last), "summary.json")
        folder = self.artifacts(cfg) if self.artifacts is not None else None
        if folder is not None and Path(folder).is_dir():
            self.client.log_artifacts(run_id, str(folder))
        self.client.set_terminated(run_id, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        run_id = self.runs.get(trial.trial_id)
        if run_id is not None:
            self.client.set_terminated(run_id, "FAILED")

