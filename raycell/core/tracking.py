"""MLflow recording of a grid, from the Tune driver process.

One writer process (Tune's driver) owns the MLflow store, so trials running in
parallel never contend for the sqlite file. Each grid invocation is a parent run;
each run key is one child run, found again by its ``run_key`` tag when a grid is
resumed (Tune calls on_trial_start on every trial start, ray #48664), so a resumed
run continues its own MLflow run and logs each epoch once.
"""

from __future__ import annotations

import functools
import json
import signal
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Metric, Param, ViewType
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from raycell.core.layout import EPOCH_LOG
from raycell.core.placement import node_count, read_placement
from raycell.core.storage import open_store


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list) else str(value)
    return out


def runs_with_keys(client: MlflowClient, keys: Collection[str],
                    experiments: list[str] | None = None) -> list:
    if experiments is None:
        experiments = [e.experiment_id for e in client.search_experiments()]
    found = []
    for key in keys:
        found += client.search_runs(experiments, filter_string=f"tags.run_key = '{key}'",
                                    run_view_type=ViewType.ACTIVE_ONLY)
    return found


def forget_runs(uri: str, keys: Collection[str]) -> None:
    """Delete the MLflow runs of these run keys (a restart makes them anew)."""
    client = MlflowClient(uri)
    for run in runs_with_keys(client, keys):
        client.delete_run(run.info.run_id)


def epoch_metrics(result: dict[str, Any], metrics: Collection[str]) -> list[Metric]:
    """One epoch's figures (``metrics`` among a report or an epoch log's row) as MLflow
    metrics at step ``epoch``."""
    stamp, step = int(result.get("timestamp", 0) * 1000), int(result["epoch"])
    return [Metric(k, float(v), stamp, step) for k, v in result.items()
            if k in metrics and isinstance(v, int | float) and not pd.isna(v)]


def log_missing_epochs(uri: str, run_id: str, log: Path, metrics: Collection[str]) -> None:
    """The epochs of a run's epoch log that its MLflow run lacks: a trial ASHA stops
    trains on while Tune stops it, after Tune's last look at it."""
    client = MlflowClient(uri)
    logged = {m.step for m in client.get_metric_history(run_id, "epoch")}
    batch = [metric for row in pd.read_csv(log).to_dict("records")
             if int(row["epoch"]) not in logged
             for metric in epoch_metrics(row, {*metrics, "epoch"})]
    for i in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics per batch
        client.log_batch(run_id, metrics=batch[i : i + 1000])


def log_figures(uri: str, parent_run_id: str, paths: list[Path]) -> None:
    """The grid's figures, on its parent run: one place to see the comparison."""
    client = MlflowClient(uri)
    for path in paths:
        client.log_artifact(parent_run_id, str(path), "figures")


