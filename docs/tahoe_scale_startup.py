"""Start-up and memory of every strategy on the tahoe_scale data (docs/benchmarks.md).

    raycell data tahoe --profile tahoe_scale --out data/tahoe_scale     # once, ~1 min, 9.5 GB
    python docs/tahoe_scale_startup.py data/tahoe_scale OUT [--strategy NAME ...] [--max_steps N]
    raycell data convert data/tahoe_scale --out data/tahoe_scale_hf    # once, ~4.5 min, 3.2 GB
    python docs/tahoe_scale_startup.py data/tahoe_scale_hf OUT [--strategy ...]       # the shards

For each strategy, one `raycell tahoe --strategy NAME` with the default config (train
plates 1-13, test plate 14) runs as its own command, stopping its epoch after
``--max_steps`` batches and scoring the first 64,000 test cells. While it runs,
every process of its tree (driver, Ray's own, the Tune trial, Ray Train workers,
their DataLoader workers, Ray Data tasks) is sampled every second: resident and
proportional set size (PSS: shared pages split among their sharers, so the sum
is the run's real footprint) and the object store's pages (/dev/shm). The time
from the command to the first training batch comes from the run's epoch log
(``first_batch_at``). For the Ray Data strategies, the planning of an epoch (its read
plan and read tasks over 93M rows) is timed in this process too. Rows go to
OUT/startup.csv, one per strategy.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from raycell.tahoe.loaders.strategies import STRATEGIES, STRATEGY_NAMES  # noqa: E402

GB = 1 << 30


def role(proc: psutil.Process, root: int, trainers: set[int]) -> str:
    if proc.pid == root:
        return "driver"
    cmd = " ".join(proc.cmdline())
    if "RayTrainWorker" in cmd:
        if proc.ppid() in trainers:
            return "dataloader_worker"  # forked by a Train worker: same command line
        trainers.add(proc.pid)
        return "train_worker"
    if "ray::" in cmd:
        return "ray_task_or_actor"  # Tune trial, Ray Data read tasks, split coordinator
    return "ray_system"  # gcs, raylet, dashboard, log monitor


class Sampler(threading.Thread):
    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root, self.stop, self.trainers = root, threading.Event(), set()
        self.peak_rss: dict[str, float] = {}
        self.peak_pss: dict[str, float] = {}
        self.peak_total = self.peak_shm = 0.0
        self.shm0 = shutil.disk_usage("/dev/shm").used

    def run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                tree = [psutil.Process(self.root), *psutil.Process(self.root).children(True)]
            except psutil.NoSuchProcess:
                return
            total = 0.0
            for proc in tree:
                try:
                    mem, name = proc.memory_full_info(), role(proc, self.root, self.trainers)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                total += mem.pss
                self.peak_rss[name] = max(self.peak_rss.get(name, 0), mem.rss)
                self.peak_pss[name] = max(self.peak_pss.get(name, 0), mem.pss)
            self.peak_total = max(self.peak_total, total)
            self.peak_shm = max(self.peak_shm, shutil.disk_usage("/dev/shm").used - self.shm0)


def planning_seconds(data: Path, strategy: str) -> float:
    """One epoch's read plan and read tasks of a Ray Data strategy, over the default train split."""
    import ray

    from raycell.tahoe.config import load_tahoe_config
    from raycell.tahoe.inputs import load_tahoe_inputs
    from raycell.tahoe.loaders.raydata import (
        TahoeDatasource,
        block_bounds,
        bytes_per_row,
        read_plan,
    )

    cfg = load_tahoe_config("default", {data_key(data): str(data)})
    inputs = load_tahoe_inputs(cfg)
    ray.init(num_cpus=4, include_dashboard=False)
    try:
        if inputs.train.parquet and not STRATEGIES[strategy].blocked:  # read_parquet's planning
            from raycell.tahoe.loaders.raydata_parquet import (
                SplitRows,
                shard_dataset,
                shard_shares,
            )

            split_rows = SplitRows(ray.put(inputs.train), inputs.labels)
            started = time.perf_counter()
            shares = shard_shares(inputs.train, 1)
            shard_dataset(inputs.train, split_rows, shares[0], {})
            return time.perf_counter() - started
        split_ref = ray.put(inputs.train)  # done once a run, not each epoch: not timed
        started = time.perf_counter()
        bounds = (block_bounds(inputs.train, cfg.strategies[strategy].block_size)
                  if STRATEGIES[strategy].blocked else None)
        tasks = read_plan(len(inputs.train), cfg.ray_data.read_rows, bounds, 0, 0)[0]
        TahoeDatasource(split_ref, inputs.train.n_vars, bytes_per_row(inputs.train),
                        inputs.labels, tasks).get_read_tasks(1)
        return time.perf_counter() - started
    finally:
        ray.shutdown()


def data_key(data: Path) -> str:
    """A parquet snapshot (data/*.parquet) or h5ad plates."""
    return "data.parquet_dir" if (data / "data").is_dir() else "data.h5ad_dir"


def run_strategy(data: Path, out: Path, strategy: str, max_steps: int) -> dict:
    save = out / strategy
    shutil.rmtree(save, ignore_errors=True)
    command = [sys.executable, "-m", "raycell.cli", "tahoe",
               "--" + data_key(data).removeprefix("data."), str(data),
               "--strategy", strategy, "--max_steps", str(max_steps), "--max_test_cells", "64000",
               "--save_dir", str(save)]
    started = time.time()
    with open(out / f"{strategy}.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        sampler = Sampler(proc.pid)
        sampler.start()
        rc = proc.wait()
        sampler.stop.set()
        sampler.join()
    wall = time.time() - started
    if rc != 0:
        raise SystemExit(f"{strategy}: exit {rc}, see {out / f'{strategy}.log'}")
    epoch = pd.read_csv(next(save.glob("runs/*/epochs.csv"))).iloc[0]
    row = {"strategy": strategy, "kind": STRATEGIES[strategy].kind,
           "first_batch_after_s": epoch["first_batch_at"] - started,
           "loader_start_s": epoch["startup_seconds"], "wall_s": wall,
           "total_pss_gb": sampler.peak_total / GB, "object_store_gb": sampler.peak_shm / GB}
    for name in ("driver", "train_worker", "dataloader_worker", "ray_task_or_actor",
                 "ray_system"):
        row[f"{name}_rss_gb"] = sampler.peak_rss.get(name, 0) / GB
        row[f"{name}_pss_gb"] = sampler.peak_pss.get(name, 0) / GB
    if STRATEGIES[strategy].kind == "ray_data":
        row["planning_s"] = planning_seconds(data, strategy)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--strategy", nargs="+", default=list(STRATEGY_NAMES))
    parser.add_argument("--max_steps", type=int, default=20)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for strategy in args.strategy:
        rows.append(run_strategy(args.data.resolve(), args.out.resolve(), strategy, args.max_steps))
        print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in rows[-1].items()), flush=True)
        pd.DataFrame(rows).to_csv(args.out / "startup.csv", index=False)


if __name__ == "__main__":
    main()
