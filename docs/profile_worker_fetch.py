"""A random (block 1) fetch of 16,384 rows, timed bare and inside a Ray Train worker.

Usage: .venv/bin/python docs/profile_worker_fetch.py [DATA_DIR]  (default: data/bench/tahoe-shaped)
Medians of 6 fetches after one warm-up fetch; bare before and after the worker.
"""

import sys
import time
from pathlib import Path

import numpy as np
import ray
import torch
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from raycell.tahoe.bench.loaders import load_bench_split
from raycell.tahoe.data.sparse import TahoeRows


def fetch_times(split_and_labels, where: str) -> None:
    torch.set_num_threads(2)
    rows = TahoeRows(*split_and_labels)
    rng = np.random.default_rng(0)
    seconds = []
    for _ in range(7):
        idx = np.sort(rng.choice(len(rows), 16_384, replace=False))
        started = time.perf_counter()
        rows[idx]
        seconds.append(time.perf_counter() - started)
    print(f"{where:<9} random fetch: median {np.median(seconds[1:]):.3f} s", flush=True)


def in_worker(config: dict) -> None:
    fetch_times(ray.get(config["inputs"]), "ray_train")


if __name__ == "__main__":
    data = Path(sys.argv[1] if len(sys.argv) > 1 else "data/bench/tahoe-shaped")
    inputs = load_bench_split(data)
    ray.init(num_cpus=4)
    fetch_times(inputs, "bare")
    TorchTrainer(in_worker, train_loop_config={"inputs": ray.put(inputs)},
                 scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 2}),
                 run_config=RunConfig(storage_path="/tmp/raycell-profile")).fit()
    fetch_times(inputs, "bare")
