"""One grid runner for every workload: run keys, skip finished, resume interrupted, Tune.

A workload describes its grid as ``GridRun``s (a run key: what changes the numbers;
a name: what the run is) and hands over a ``Workload``: the trial that fits one run
and the rows its files make. Names on disk come from run keys, never from the clock:

- ``<save_dir>/runs/<key>/``: the run's own files (epoch log, predictions, weights);
- ``<save_dir>/ray/<name>-<key>/``: its Ray Train run, checkpoints included
  (``core/trial.py``). The same name again makes Ray Train resume from the last
  checkpoint (docs/facts.md);
- ``<save_dir>/<results file>``: one row per finished key, written last.

So rerunning a command skips keys that have a row, resumes keys that have a
checkpoint and starts the rest; ``restart`` forgets the grid's keys first.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import socket
import time
import zipfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune

from raycell.core import runtime
from raycell.core.config import RaySettings, config_key
from raycell.core.console import ProgressLines, verbose
from raycell.core.errors import BadData, Interrupted, RaycellError, RunsFailed
from raycell.core.html import Section, page, write_page
from raycell.core.layout import (
    EPOCH_LOG,
    ERROR_FILE,
    MARKER_FILE,
    REPORT_FILE,
    RUNNING_FILE,
    STATE_FILE,
    TRAIN_SNAPSHOT,
    run_dir,
)
from raycell.core.rows import remove_keys, upsert
from raycell.core.status import first_error_line
from raycell.core.storage import CheckpointStore, check_reachable, checkpoint_store
from raycell.core.tracking import GridRecorder, forget_runs, log_figures
from raycell.core.trial import flat
from raycell.core.worker import load_state

TRAIN_ACTORS = {"TrainController", "RayTrainWorker"}  # a Ray Train run's actors


@dataclass(frozen=True)
class GridRun:
    key: str  # run key: a hash of everything that changes the run's numbers
    name: str  # what the run is: "block_shuffling-seed0", "chemoe-A549-fold0"
    tags: dict[str, Any]  # the same as fields: MLflow tags and params, result columns
    epochs: int | None = None  # epochs it trains (None: fitted at once); for progress lines

    def train_name(self) -> str:
        return f"{self.name}-{self.key}"


@dataclass
class Workload:
    """What a slice hands the grid runner."""

    name: str  # "tahoe": names the Tune experiment and the MLflow parent run
    results_file: str  # one row per finished run key; its rows say what is finished
    trial: Callable[[dict[str, Any]], None]  # fits one run; its config is flat (see run_grid)
    # (run, run folder) -> {file name: rows} to upsert when the run ends; the results
    # file's rows must be among them (written last, so a row means the rest is there).
    records: Callable[[GridRun, Path], dict[str, pd.DataFrame]]
    metrics: frozenset[str]  # per-epoch result keys logged to MLflow
    params: dict[str, str] = field(default_factory=dict)  # the config, flattened
    extra_files: tuple[str, ...] = ()  # other per-run-key CSVs to forget on restart
    # save_dir -> figures drawn from its results once the grid ends, also logged to the
    # grid's MLflow parent run
    figures: Callable[[Path], list[Path]] | None = None
    # save_dir -> the report's sections: ``<save_dir>/report.html`` once the grid ends,
    # also logged to the parent run
    report: Callable[[Path], list[Section]] | None = None


def run_folder(save_dir: Path, run: GridRun) -> Path:
    return run_dir(save_dir, run.key)


def finished_keys(save_dir: Path, workload: Workload) -> set[str]:
    path = save_dir / workload.results_file
    if not path.is_file():
        return set()
    return set(pd.read_csv(path, dtype={"run_key": str}, usecols=["run_key"])["run_key"])


def check_save_dir(save_dir: Path, workload: Workload, runs: list[GridRun],
                   restart: bool, store: CheckpointStore) -> None:
    """Refuse a folder of another workload, or one holding a run of the same name made
    with other settings (its numbers would sit beside these as if comparable)."""
    marker = save_dir / MARKER_FILE
    if marker.is_file():
        other = json.loads(marker.read_text()).get("workload")
        if other != workload.name:
            raise RaycellError(f"--save_dir {save_dir} holds {other} results: choose another "
                               f"folder for {workload.name}")
    if restart:  # everything of these keys is about to be forgotten
        return
    path = save_dir / workload.results_file
    rows = pd.read_csv(path, dtype={"run_key": str}) if path.is_file() else pd.DataFrame()
    by_name = dict(zip(rows["run_name"], rows["run_key"], strict=True)) \
        if "run_name" in rows else {}
    for run in runs:
        if by_name.get(run.name, run.key) != run.key:
            raise RaycellError(
                f"--save_dir {save_dir} holds {run.name} from other settings (run key "
                f"{by_name[run.name]}, this config's {run.key}): pass --restart to replace "
                f"it, or choose another --save_dir")
    for run in runs:
        check_checkpoint(store, run)


def check_checkpoint(store: CheckpointStore, run: GridRun) -> None:
    """The checkpoint a run would resume from must be readable (a torch zip archive)."""
    folder = store.folder(run.train_name())
    try:
        latest = store.latest_checkpoint(run.train_name())
    except (ValueError, KeyError, TypeError):
        raise RaycellError(f"checkpoint record {store.where(f'{folder}/{TRAIN_SNAPSHOT}')} is "
                           f"corrupt: pass --restart to train {run.name} from scratch") from None
    if latest is None:
        return
    checkpoint = f"{folder}/{latest['checkpoint_dir_name']}"
    with store.local_file(f"{checkpoint}/{STATE_FILE}") as state:
        try:
            with zipfile.ZipFile(state) as archive:
                bad = archive.testzip()
        except (OSError, zipfile.BadZipFile):
            bad = STATE_FILE
        if bad is not None:
            raise RaycellError(f"checkpoint {store.where(checkpoint)} of {run.name} is "
                               f"corrupt: pass --restart to train it from scratch")
        try:  # memory-mapped: the pickle is checked, the tensors are not read
            load_state(state, mmap=True)
        except pickle.UnpicklingError:
            raise RaycellError(f"checkpoint {store.where(checkpoint)} of {run.name} holds more "
                               f"than tensors and plain types, and is not loaded (it could run "
                               f"code): pass --restart to train it from scratch") from None


def forget(save_dir: Path, workload: Workload, runs: list[GridRun], uri: str,
           store: CheckpointStore) -> None:
    """--restart: remove every trace of the grid's keys (files, checkpoints, rows, MLflow)."""
    keys = [run.key for run in runs]
    for run in runs:
        shutil.rmtree(run_folder(save_dir, run), ignore_errors=True)
        store.remove(run.train_name())
    for name in (*workload.extra_files, workload.results_file):
        remove_keys(save_dir / name, keys)
    forget_runs(uri, keys)


