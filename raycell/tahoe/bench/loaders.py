"""``raycell bench loaders``: throughput against batch diversity for every way of loading.

Every strategy of the registry (six scDataset, three Ray Data) and four references
(per-row backed access, the seed's AnnCollection path, this reader's sequential
limit, and the storage limit: the plate files' bytes read in order) hand batches
to a consumer on the training device, from the same plates. The consumer takes
what training takes: CSR rows (``sparse``, the CPU default) or dense rows
(``dense``: 16 MB a batch at Tahoe's width). Each strategy runs for a warm-up, then for
a fixed time; cells/s and the mean per-batch entropy of drug and plate labels
(bits) are recorded.

Caches: ``warm`` reads every plate once before the strategy, so the page cache serves
it (a CPU figure); ``cold`` evicts every plate from the page cache before the
strategy's warm-up, again before its measured window and after every fetch in it, and
the strategy opens its files afresh. So nothing the OS or HDF5 cached for one strategy helps
the next, and no page read for one fetch serves another, even where a fast strategy
reads the whole bench set more than once in its window (the regime of scDataset's
published figures, and of 314 GB of real Tahoe, which no page cache holds).

Formats: the plates (h5ad), the same cells as parquet shards in the Hugging Face layout
(converted once), or both side by side; or another snapshot, on disk or in object storage
(always cold there). The references read plates only.

Every strategy is measured in this process ("bare") and inside a Ray Train worker with
the same thread budget, so the cost of Ray is a ratio, not a guess. Strategies are
measured round-robin for ``rounds`` rounds and the best round counts (as timeit
does): a 2-core VM's hiccups then hit one measurement, not the comparison.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from raycell.core import page_cache
from raycell.core.rows import write_table
from raycell.tahoe.bench import references
from raycell.tahoe.config import LoaderBenchSettings, WeightSettings
from raycell.tahoe.data.labels import LabelSpace
from raycell.tahoe.data.plates import TahoeSplit, find_drug_table, find_plates, read_split
from raycell.tahoe.data.sparse import SparseBatch, TahoeRows
from raycell.tahoe.inputs import build_labels
from raycell.tahoe.loaders.strategies import STRATEGIES, EpochBatches, LoaderSettings

BENCH_COLUMNS = [
    "strategy", "kind", "format", "where", "cache", "consumer", "round", "cells_per_s",
    "drug_entropy", "plate_entropy", "cells", "batches", "seconds", "resident_before", "batch_size",
    "fetch_factor", "block_size", "num_workers", "threads", "device", "n_cells", "n_genes",
    "nnz_per_cell",
]


def strategy_kind(strategy: str) -> str:
    return STRATEGIES[strategy].kind if strategy in STRATEGIES else "reference"


def load_bench_split(data_dir: Path) -> tuple[TahoeSplit, LabelSpace]:
    """Every plate of ``data_dir`` as one split, labels from its drug table (validated)."""
    paths = list(find_plates(data_dir).values())
    table = find_drug_table(data_dir, None)
    labels = build_labels(paths, table)
    return read_split(paths, labels, None, table), labels


def load_bench_snapshot(s: LoaderBenchSettings) -> tuple[TahoeSplit, LabelSpace]:
    """Every plate of a parquet snapshot as one split: ``s.snapshot`` (a folder, or an
    s3:// / gs:// URI), or the bench's plates converted once into ``<out>/snapshot``."""
    from raycell.tahoe.data.hf_layout import convert_h5ad
    from raycell.tahoe.data.hf_rows import cell_lines, read_parquet_split
    from raycell.tahoe.data.plates import CONTROL_DRUG
    from raycell.tahoe.inputs import open_snapshot

    root = s.snapshot
    if root is None:
        root = str(Path(s.out) / "snapshot")
        if not Path(root).is_dir():
            print(f"bench: converting the plates into {root} (once)", flush=True)
            convert_h5ad(Path(s.data), Path(root))
    root, fs, index, columns, table_path, drugs = open_snapshot(root, None)
    plates = sorted({int(p) for shard in index for p in np.unique(shard.plate)})
    labels = LabelSpace.build(drugs, cell_lines(index, plates), CONTROL_DRUG)
    return read_parquet_split(index, plates, labels, None, table_path, columns, "bench",
                              fs), labels


def plate_of_rows(split: TahoeSplit) -> np.ndarray:
    """Each row's plate: a piece of a parquet split is a (shard, plate), of an h5ad one a plate."""
    plates = [getattr(p, "plate", i) for i, p in enumerate(split.plates)]
    return np.repeat(plates, [p.n_rows for p in split.plates])


def entropy_bits(codes: np.ndarray) -> float:
    counts = np.bincount(codes)
    p = counts[counts > 0] / codes.size
    return float(-(p * np.log2(p)).sum())


HostBatches = Iterator[tuple[sp.csr_array | None, np.ndarray]]


def strategy_batches(strategy: str, split: TahoeSplit, labels: LabelSpace, s: LoaderBenchSettings
                ) -> HostBatches:
    """Endless host batches (CSR rows, split rows) of one strategy, epoch after epoch.

    ``storage_limit`` yields no rows (None): it reads the plates' bytes in order, and
    counts the cells those bytes hold at the plates' mean bytes a cell.
    """
    if strategy == "per_row_backed":
        yield from references.per_row_batches(split, s.batch_size, s.seed)
    elif strategy == "seed_anncollection":
        yield from references.anncollection_batches(
            split, s.batch_size, s.fetch_factor, s.block_size, s.seed)
    elif strategy == "sequential_limit":
        yield from references.sequential_batches(
            TahoeRows(split, labels), s.batch_size, s.fetch_factor)
    elif strategy == "storage_limit":
        yield from references.storage_batches(split, s.batch_size, s.fetch_factor)
    else:
        registered = STRATEGIES[strategy]
        epochs = registered.epochs(split, labels, LoaderSettings(
            batch_size=s.batch_size, fetch_factor=s.fetch_factor, num_workers=s.num_workers,
            read_rows=s.batch_size * s.fetch_factor, buffer_rows=s.batch_size * s.fetch_factor,
            block_size=s.block_size if registered.blocked else 1,
            min_count_baseline=WeightSettings().min_count_baseline, seed=s.seed))
        yield from endless(epochs)


def endless(epochs: EpochBatches, first: int = 0) -> HostBatches:
    """A strategy's host batches epoch after epoch from epoch ``first``; each epoch's
    iterator is closed once done or left (its DataLoader workers, its Ray Data run)."""
    for epoch in itertools.count(first):
        batches = epochs(epoch)
        try:
            for batch in batches:
                yield batch.x, batch.rows
        finally:
            batches.close()


def consume(x: sp.csr_array | None, consumer: str, device: torch.device) -> None:
    """What training does with a host batch before its forward pass (``SparseBatch.on``)."""
    if x is None:
        return
    no_labels = np.zeros((x.shape[0], 0), np.int64)
    SparseBatch(x, no_labels, np.zeros(0, np.int64)).on(device, False, consumer == "sparse")
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(batches: HostBatches, drug: np.ndarray, plate: np.ndarray, s: LoaderBenchSettings,
            cold_files: list[str] | None = None) -> dict[str, float]:
    """Warm up, then count cells for ``s.seconds``; diversity over the measured batches.

    With ``cold_files`` they are evicted before the window and after every fetch in it
    (``s.fetch_factor`` batches): no page read for one fetch serves another, as on 314 GB
    of real Tahoe, while a fast strategy reads the 2.3 GB bench set more than once a window.
    """
    device = torch.device(s.device)
    started, taken = time.perf_counter(), 0
    for x, _ in batches:  # warm-up: at least one batch, then until --warmup seconds have passed
        consume(x, s.consumer, device)
        taken += 1
        if time.perf_counter() - started >= s.warmup:
            break
    if cold_files:
        page_cache.evict(cold_files)
    cells, drug_h, plate_h = 0, [], []
    started = time.perf_counter()
    for x, rows in batches:
        consume(x, s.consumer, device)
        taken += 1
        cells += rows.size
        drug_h.append(entropy_bits(drug[rows]))
        plate_h.append(entropy_bits(plate[rows]))
        if time.perf_counter() - started >= s.seconds:
            break
        if cold_files and taken % s.fetch_factor == 0:  # a fetch boundary (no workers)
            page_cache.evict(cold_files)
    elapsed = time.perf_counter() - started
    return {"cells_per_s": cells / elapsed, "drug_entropy": float(np.mean(drug_h)),
            "plate_entropy": float(np.mean(plate_h)), "cells": cells,
            "batches": len(drug_h), "seconds": elapsed}


def measure_strategies(split: TahoeSplit, labels: LabelSpace, s: LoaderBenchSettings, where: str,
                 progress=None) -> list[dict]:
    from raycell.core.filesystems import is_url

    drug, plate = split.codes[:, 1], plate_of_rows(split)
    files = list(dict.fromkeys(p.path for p in split.plates))
    remote = is_url(files[0])  # object storage: no page cache, every read goes over HTTP
    fmt = "parquet" if split.parquet else "h5ad"
    # The references read h5ad plates by definition; over shards the registry's strategies run.
    strategies = [n for n in s.strategies if fmt == "h5ad" or strategy_kind(n) != "reference"]
    rows = []
    for round_ in range(1, s.rounds + 1):
        for strategy in strategies:
            for cache in ("cold",) if remote else s.caches:
                if remote:
                    resident = float("nan")
                elif cache == "cold":
                    resident = page_cache.evict_settled(files)
                else:
                    page_cache.warm(files)
                    resident = page_cache.resident_fraction(files)
                batches = strategy_batches(strategy, split, labels, s)  # opens its files afresh
                result = measure(batches, drug, plate, s,
                                 cold_files=files if cache == "cold" and not remote else None)
                batches.close()  # stops DataLoader workers and Ray executions of this strategy
                rows.append({"strategy": strategy, "kind": strategy_kind(strategy),
                             "format": fmt, "where": where,
                             "cache": cache, "consumer": s.consumer, "round": round_,
                             **result, "resident_before": resident})
                if progress:
                    progress(rows[-1])
    return rows


def _train_worker(config: dict) -> None:
    """Inside a Ray Train worker: the same measurements, written to a JSON file."""
    import ray
    import ray.train

    s = LoaderBenchSettings.model_validate(config["settings"])
    torch.set_num_threads(s.threads)
    rows = []
    for split, labels in ray.get(config["inputs"]):
        rows += measure_strategies(split, labels, s, "ray_train",
                                   progress=lambda r: print(_progress_line(r), flush=True))
    Path(config["result"]).write_text(json.dumps(rows))


def _in_ray_train(inputs: list[tuple[TahoeSplit, LabelSpace]], s: LoaderBenchSettings
                  ) -> list[dict]:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    result = Path(s.out) / "ray_train_results.json"
    result.unlink(missing_ok=True)
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"settings": s.model_dump(), "inputs": ray.put(inputs),
                           "result": str(result)},
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": s.threads}),
        run_config=RunConfig(name=f"bench-{time.strftime('%Y%m%d-%H%M%S')}",
                             storage_path=str(Path(s.out) / "ray")),
    )
    trainer.fit()
    return json.loads(result.read_text())


