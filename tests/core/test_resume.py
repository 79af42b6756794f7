"""Kill and resume, as a user meets it: the CLI killed with SIGKILL (its whole process
group) after a checkpoint, then the same command again. The resumed run continues at
the epoch after its last checkpoint and ends with an uninterrupted run's numbers; one
row and one MLflow run per run key, each epoch logged once. Slow: every step is a
fresh CLI process that starts its own local Ray cluster."""

from __future__ import annotations

import re
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

from raycell.core.status import latest_checkpoint
from tests.conftest import kill_after, latest_checkpoint_epoch, run_cli, start_cli, tahoe_yaml

pytestmark = [pytest.mark.ray, pytest.mark.slow]
TIMING = {"train_seconds", "cells_per_s", "samples_per_s", "epoch_seconds", "eval_seconds",
          "startup_seconds", "timestamp", "mlflow_run_id"}


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


@pytest.fixture(scope="module")
def reference(tahoe_dir, tmp_path_factory):
    """Uninterrupted runs of both arms, to compare resumed ones against."""
    root = tmp_path_factory.mktemp("reference")
    config = tahoe_yaml(root / "c.yaml", tahoe_dir, root / "out", 12)
    done = run_cli("tahoe", "--config", str(config), "--strategy", "block_shuffling",
                   "ray_block_shuffle", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "out", config


@pytest.mark.parametrize("strategy", ["block_shuffling", "ray_block_shuffle"])
def test_a_killed_tahoe_run_resumes_where_it_stopped(strategy, reference, tahoe_dir, tmp_path):
    save = tmp_path / "out"
    config = tahoe_yaml(tmp_path / "c.yaml", tahoe_dir, save, 12)
    args = ("tahoe", "--config", str(config), "--strategy", strategy)
    proc = start_cli(*args, log=tmp_path / "killed.log")
    kill_after(proc, lambda: latest_checkpoint_epoch(save) is not None)
    checkpointed = latest_checkpoint_epoch(save)
    assert not (save / "summary.csv").exists()

    again = run_cli(*args, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    resumed = re.search(r"resuming at epoch (\d+) of 12 from the epoch (\d+) checkpoint",
                        again.stdout + again.stderr)
    assert resumed, again.stdout[-3000:]
    assert int(resumed[1]) == checkpointed + 1 >= 2  # not from epoch 1

    summary = pd.read_csv(save / "summary.csv", dtype={"run_key": str})
    expected = pd.read_csv(reference[0] / "summary.csv", dtype={"run_key": str})
    _same_numbers(summary, expected[expected["strategy"] == strategy], ["run_key"])
    curves = pd.read_csv(save / "curves.csv")
    assert sorted(curves["epoch"]) == list(range(1, 13))  # every epoch, once

    runs, client = _child_runs(save, "raycell-tahoe")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    epochs = client.get_metric_history(runs[0].info.run_id, "drug_macro_f1")
    assert sorted(m.step for m in epochs) == list(range(1, 13))  # each epoch logged once


def test_a_killed_grid_skips_finished_runs_and_a_finished_grid_trains_nothing(
        reference, tahoe_dir, tmp_path):
    save = tmp_path / "out"
    arms = {name: {"enabled": name in ("streaming", "block_shuffling", "random")}
            for name in ("streaming", "streaming_buffer", "block_shuffling", "random",
                         "weighted_block", "weighted_true", "ray_streaming", "ray_buffer",
                         "ray_block_shuffle")}
    config = tahoe_yaml(tmp_path / "c.yaml", tahoe_dir, save, 12, strategies=arms)
    args = ("tahoe", "--config", str(config), "--all")
    proc = start_cli(*args, log=tmp_path / "killed.log")
    # Killed once the first arm has its row and the second has a checkpoint.
    kill_after(proc, lambda: (save / "summary.csv").is_file()
                and len(list((save / "ray").glob("*/checkpoint_manager_snapshot.json"))) >= 2)
    first = pd.read_csv(save / "summary.csv")["run_name"].tolist()
    assert len(first) == 1

    started = time.perf_counter()
    again = run_cli(*args, timeout=600)
    rerun_seconds = time.perf_counter() - started
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"skipped {first[0]}" in again.stdout
    summary = pd.read_csv(save / "summary.csv")
    assert sorted(summary["run_name"]) == ["block_shuffling-seed0", "random-seed0",
                                           "streaming-seed0"]
    assert summary["run_key"].is_unique
    assert "resuming at epoch" in again.stdout + again.stderr  # the interrupted one

    started = time.perf_counter()
    finished = run_cli(*args, timeout=600)
    skip_seconds = time.perf_counter() - started
    assert finished.returncode == 0, finished.stderr
    skipped = [line for line in finished.stdout.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 3
    assert "Started a local Ray instance" not in finished.stdout + finished.stderr
    assert skip_seconds < 30 < rerun_seconds or skip_seconds < rerun_seconds / 3
    print(f"rerun after the kill: {rerun_seconds:.0f} s; finished grid: {skip_seconds:.1f} s")


def test_a_killed_chemoe_run_resumes_with_the_same_predictions(pdgrapher_dir, tmp_path):
    def config(save: Path) -> Path:
        path = save.with_suffix(".yaml")
        path.write_text(yaml.safe_dump({
            "data": {"dir": str(pdgrapher_dir)}, "grid": {"cell_lines": ["A549"]},
            "model": {"embed_dim": 8, "hidden_dim": 16},
            "training": {"batch_size": 16, "epochs": 40, "eval_every": 2, "lr": 3e-3},
            "output": {"save_dir": str(save)}}))
        return path

    reference = run_cli("chemoe", "--config", str(config(tmp_path / "ref")), timeout=600)
    assert reference.returncode == 0, reference.stdout + reference.stderr

    save = tmp_path / "out"
    args = ("chemoe", "--config", str(config(save)))
    proc = start_cli(*args, log=tmp_path / "killed.log")
    kill_after(proc, lambda: (latest_checkpoint_epoch(save) or 0) >= 2)
    checkpointed = latest_checkpoint_epoch(save)
    again = run_cli(*args, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resuming at epoch {checkpointed + 1} of 40" in again.stdout + again.stderr

    got = pd.read_csv(save / "results.csv", dtype={"run_key": str})
    want = pd.read_csv(tmp_path / "ref" / "results.csv", dtype={"run_key": str})
    _same_numbers(got, want, ["run_key"])
    key = got["run_key"].iloc[0]
    with np.load(save / "runs" / key / "predictions.npz") as a, \
            np.load(tmp_path / "ref" / "runs" / key / "predictions.npz") as b:
        np.testing.assert_allclose(a["pred"], b["pred"], atol=1e-6)
    runs, client = _child_runs(save, "raycell-chemoe")
    assert len(runs) == 1
    losses = client.get_metric_history(runs[0].info.run_id, "train_loss")
    assert sorted(m.step for m in losses) == list(range(1, 41))


def test_a_killed_worker_restarts_from_the_last_checkpoint(reference, tahoe_dir, tmp_path):
    """Ray Train's own restart (ray.max_failures 1) after one worker process dies."""
    save = tmp_path / "out"
    config = tahoe_yaml(tmp_path / "c.yaml", tahoe_dir, save, 12,
                         ray={"max_failures": 1})
    proc = start_cli("tahoe", "--config", str(config), "--strategy", "block_shuffling",
                  log=tmp_path / "run.log")
    deadline = time.time() + 240
    while latest_checkpoint_epoch(save) is None:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
               if "RayTrainWorker" in " ".join(p.cmdline())]
    assert len(workers) == 1, [p.cmdline() for p in workers]
    workers[0].kill()
    assert proc.wait(timeout=600) == 0, (tmp_path / "run.log").read_text()[-3000:]
    log = (tmp_path / "run.log").read_text()
    assert re.search(r"resuming at epoch ([2-9]|1[0-2]) of 12", log)
    summary = pd.read_csv(save / "summary.csv", dtype={"run_key": str})
    expected = pd.read_csv(reference[0] / "summary.csv", dtype={"run_key": str})
    _same_numbers(summary, expected[expected["strategy"] == "block_shuffling"], ["run_key"])


def test_a_corrupt_checkpoint_is_one_clear_line_and_restart_recovers(tahoe_dir, tmp_path):
    save = tmp_path / "out"
    config = tahoe_yaml(tmp_path / "c.yaml", tahoe_dir, save, 12)
    args = ("tahoe", "--config", str(config), "--strategy", "random")
    kill_after(start_cli(*args, log=tmp_path / "killed.log"),
                lambda: latest_checkpoint_epoch(save) is not None)
    train_dir = next((save / "ray").glob("*/"))
    state = train_dir / latest_checkpoint(train_dir)["checkpoint_dir_name"] / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])  # a disk that filled up mid-write

    refused = run_cli(*args, timeout=300)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr[-2000:]
    assert f"checkpoint {state.parent} of random-seed0 is corrupt" in lines[0]
    assert "--restart" in lines[0]
    assert not (save / "summary.csv").exists()

    restarted = run_cli(*args, "--restart", timeout=600)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert "resuming" not in restarted.stdout + restarted.stderr
    assert len(pd.read_csv(save / "summary.csv")) == 1
