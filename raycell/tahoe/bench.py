"""``raycell bench loaders``: throughput against batch diversity for every way of loading.

Every strategy of the registry (six scDataset, three Ray Data) and three
references (per-row backed access, the seed's AnnCollection path, the
sequential-read limit) produce dense batches on the consumer's device from the
same plates. Each arm runs for a warm-up, then for a fixed time; cells/s and the
mean per-batch entropy of drug and plate labels (bits) are recorded. Every arm is
measured in the same run in this process ("bare") and inside a Ray Train worker
with the same thread budget, so the cost of Ray is a ratio, not a guess. Arms are
measured round-robin for ``rounds`` rounds and the best round counts (as timeit
does): a 2-core VM's hiccups then hit one measurement, not the comparison.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from raycell.core.errors import RaycellError
from raycell.tahoe import references
from raycell.tahoe.arms import ARM_NAMES, ARMS, LoaderSettings
from raycell.tahoe.config import WeightSettings
from raycell.tahoe.inputs import build_labels
from raycell.tahoe.labels import LabelSpace
from raycell.tahoe.plates import TahoeSplit, find_drug_table, find_plates, read_split
from raycell.tahoe.sparse import TahoeRows

REFERENCES = ("per_row_backed", "seed_anncollection", "sequential_limit")
BENCH_ARMS = ARM_NAMES + REFERENCES
WHERE = ("bare", "ray_train")
BENCH_COLUMNS = [
    "arm", "kind", "where", "round", "cells_per_s", "drug_entropy", "plate_entropy", "cells",
    "batches", "seconds", "batch_size", "fetch_factor", "block_size", "num_workers", "threads",
    "device", "n_cells", "n_genes", "nnz_per_cell",
]


@dataclass(frozen=True)
class BenchSettings:
    data: str  # absolute plate directory
    out: str  # absolute output directory
    arms: tuple[str, ...]
    where: tuple[str, ...]
    seconds: float
    warmup_seconds: float
    batch_size: int
    fetch_factor: int
    block_size: int
    num_workers: int
    device: str
    threads: int
    rounds: int = 2
    seed: int = 0


def check_arms(names: list[str]) -> tuple[str, ...]:
    unknown = [n for n in names if n not in BENCH_ARMS]
    if unknown:
        raise RaycellError(f"unknown strategy {unknown[0]!r} (known: {', '.join(BENCH_ARMS)})")
    return tuple(dict.fromkeys(names))


def arm_kind(arm: str) -> str:
    return ARMS[arm].kind if arm in ARMS else "reference"


def load_bench_split(data_dir: Path) -> tuple[TahoeSplit, LabelSpace]:
    """Every plate of ``data_dir`` as one split, labels from its drug table (validated)."""
    paths = list(find_plates(data_dir).values())
    table = find_drug_table(data_dir, None)
    labels = build_labels(paths, table)
    return read_split(paths, labels, None, table), labels


def entropy_bits(codes: np.ndarray) -> float:
    counts = np.bincount(codes)
    p = counts[counts > 0] / codes.size
    return float(-(p * np.log2(p)).sum())


def arm_batches(arm: str, split: TahoeSplit, labels: LabelSpace, s: BenchSettings
                ) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """Endless dense batches (x on the device, split rows) of one arm, epoch after epoch."""
    device = torch.device(s.device)
    if arm == "per_row_backed":
        yield from references.per_row_batches(split, s.batch_size, s.seed, device)
    elif arm == "seed_anncollection":
        yield from references.anncollection_batches(
            split, s.batch_size, s.fetch_factor, s.block_size, s.seed, device)
    elif arm == "sequential_limit":
        yield from references.sequential_batches(
            TahoeRows(split, labels), s.batch_size, s.fetch_factor, device)
    else:
        registered = ARMS[arm]
        epochs = registered.epochs(split, labels, LoaderSettings(
            batch_size=s.batch_size, fetch_factor=s.fetch_factor, num_workers=s.num_workers,
            read_rows=s.batch_size * s.fetch_factor, buffer_rows=s.batch_size * s.fetch_factor,
            block_size=s.block_size if registered.blocked else 1,
            min_count_baseline=WeightSettings().min_count_baseline, seed=s.seed))
        for epoch in range(10**9):
            for batch in epochs(epoch):
                yield batch.dense_on(device, log1p=False)[0], batch.rows


def measure(batches: Iterator[tuple[torch.Tensor, np.ndarray]], drug: np.ndarray,
            plate: np.ndarray, s: BenchSettings) -> dict[str, float]:
    """Warm up, then count cells for ``s.seconds``; diversity over the measured batches."""
    started = time.perf_counter()
    for _ in batches:  # warm-up: at least one batch, then until warmup_seconds have passed
        if time.perf_counter() - started >= s.warmup_seconds:
            break
    cells, drug_h, plate_h = 0, [], []
    started = time.perf_counter()
    for x, rows in batches:
        if x.is_cuda:
            torch.cuda.synchronize()
        cells += x.shape[0]
        drug_h.append(entropy_bits(drug[rows]))
        plate_h.append(entropy_bits(plate[rows]))
        if time.perf_counter() - started >= s.seconds:
            break
    elapsed = time.perf_counter() - started
    return {"cells_per_s": cells / elapsed, "drug_entropy": float(np.mean(drug_h)),
            "plate_entropy": float(np.mean(plate_h)), "cells": cells,
            "batches": len(drug_h), "seconds": elapsed}


def measure_arms(split: TahoeSplit, labels: LabelSpace, s: BenchSettings, where: str,
                 progress=None) -> list[dict]:
    drug = split.codes[:, 1]
    plate = np.repeat(np.arange(len(split.plates)), [p.n_rows for p in split.plates])
    rows = []
    for round_ in range(1, s.rounds + 1):
        for arm in s.arms:
            batches = arm_batches(arm, split, labels, s)
            result = measure(batches, drug, plate, s)
            batches.close()  # stops DataLoader workers and Ray executions of this arm
            rows.append({"arm": arm, "kind": arm_kind(arm), "where": where, "round": round_,
                         **result})
            if progress:
                progress(rows[-1])
    return rows


def _train_worker(config: dict) -> None:
    """Inside a Ray Train worker: the same measurements, written to a JSON file."""
    import ray
    import ray.train

    s = BenchSettings(**config["settings"])
    torch.set_num_threads(s.threads)
    split, labels = ray.get(config["inputs"])
    rows = measure_arms(split, labels, s, "ray_train",
                        progress=lambda r: print(_progress_line(r), flush=True))
    Path(config["result"]).write_text(json.dumps(rows))


def _in_ray_train(split: TahoeSplit, labels: LabelSpace, s: BenchSettings) -> list[dict]:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    result = Path(s.out) / "ray_train_results.json"
    result.unlink(missing_ok=True)
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"settings": asdict(s), "inputs": ray.put((split, labels)),
                           "result": str(result)},
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": s.threads}),
        run_config=RunConfig(name=f"bench-{time.strftime('%Y%m%d-%H%M%S')}",
                             storage_path=str(Path(s.out) / "ray")),
    )
    trainer.fit()
    return json.loads(result.read_text())


def _progress_line(row: dict) -> str:
    return (f"  {row['where']:<9} round {row['round']} {row['arm']:<19}"
            f" {row['cells_per_s']:>11,.0f} cells/s   drug H {row['drug_entropy']:.2f}"
            f"  plate H {row['plate_entropy']:.2f} bits")


def warm_page_cache(split: TahoeSplit) -> None:
    """Read every plate once so that no arm pays for the first read from disk."""
    for path in dict.fromkeys(p.path for p in split.plates):
        with open(path, "rb") as f:
            while f.read(64 << 20):
                pass


def run_bench(s: BenchSettings) -> pd.DataFrame:
    split, labels = load_bench_split(Path(s.data))
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(s.threads)
    warm_page_cache(split)
    nnz = sum(int(p.indptr[-1] - p.indptr[0]) for p in split.plates)
    print(f"bench: {len(split):,} cells x {split.n_vars:,} genes ({nnz / len(split):,.0f} "
          f"non-zeros a cell), batch {s.batch_size}, {len(s.arms)} arms x {list(s.where)}, "
          f"{s.seconds:g} s each after {s.warmup_seconds:g} s warm-up", flush=True)
    rows = []
    if "ray_train" in s.where or any(arm_kind(arm) == "ray_data" for arm in s.arms):
        from ray.data import DataContext

        from raycell.core.config import RaySettings
        from raycell.core.runtime import ensure_ray

        ensure_ray(RaySettings())
        DataContext.get_current().enable_progress_bars = False  # one line per arm instead
    if "bare" in s.where:
        rows += measure_arms(split, labels, s, "bare",
                             progress=lambda r: print(_progress_line(r), flush=True))
    if "ray_train" in s.where:
        rows += _in_ray_train(split, labels, s)
    frame = pd.DataFrame(rows).assign(
        batch_size=s.batch_size, fetch_factor=s.fetch_factor, block_size=s.block_size,
        num_workers=s.num_workers, threads=s.threads, device=s.device, n_cells=len(split),
        n_genes=split.n_vars, nnz_per_cell=round(nnz / len(split), 1),
    )[BENCH_COLUMNS]
    tmp = out / "bench.csv.tmp"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, out / "bench.csv")
    return frame


def best_rounds(frame: pd.DataFrame) -> pd.DataFrame:
    """Each (arm, where) at its fastest round."""
    return frame.loc[frame.groupby(["arm", "where"], sort=False)["cells_per_s"].idxmax()]


def ratios(frame: pd.DataFrame) -> dict[str, float]:
    """The issue's targets as ratios of one run's best rounds (bare process unless named)."""
    frame = best_rounds(frame)
    bare = frame[frame["where"] == "bare"].set_index("arm")
    speed = bare["cells_per_s"]
    out = {}

    def ratio(name: str, a: str, b: str) -> None:
        if a in speed and b in speed:
            out[name] = float(speed[a] / speed[b])

    ratio("block_shuffling / seed_anncollection", "block_shuffling", "seed_anncollection")
    ratio("block_shuffling / per_row_backed", "block_shuffling", "per_row_backed")
    ratio("block_shuffling / sequential_limit", "block_shuffling", "sequential_limit")
    ratio("ray_buffer / streaming_buffer", "ray_buffer", "streaming_buffer")
    if {"ray_buffer", "streaming_buffer"} <= set(bare.index):
        out["ray_buffer - streaming_buffer drug entropy (bits)"] = float(
            bare.at["ray_buffer", "drug_entropy"] - bare.at["streaming_buffer", "drug_entropy"])
    worker = frame[frame["where"] == "ray_train"].set_index("arm")["cells_per_s"]
    for arm in worker.index.intersection(speed.index):
        out[f"{arm}: ray_train / bare"] = float(worker[arm] / speed[arm])
    return out