def _progress_line(row: dict) -> str:
    return (f"  {row['where']:<9} round {row['round']} {row['cache']:<4} {row['format']:<7} "
            f"{row['strategy']:<19}"
            f" {row['cells_per_s']:>11,.0f} cells/s   drug H {row['drug_entropy']:.2f}"
            f"  plate H {row['plate_entropy']:.2f} bits")


def bench_loaders(settings: LoaderBenchSettings | None = None) -> pd.DataFrame:
    """Measure every strategy's throughput and batch diversity.

    Parameters
    ----------
    settings : LoaderBenchSettings, optional
        What ``raycell bench loaders`` takes as flags; the defaults measure every
        strategy and reference loader on Tahoe-shaped data (made once, 2.2 GB).

    Returns
    -------
    pandas.DataFrame
        One row per (strategy, place, cache, round), as written to ``<out>/bench.csv``
        beside ``bench.png``.
    """
    from raycell.core.config import require_device
    from raycell.tahoe.outputs.plots import plot_bench

    s = settings or LoaderBenchSettings()
    require_device(s.device)
    if s.data is None and s.format == "parquet" and s.snapshot is not None:
        data = None  # the snapshot alone
    elif s.data is None:
        from raycell.tahoe.config import TAHOE_SHAPED
        from raycell.tahoe.data.synthetic import ensure_tahoe

        print("bench: Tahoe-shaped data in data/bench/tahoe-shaped (made once)", flush=True)
        data = ensure_tahoe("data/bench/tahoe-shaped", TAHOE_SHAPED)
    else:
        data = Path(s.data).expanduser().resolve()
    s = s.model_copy(update={"data": data and str(data),
                             "out": str(Path(s.out).expanduser().resolve()),
                             "threads": s.threads or torch.get_num_threads()})
    frame = run_bench(s)
    plot_bench(best_rounds(frame), Path(s.out) / "bench.png")
    return frame


