"""Kill and resume, as a user meets it: the CLI stopped with Ctrl-C (SIGINT to its process
group, as a terminal sends it: a Tahoe grid) or killed with SIGKILL (a CheMoE run) after
a checkpoint, then the same command again. The resumed run continues at the epoch after
its last checkpoint and ends with an uninterrupted run's numbers; one row and one MLflow
run per run key, each epoch logged once. (Ray Train's own restart after a lost worker,
ray.max_failures, is tested with a node lost: tests/service/test_multinode.py.)

The stopped runs start their own local Ray cluster, so that the signal takes the whole
cluster with it; the uninterrupted references run in-process and the reruns join the
session's cluster. Slow: every stopped run is a fresh CLI process and Ray cluster."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from raycell.core.storage import checkpoint_store
from tests.conftest import (
    CHEMOE_EPOCHS,
    REFERENCE_EPOCHS,
    joined,
    kill_after,
    latest_checkpoint_epoch,
    run_cli,
    start_cli,
    status_of,
    tahoe_yaml,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]
TIMING = {"train_seconds", "cells_per_s", "samples_per_s", "epoch_seconds", "eval_seconds",
          "startup_seconds", "timestamp", "mlflow_run_id"}
EPOCHS = REFERENCE_EPOCHS


def _same_numbers(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> None:
    a, b = a.set_index(keys).sort_index(), b.set_index(keys).sort_index()
    assert list(a.index) == list(b.index)
    for column in a.columns:
        if column in TIMING:
            continue
        if pd.api.types.is_numeric_dtype(a[column]):
            np.testing.assert_allclose(a[column], b[column], atol=1e-6, equal_nan=True,
                                       err_msg=column)
        else:
            assert list(a[column]) == list(b[column]), column


def _child_runs(save: Path, experiment: str) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{save}/mlflow.db")
    exp = client.get_experiment_by_name(experiment).experiment_id
    return [r for r in client.search_runs([exp]) if "run_key" in r.data.tags], client


def _resumed_like_the_reference(save: Path, reference: pd.DataFrame, strategy: str,
                                output: str) -> None:
    """A resumed run: from epoch 2 or later, the reference's numbers, every epoch once in
    curves.csv and in its one MLflow run."""
    resumed = re.search(rf"{strategy}-seed0: resuming at epoch (\d+) of {EPOCHS} from the "
                        r"epoch (\d+) checkpoint", output)
    assert resumed and int(resumed[1]) == int(resumed[2]) + 1 >= 2, output[-3000:]
    summary = pd.read_csv(save / "summary.csv", dtype={"run_key": str})
    run = summary[summary["strategy"] == strategy]
    _same_numbers(run, reference[reference["strategy"] == strategy], ["run_key"])
    curves = pd.read_csv(save / "curves.csv", dtype={"run_key": str})
    assert sorted(curves.loc[curves["run_key"] == run["run_key"].iloc[0], "epoch"]) == \
        list(range(1, EPOCHS + 1))  # every epoch, once
    runs, client = _child_runs(save, "raycell-tahoe")
    (child,) = [r for r in runs if r.data.tags["strategy"] == strategy]
    assert child.info.status == "FINISHED"
    epochs = client.get_metric_history(child.info.run_id, "drug_macro_f1")
    assert sorted(m.step for m in epochs) == list(range(1, EPOCHS + 1))  # each logged once


def test_ctrl_c_stops_a_grid_on_one_line_and_the_same_command_skips_resumes_and_starts(
        tahoe_reference, tahoe_dir, tmp_path, ray_address, stale_ray_record):
    save = tmp_path / "out"
    strategies = {name: {"enabled": name in ("block_shuffling", "random")}
            for name in ("streaming", "streaming_buffer", "block_shuffling", "random",
                         "weighted_block", "weighted_true", "ray_streaming", "ray_buffer",
                         "ray_block_shuffle")}
    config = tahoe_yaml(tmp_path / "c.yaml", tahoe_dir, save, EPOCHS, strategies=strategies)
    args = ("tahoe", "--config", str(config), "--all")
    log = tmp_path / "stopped.log"
    # On a host where a Ray cluster was left behind (its record stale): the run starts a
    # local cluster of its own all the same, and says so. Ctrl-C once the first strategy (in
    # the registry's order, block_shuffling) has a checkpoint; the second has not started.
    # (A run that finished before the signal is kept and skipped like any finished run:
    # the last command below.)
    proc = start_cli(*args, log=log, env=stale_ray_record)
    seen_running = []

    def checkpointed() -> bool:
        # `raycell status` while the run starts (seconds before its first epoch), so
        # that the signal still lands mid-run.
        if not seen_running and any((save / "ray").glob("block_shuffling-seed0-*")):
            seen_running.append(status_of(save).get("block_shuffling-seed0", ["absent"])[0])
        return latest_checkpoint_epoch(save, "block_shuffling") is not None

    kill_after(proc, checkpointed, sig=signal.SIGINT)
    said = log.read_text()
    assert proc.returncode == 130, said[-3000:]
    assert said.startswith("ray: started a local cluster"), said[-3000:]
    assert "Traceback" not in said and said.count("raycell:") == 1, said[-3000:]
    stopped = re.fullmatch(r"raycell: interrupted: block_shuffling-seed0 stopped in epoch "
                           rf"(\d) of {EPOCHS}( \(resumes at epoch \d\))?, 1 run not "
                           r"started; run the same command again to resume",
                           said.strip().splitlines()[-1])
    assert stopped and int(stopped[1]) >= 2, said[-3000:]
    # Nothing half-written: no row, no report, no grid marked running.
    assert not {"summary.csv", "report.html", "running.json"} & {p.name for p in save.iterdir()}
    runs, client = _child_runs(save, "raycell-tahoe")
    assert [(r.info.run_name, r.info.status) for r in runs] == [
        ("block_shuffling-seed0", "KILLED")]
    # `raycell status` saw the stopped run running, and now sees it interrupted.
    assert seen_running == ["running"]
    runs = status_of(save)
    assert sorted(runs) == ["block_shuffling-seed0", "header"]
    state, _, _, mlflow_id, detail = runs["block_shuffling-seed0"]
    assert state == "interrupted" and len(mlflow_id) == 32
    assert "resumes after the epoch" in detail and "checkpoint" in detail

    started = time.perf_counter()
    again = run_cli(*args, timeout=600, env=joined(ray_address))
    rerun_seconds = time.perf_counter() - started
    assert again.returncode == 0, again.stdout + again.stderr
    summary = pd.read_csv(save / "summary.csv")
    assert sorted(summary["run_name"]) == ["block_shuffling-seed0", "random-seed0"]
    assert summary["run_key"].is_unique
    assert "random-seed0: resuming" not in again.stdout  # it had not started
    _resumed_like_the_reference(save, tahoe_reference[0], "block_shuffling", again.stdout)

    started = time.perf_counter()
    finished = run_cli(*args, timeout=600)
    skip_seconds = time.perf_counter() - started
    assert finished.returncode == 0, finished.stderr
    skipped = [line for line in finished.stdout.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 2
    assert "ray:" not in finished.stdout  # no cluster started or joined
    assert skip_seconds < 30 < rerun_seconds or skip_seconds < rerun_seconds / 3
    print(f"rerun after Ctrl-C: {rerun_seconds:.0f} s; finished grid: {skip_seconds:.1f} s")


def test_a_killed_chemoe_run_resumes_with_the_same_predictions(tiny_chemoe_grid, pdgrapher_dir,
                                                               tmp_path, ray_address, head):
    """The CheMoE run of the session's grid (the same settings: the same run key), killed
    with SIGKILL after its second checkpoint and run again. It starts a local cluster of
    its own on a host where another cluster runs (the service tests' head, recorded in
    Ray's temp folder: `ray.init()` without an address would join it)."""
    cfg, reference, _ = tiny_chemoe_grid
    save = tmp_path / "out"
    config = tmp_path / "c.yaml"  # the grid's settings, its CheMoE run only
    settings = cfg.model_dump(mode="json")
    settings["data"]["dir"] = str(pdgrapher_dir)
    settings["grid"]["models"] = ["chemoe"]
    settings["output"]["save_dir"] = str(save)
    config.write_text(yaml.safe_dump(settings))
    args = ("chemoe", "--config", str(config))
    assert (head.temp_dir / "ray_current_cluster").is_file()
    proc = start_cli(*args, log=tmp_path / "killed.log",
                     env={**os.environ, "RAY_TMPDIR": str(head.temp_dir.parent)})
    kill_after(proc, lambda: (latest_checkpoint_epoch(save) or 0) >= 2)
    said = (tmp_path / "killed.log").read_text()
    assert said.startswith("ray: started a local cluster"), said[:500]
    checkpointed = latest_checkpoint_epoch(save)
    # Killed, its grid could not say so: `raycell status` finds its process gone.
    (run,) = [fields for name, fields in status_of(save).items() if name != "header"]
    assert run[0] == "interrupted", run
    again = run_cli(*args, timeout=600, env=joined(ray_address))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resuming at epoch {checkpointed + 1} of {CHEMOE_EPOCHS}" in again.stdout + again.stderr

    got = pd.read_csv(save / "results.csv", dtype={"run_key": str})
    want = pd.read_csv(reference / "results.csv", dtype={"run_key": str})
    _same_numbers(got, want[want["model"] == "chemoe"], ["run_key"])
    key = got["run_key"].iloc[0]
    with np.load(save / "runs" / key / "predictions.npz") as a, \
            np.load(reference / "runs" / key / "predictions.npz") as b:
        np.testing.assert_allclose(a["pred"], b["pred"], atol=1e-6)
    runs, client = _child_runs(save, "raycell-chemoe")
    assert len(runs) == 1
    losses = client.get_metric_history(runs[0].info.run_id, "train_loss")
    assert sorted(m.step for m in losses) == list(range(1, CHEMOE_EPOCHS + 1))


def _interrupted_copy(reference_save: Path, save: Path) -> Path:
    """A results folder holding the reference's block_shuffling Ray Train run (with its
    checkpoints) and no row: a run interrupted after its last checkpoint. Returns the
    state file that run would resume from."""
    (train_dir,) = (reference_save / "ray").glob("block_shuffling-seed0-*/")
    copy = save / "ray" / train_dir.name
    shutil.copytree(train_dir, copy)
    latest = checkpoint_store(save).latest_checkpoint(copy.name)
    return copy / latest["checkpoint_dir_name"] / "state.pt"


@pytest.mark.parametrize("damage", ["truncated", "pickled_objects"])
def test_a_checkpoint_that_cannot_be_loaded_safely_is_one_clear_line(
        tahoe_reference, tahoe_dir, tmp_path, damage):
    """Refused before Ray starts. (`--restart` then forgets the run and trains it from
    scratch, as for any run: tests/tahoe/test_ray_tahoe.py, the restart test.)"""
    save = tmp_path / "out"
    config = tahoe_yaml(tmp_path / "c.yaml", tahoe_dir, save, EPOCHS)
    args = ("tahoe", "--config", str(config), "--strategy", "block_shuffling")
    state = _interrupted_copy(tahoe_reference[1], save)
    if damage == "truncated":  # a disk that filled up mid-write
        state.write_bytes(state.read_bytes()[:1000])
        culprit = f"checkpoint {state.parent} of block_shuffling-seed0 is corrupt"
    else:  # a valid archive whose pickle holds more than tensors: loading it could run code
        torch.save({"rng": np.random.get_state()}, state)
        culprit = (f"checkpoint {state.parent} of block_shuffling-seed0 holds more than "
                   "tensors and plain types")
    refused = run_cli(*args, timeout=300)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr[-2000:]
    assert culprit in lines[0] and "--restart" in lines[0]
    assert not (save / "summary.csv").exists()