def forget_grid(workload: Workload, runs: list[GridRun], save_dir: Path,
                settings: RaySettings) -> None:
    """What --restart does before a grid runs, for runs a search may only make later."""
    if (save_dir / MARKER_FILE).is_file():
        store = checkpoint_store(save_dir, settings.storage_path)
        check_save_dir(save_dir, workload, [], True, store)
        forget(save_dir, workload, runs, runtime.tracking_uri(save_dir), store)


def run_grid(workload: Workload, runs: list[GridRun], save_dir: Path, settings: RaySettings,
             experiment_name: str, shared: Callable[[], dict[str, Any]], restart: bool = False,
             say: Callable[[str], None] = print, scheduler=None) -> pd.DataFrame:
    """Run the grid's unfinished keys; returns the results file's rows of the grid.

    ``scheduler``: a Tune trial scheduler (a search's ASHA), which may stop runs early;
    a stopped run's row is made from what it left, as a finished run's is.

    ``shared()``: values every trial's config gets (the config, object refs), made once
    Ray runs and only if a run is left to do. A trial's
    config also has ``key``, ``name``, ``train_name``, ``run_dir``, ``storage`` and
    the run's tags, flat.
    """
    store = checkpoint_store(save_dir, settings.storage_path)
    check_reachable(store)  # object storage that does not answer: one line, within seconds
    check_save_dir(save_dir, workload, runs, restart, store)
    finished = set() if restart else finished_keys(save_dir, workload)
    todo = [run for run in runs if run.key not in finished]
    if todo:  # Ray first: a cluster that cannot hold the runs leaves nothing written
        if where := runtime.ensure_ray(settings):
            say(where)
        runtime.check_placement(settings)
    save_dir.mkdir(parents=True, exist_ok=True)
    (save_dir / MARKER_FILE).write_text(json.dumps({
        "workload": workload.name, "results_file": workload.results_file,
        "checkpoints": store.uri}))
    uri = runtime.tracking_uri(save_dir)
    if restart:
        forget(save_dir, workload, runs, uri, store)
    for run in runs:
        if run.key in finished:
            say(f"skipped {run.name} ({run.key}): finished, its row is in "
                f"{save_dir / workload.results_file}")
    parent = _tune(workload, todo, save_dir, store, settings, experiment_name, shared, uri,
                   say, scheduler) if todo else None
    rows = pd.read_csv(save_dir / workload.results_file, dtype={"run_key": str})
    figures = workload.figures(save_dir) if workload.figures else []
    if workload.report:
        figures.append(write_page(save_dir / REPORT_FILE, page(
            f"raycell {workload.name}", str(save_dir), workload.report(save_dir))))
    if parent is not None and figures:
        log_figures(uri, parent, figures)
    return rows[rows["run_key"].isin([run.key for run in runs])].reset_index(drop=True)