def run_bench(s: LoaderBenchSettings) -> pd.DataFrame:
    inputs = [] if s.format == "parquet" else [load_bench_split(Path(s.data))]
    if s.snapshot is not None and s.format != "h5ad":  # bad input: one line, nothing written
        inputs.append(load_bench_snapshot(s))
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    if s.snapshot is None and s.format != "h5ad":
        inputs.append(load_bench_snapshot(s))
    split = inputs[0][0]
    torch.set_num_threads(s.threads)
    nnz = sum(int(p.indptr[-1] - p.indptr[0]) for p in split.plates) / len(split) \
        if not split.parquet else float("nan")  # shards say it only once decoded
    print(f"bench: {len(split):,} cells x {split.n_vars:,} genes ({nnz:,.0f} "
          f"non-zeros a cell), batch {s.batch_size}, {len(s.strategies)} strategies x "
          f"{list(s.where)} x {list(s.caches)} cache, {s.consumer} batches at the consumer, "
          f"{s.seconds:g} s each after {s.warmup:g} s warm-up", flush=True)
    rows = []
    if "ray_train" in s.where or any(strategy_kind(name) == "ray_data" for name in s.strategies):
        from ray.data import DataContext

        from raycell.core.config import RaySettings
        from raycell.core.runtime import ensure_ray

        if where := ensure_ray(RaySettings()):
            print(where, flush=True)
        DataContext.get_current().enable_progress_bars = False  # one line per strategy instead
    if "bare" in s.where:
        for split_, labels_ in inputs:
            rows += measure_strategies(split_, labels_, s, "bare",
                                       progress=lambda r: print(_progress_line(r), flush=True))
    if "ray_train" in s.where:
        rows += _in_ray_train(inputs, s)
    frame = pd.DataFrame(rows).assign(
        batch_size=s.batch_size, fetch_factor=s.fetch_factor, block_size=s.block_size,
        num_workers=s.num_workers, threads=s.threads, device=s.device, n_cells=len(split),
        n_genes=split.n_vars, nnz_per_cell=round(nnz, 1),
    )[BENCH_COLUMNS]
    write_table(out / "bench.csv", frame)
    return frame