def uninterrupted(method: Callable) -> Callable:
    """Ctrl-C during ``method`` takes effect once it returns. MLflow's sqlite store rolls
    a write back on an Exception, not on KeyboardInterrupt: one landing mid-write leaves
    its transaction open, and every later write ("database is locked"), the KILLED marks
    after Ctrl-C among them, fails."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            return method(*args, **kwargs)
        caught = []
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
        try:
            return method(*args, **kwargs)
        finally:
            signal.signal(signal.SIGINT, previous)
            if caught and callable(previous):
                previous(signal.SIGINT, caught[0])  # Python's default: KeyboardInterrupt

    return wrapper


class GridRecorder(Callback):
    """``metrics``: result keys logged per epoch (step = the run's own epoch).
    ``summarize(key)``: (the run's results row, its folder), logged when it ends;
    ``commit(key, mlflow_run_id)``: called last, once MLflow has everything."""

    def __init__(self, uri: str, experiment_id: str, workload: str, grid_key: str,
                 params: dict[str, str], metrics: Collection[str],
                 summarize: Callable[[str], tuple[dict, Path]],
                 commit: Callable[[str, str], None]):
        self.client = MlflowClient(uri)
        self.experiment_id = experiment_id
        self.params, self.metrics = params, set(metrics) | {"epoch"}
        self.summarize, self.commit = summarize, commit
        self.parent = self.client.create_run(
            experiment_id, run_name=f"{workload}-grid-{grid_key}",
            tags={"raycell.workload": workload, "raycell.grid": grid_key}).info.run_id
        self._log_params(self.parent, params)
        self.runs: dict[str, str] = {}  # run key -> MLflow run id
        self.logged: dict[str, set[int]] = {}  # run key -> epochs logged
        self.last: dict[str, dict] = {}  # run key -> last result without an epoch

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        batch = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(batch), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=batch[i : i + 100])

    @uninterrupted
    def on_trial_start(self, iteration, trials, trial, **info):
        run = trial.config["run"]
        key = run["key"]
        if key in self.runs:  # the same trial started again
            return
        tags = {k: str(v) for k, v in run.items()
                if k not in ("key", "run_dir", "train_name", "epochs")}
        found = runs_with_keys(self.client, [key], [self.experiment_id])
        if found:  # a resumed run continues its own MLflow run, under this invocation
            run_id = found[0].info.run_id
            self.client.set_tag(run_id, "mlflow.parentRunId", self.parent)
            self.client.update_run(run_id, status="RUNNING")
            history = self.client.get_metric_history(run_id, "epoch")
            self.logged[key] = {m.step for m in history}
        else:
            run_id = self.client.create_run(
                self.experiment_id, run_name=run["name"],
                tags={**tags, "run_key": key, "mlflow.parentRunId": self.parent}).info.run_id
            self._log_params(run_id, {**self.params, **tags, "run_key": key})
            self.logged[key] = set()
        self.runs[key] = run_id

    def _log_epoch(self, key: str, result: dict) -> None:
        step = int(result["epoch"])
        if step in self.logged[key]:
            return
        self.client.log_batch(self.runs[key], metrics=epoch_metrics(result, self.metrics))
        self.logged[key].add(step)

    @uninterrupted
    def on_trial_result(self, iteration, trials, trial, result, **info):
        key = trial.config["run"]["key"]
        if key not in self.runs:
            return
        if result.get("epoch") is not None and not pd.isna(result["epoch"]):
            self._log_epoch(key, result)
        elif any(k in self.metrics for k in result):
            self.last[key] = result  # a run without epochs (a baseline): logged at the end

    @uninterrupted
    def on_trial_complete(self, iteration, trials, trial, **info):
        key = trial.config["run"]["key"]
        run_id = self.runs.get(key)
        if run_id is None:
            return
        # Epochs reported while the grid was down are in the run's own epoch log.
        log = Path(trial.config["run"]["run_dir"]) / EPOCH_LOG
        if log.is_file():
            for row in pd.read_csv(log).sort_values("epoch").to_dict("records"):
                self._log_epoch(key, row)
        elif key in self.last:
            self._log_epoch(key, {**self.last[key], "epoch": 0})
        summary, folder = self.summarize(key)
        self.client.log_dict(run_id, summary, "summary.json")
        if "status" in summary:  # a search's trial: finished, or stopped early by ASHA
            self.client.set_tag(run_id, "raycell.status", summary["status"])
        # How many nodes its ranks ran on (its last attempt): runs/<key>/placement.json.
        nodes = node_count(read_placement(Path(trial.config["run"]["run_dir"])))
        self.client.set_tag(run_id, "raycell.nodes", str(nodes))
        # Where the run's checkpoints are (Ray Train's run folder, on shared storage):
        # listed, not copied, since a checkpoint is the size of the model and optimizer.
        store, train_name = open_store(trial.config["storage"]), trial.config["run"]["train_name"]
        self.client.log_dict(run_id, {"train_dir": store.where(store.folder(train_name)),
                                      "checkpoints": store.checkpoints(train_name)},
                             "checkpoints.json")
        if folder.is_dir():
            self.client.log_artifacts(run_id, str(folder))
        self.client.set_terminated(run_id, "FINISHED")
        self.commit(key, run_id)

    @uninterrupted
    def on_trial_error(self, iteration, trials, trial, **info):
        run_id = self.runs.get(trial.config["run"]["key"])
        if run_id is not None:  # kept: a rerun of the grid continues it
            self.client.set_terminated(run_id, "FAILED")

    @uninterrupted
    def close(self, failed: bool, stopped: Collection[str] = ()) -> None:
        """``stopped``: run keys stopped by Ctrl-C, KILLED until a rerun continues them."""
        for key in stopped:
            if key in self.runs:
                self.client.set_terminated(self.runs[key], "KILLED")
        status = "KILLED" if stopped else "FAILED" if failed else "FINISHED"
        self.client.set_terminated(self.parent, status)
