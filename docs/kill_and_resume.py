"""Kill and resume on the demo config, as docs/resume.md reports it.

    python docs/kill_and_resume.py OUT [--strategy NAME ...] [--chemoe] [--all ROWS]

For each strategy: an uninterrupted run, then the same command killed with SIGKILL
(its whole process group) once its first epoch checkpoint is registered, then that
command again. Prints where the rerun resumed, the largest difference of any metric
from the uninterrupted run, the MLflow runs and epoch logs of the run key, and the
time of rerunning the finished grid. The tests do the same on tiny data
(tests/core/test_resume.py); this is the demo-size figure.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from raycell.core.grid import latest_checkpoint

TIMING = {"train_seconds", "cells_per_s", "mlflow_run_id", "timestamp"}


def cli(*args: str) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "raycell.cli", *args], capture_output=True,
                          text=True)
    if done.returncode:
        sys.exit(f"failed: raycell {' '.join(args)}\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr, time.perf_counter() - started


def checkpointed(save: Path) -> int | None:
    for train_dir in (save / "ray").glob("*/"):
        try:
            latest = latest_checkpoint(train_dir)
        except (ValueError, KeyError):
            continue  # being written
        if latest:
            return int(latest["metrics"]["epoch"])
    return None


def kill_after_checkpoint(args: tuple[str, ...], save: Path) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "raycell.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while checkpointed(save) is None:
        if proc.poll() is not None:
            sys.exit("the run ended before its first checkpoint")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3)  # Ray's processes of that cluster die with their driver
    return checkpointed(save)


def where(resumed: re.Match | None) -> str:
    return f"resumed at epoch {resumed[1]} of {resumed[2]}" if resumed else "DID NOT RESUME"


def largest_difference(a: pd.DataFrame, b: pd.DataFrame) -> float:
    cols = [c for c in a.columns if c not in TIMING and pd.api.types.is_numeric_dtype(a[c])]
    return float(np.nanmax(np.abs(a[cols].to_numpy(float) - b[cols].to_numpy(float))))


def mlflow_record(save: Path, metric: str, key: str) -> tuple[int, list[int]]:
    """MLflow runs of run key ``key``, and the steps ``metric`` was logged at in it."""
    client = mlflow.MlflowClient(f"sqlite:///{save}/mlflow.db")
    runs = [r for e in client.search_experiments()
            for r in client.search_runs([e.experiment_id], f"tags.run_key = '{key}'")]
    steps = sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, metric))
    return len(runs), steps


def tahoe(out: Path, strategy: str) -> None:
    ref, save = out / f"{strategy}-reference", out / f"{strategy}-killed"
    base = ("tahoe", "--config", "demo", "--strategy", strategy)
    _, ref_seconds = cli(*base, "--save_dir", str(ref))
    epoch = kill_after_checkpoint((*base, "--save_dir", str(save)), save)
    log, resume_seconds = cli(*base, "--save_dir", str(save))
    resumed = re.search(r"resuming at epoch (\d+) of (\d+)", log)
    _, again_seconds = cli(*base, "--save_dir", str(save))
    got, want = (pd.read_csv(p / "summary.csv") for p in (save, ref))
    runs, steps = mlflow_record(save, "drug_macro_f1", str(got["run_key"].iloc[0]))
    print(f"{strategy}: killed after the epoch {epoch} checkpoint; rerun "
          f"{where(resumed)}"
          f" ({resume_seconds:.0f} s; uninterrupted {ref_seconds:.0f} s); largest metric "
          f"difference {largest_difference(got, want):.1e}; rows {len(got)}; MLflow runs {runs},"
          f" drug_macro_f1 logged at epochs {steps}; finished rerun {again_seconds:.1f} s")


def whole_grid(out: Path, rows_before_kill: int) -> None:
    """``--all`` killed once some strategies have their rows: the rerun skips those."""
    save = out / "all"
    args = ("tahoe", "--config", "demo", "--all", "--save_dir", str(save))
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "raycell.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    summary = save / "summary.csv"
    while not (summary.is_file() and len(pd.read_csv(summary)) >= rows_before_kill):
        if proc.poll() is not None:
            sys.exit("the grid ended before it could be killed")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_after = time.perf_counter() - started
    time.sleep(3)
    log, rerun_seconds = cli(*args)
    skipped = [line for line in log.splitlines() if line.startswith("skipped")]
    rows = pd.read_csv(summary)
    _, finished_seconds = cli(*args)
    print(f"--all: killed after {killed_after:.0f} s with {rows_before_kill} rows; rerun skipped "
          f"{len(skipped)}, resumed {'an interrupted run' if 'resuming at' in log else 'none'}, "
          f"took {rerun_seconds:.0f} s; summary {len(rows)} rows, run keys unique: "
          f"{rows['run_key'].is_unique}; finished grid rerun {finished_seconds:.1f} s")


def chemoe(out: Path) -> None:
    ref, save = out / "chemoe-reference", out / "chemoe-killed"
    base = ("chemoe", "--config", "demo", "--cell_line", "A549")
    _, ref_seconds = cli(*base, "--save_dir", str(ref))
    epoch = kill_after_checkpoint((*base, "--save_dir", str(save)), save)
    log, resume_seconds = cli(*base, "--save_dir", str(save))
    resumed = re.search(r"resuming at epoch (\d+) of (\d+)", log)
    got, want = (pd.read_csv(p / "results.csv") for p in (save, ref))
    key = got.set_index("model").loc["chemoe", "run_key"]
    with np.load(save / "runs" / key / "predictions.npz") as a, \
            np.load(ref / "runs" / key / "predictions.npz") as b:
        pred = float(np.abs(a["pred"] - b["pred"]).max())
    runs, steps = mlflow_record(save, "train_loss", key)
    print(f"chemoe A549: killed after the epoch {epoch} checkpoint; rerun "
          f"{where(resumed)}"
          f" ({resume_seconds:.0f} s; uninterrupted {ref_seconds:.0f} s); largest test-metric "
          f"difference {largest_difference(got, want):.1e}, prediction difference {pred:.1e};"
          f" MLflow runs {runs}, train_loss logged {len(steps)} times for {steps[-1]} epochs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--strategy", nargs="*", default=["block_shuffling", "ray_block_shuffle"])
    parser.add_argument("--chemoe", action="store_true")
    parser.add_argument("--all", type=int, metavar="ROWS", dest="rows",
                        help="also --all, killed once ROWS strategies have finished")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.strategy:
        tahoe(args.out.resolve(), name)
    if args.chemoe:
        chemoe(args.out.resolve() / "second")
    if args.rows:
        whole_grid(args.out.resolve(), args.rows)