def best_rounds(frame: pd.DataFrame) -> pd.DataFrame:
    """Each (strategy, format, where, cache) at its fastest round."""
    groups = frame.groupby(["strategy", "format", "where", "cache"], sort=False)["cells_per_s"]
    return frame.loc[groups.idxmax()]


def ratios(frame: pd.DataFrame) -> dict[str, float]:
    """The issue's targets as ratios of one run's best rounds, per cache (bare process
    unless named; h5ad unless named)."""
    frame = best_rounds(frame)
    out = {}
    for cache, rows in frame.groupby("cache", sort=False):
        speed = {(f, w): r.set_index("strategy")["cells_per_s"]
                 for (f, w), r in rows.groupby(["format", "where"])}
        bare = rows[(rows["where"] == "bare") & (rows["format"] == "h5ad")].set_index("strategy")
        h5ad = speed.get(("h5ad", "bare"), pd.Series(dtype=float))

        def ratio(a: str, b: str, cache=cache, speed=h5ad) -> None:
            if a in speed and b in speed:
                out[f"{cache}: {a} / {b}"] = float(speed[a] / speed[b])

        for a, b in (("block_shuffling", "per_row_backed"),
                     ("block_shuffling", "seed_anncollection"),
                     ("block_shuffling", "sequential_limit"),
                     ("block_shuffling", "storage_limit"),
                     ("random", "per_row_backed"), ("block_shuffling", "random"),
                     ("ray_block_shuffle", "block_shuffling"),
                     ("ray_buffer", "streaming_buffer")):
            ratio(a, b)
        if {"ray_buffer", "streaming_buffer"} <= set(bare.index):
            out[f"{cache}: ray_buffer - streaming_buffer drug entropy (bits)"] = float(
                bare.at["ray_buffer", "drug_entropy"] - bare.at["streaming_buffer", "drug_entropy"])
        for fmt in ("h5ad", "parquet"):
            worker = speed.get((fmt, "ray_train"), pd.Series(dtype=float))
            alone = speed.get((fmt, "bare"), pd.Series(dtype=float))
            for name in worker.index.intersection(alone.index):
                out[f"{cache}: {fmt} {name}: ray_train / bare"] = float(worker[name] / alone[name])
        # Parquet against h5ad: each strategy, and Ray Data on parquet against block_shuffling.
        for where in ("bare", "ray_train"):
            pq_speed = speed.get(("parquet", where), pd.Series(dtype=float))
            h5_speed = speed.get(("h5ad", where), pd.Series(dtype=float))
            for name in pq_speed.index.intersection(h5_speed.index):
                out[f"{cache} {where}: {name} parquet / h5ad"] = float(pq_speed[name] /
                                                                       h5_speed[name])
            if "ray_block_shuffle" in pq_speed and "block_shuffling" in h5ad:
                out[f"{cache} {where}: ray_block_shuffle parquet / block_shuffling h5ad bare"] = \
                    float(pq_speed["ray_block_shuffle"] / h5ad["block_shuffling"])
    return out