def _tune(workload: Workload, todo: list[GridRun], save_dir: Path, store: CheckpointStore,
          settings: RaySettings, experiment_name: str, shared: Callable[[], dict[str, Any]],
          uri: str, say: Callable[[str], None], scheduler=None) -> str:
    """Run the trials (Ray is up); returns the grid's MLflow parent run id."""
    experiment = runtime.experiment_id(uri, experiment_name, save_dir)
    grid_key = config_key(sorted(run.key for run in todo))
    by_key = {run.key: run for run in todo}
    completed = _Completed(save_dir, workload, by_key)
    recorder = GridRecorder(uri, experiment, workload.name, grid_key, workload.params,
                            workload.metrics, completed.summarize, completed.commit)
    trials = [{"key": run.key, "name": run.name, "train_name": run.train_name(),
               "run_dir": str(run_folder(save_dir, run)), "epochs": run.epochs, **run.tags}
              for run in todo]
    name = f"{workload.name}-{grid_key}"
    # Tune's own folder is bookkeeping only (resume goes through Train's run folders), so
    # a rerun starts it afresh instead of tripping over the killed invocation's state.
    shutil.rmtree(save_dir / "tune" / name, ignore_errors=True)
    for run in todo:  # a new attempt: the last one's error no longer stands
        (run_folder(save_dir, run) / ERROR_FILE).unlink(missing_ok=True)
    tuner = tune.Tuner(
        tune.with_resources(flat(workload.trial), runtime.driver_bundle(settings)),
        param_space={**shared(), "storage": store.uri,
                     "run": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=settings.max_concurrent_trials, scheduler=scheduler,
            trial_name_creator=lambda t: t.config["run"]["name"],
            trial_dirname_creator=lambda t: t.config["run"]["name"]),
        run_config=tune.RunConfig(name=name, storage_path=str(save_dir / "tune"),
                                  callbacks=[recorder, ProgressLines()],
                                  verbose=1 if verbose() else 0),
    )
    running = save_dir / RUNNING_FILE  # for `raycell status` while the grid runs
    running.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                   "keys": sorted(by_key)}))
    try:
        failed = [r for r in fit_tuner(tuner, scheduler is not None) if r.error is not None]
    except KeyboardInterrupt:
        ray.shutdown()  # this driver's trials stop with it, also on a cluster it joined
        _interrupted(save_dir, store, workload, todo, recorder, [])
        raise  # every run had finished: nothing to resume
    finally:
        running.unlink(missing_ok=True)
    for result in failed:
        folder = run_folder(save_dir, by_key[result.config["run"]["key"]])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ERROR_FILE).write_text(str(result.error))
    # With Tune's SIGINT handler (TUNE_DISABLE_SIGINT_HANDLER=0), fit() returns early:
    # the runs it stopped have neither a row nor an error.
    _interrupted(save_dir, store, workload, todo, recorder, failed)
    recorder.close(failed=bool(failed))
    for result in failed:  # a bad value found while reading is bad input: exit code 2
        if found := re.findall(r"\bBadData: (.+)", str(result.error)):
            raise BadData(found[-1])
    if failed:
        first = by_key[failed[0].config["run"]["key"]]
        raise RunsFailed(f"{len(failed)} of {len(todo)} runs failed; {first.name}: "
                         f"{first_error_line(str(failed[0].error))} (all: raycell status "
                         f"{save_dir})")
    return recorder.parent


def fit_tuner(tuner: tune.Tuner, scheduled: bool):
    """``tuner.fit()`` as raycell runs it. Ctrl-C stops at once: Tune's own handler would
    wind its trials down for seconds while they train on (and stay installed after), and
    resuming goes through Train's checkpoints anyway. ``scheduled`` (a scheduler such as
    ASHA decides on a metric that comes only with the epochs that evaluate, CheMoE's
    val_loss every eval_every): Tune's check that every result holds it is off while it
    runs (ASHA lets such results through, docs/facts.md), and the runs it stopped are
    waited for, so their files are final."""
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    with runtime.environ("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1") if scheduled \
            else nullcontext():
        results = tuner.fit()
    if scheduled:
        wait_for_stopped_runs()
    return results


def wait_for_stopped_runs(timeout_s: float = 60.0) -> None:
    """Tune returns before the Ray Train runs of trials a scheduler stopped have ended:
    their workers may train and log an epoch more (docs/facts.md). Wait until this job's
    Train controllers and workers are gone, so that every run's files are final when
    its row is made. Where Ray's State API does not answer, rows are made at once."""
    from ray.util.state import list_actors

    context = ray.get_runtime_context()
    filters = [("state", "=", "ALIVE"), ("job_id", "=", context.get_job_id())]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            alive = list_actors(address=context.gcs_address, filters=filters, limit=10_000)
        except Exception:  # no dashboard, or it does not answer: nothing to wait with
            return
        if not any(actor.class_name in TRAIN_ACTORS for actor in alive):
            return
        time.sleep(0.5)


def _interrupted(save_dir: Path, store: CheckpointStore, workload: Workload,
                 todo: list[GridRun], recorder: GridRecorder, failed: list) -> None:
    """Raise Interrupted if runs of the grid neither finished nor failed. Their
    checkpoints stand, so the same command resumes them."""
    done = finished_keys(save_dir, workload) | {r.config["run"]["key"] for r in failed}
    stopped = [run for run in todo if run.key not in done]
    if not stopped:
        return
    recorder.close(failed=bool(failed), stopped=[run.key for run in stopped])
    raise Interrupted(f"interrupted: {_where_stopped(save_dir, store, stopped)}; run the same "
                      f"command again to resume")


def _where_stopped(save_dir: Path, store: CheckpointStore, stopped: list[GridRun]) -> str:
    """"random-seed0 stopped in epoch 3 of 4 (resumes at epoch 2), ...; 4 runs not
    started", from the runs' epoch logs (an epoch is logged once trained) and their
    last registered checkpoints."""
    said, waiting = [], 0
    for run in stopped:
        log = run_folder(save_dir, run) / EPOCH_LOG
        if not log.is_file() and not store.has(run.train_name()):
            waiting += 1
            continue
        epoch = int(pd.read_csv(log)["epoch"].max()) + 1 if log.is_file() else 1
        try:
            latest = store.latest_checkpoint(run.train_name())
        except (ValueError, KeyError, TypeError):  # cut off mid-write: the rerun says so
            latest = None
        resumes = int(latest["metrics"]["epoch"]) + 1 if latest else 1
        said.append(f"{run.name} stopped in epoch {epoch}"
                    + (f" of {run.epochs}" if run.epochs else "")
                    + (f" (resumes at epoch {resumes})" if resumes != epoch else ""))
    if waiting:
        said.append(f"{waiting} run{'s' * (waiting > 1)} not started")
    return ", ".join(said)


class _Completed:
    """A finished run's rows: summarized for MLflow first, then committed to the CSVs
    (the results file last), so a row is only there once everything else is."""

    def __init__(self, save_dir: Path, workload: Workload, runs: dict[str, GridRun]):
        self.save_dir, self.workload, self.runs = save_dir, workload, runs
        self.records: dict[str, dict[str, pd.DataFrame]] = {}

    def summarize(self, key: str) -> tuple[dict, Path]:
        folder = run_folder(self.save_dir, self.runs[key])
        self.records[key] = self.workload.records(self.runs[key], folder)
        row = self.records[key][self.workload.results_file]
        return json.loads(row.iloc[0].to_json()), folder

    def commit(self, key: str, mlflow_run_id: str) -> None:
        records = self.records.pop(key)
        results = records.pop(self.workload.results_file)
        for name, rows in records.items():
            upsert(self.save_dir / name, rows)
        upsert(self.save_dir / self.workload.results_file,
               results.assign(run_name=self.runs[key].name, mlflow_run_id=mlflow_run_id))
