"""Result rows: one per run key, written with ``core/rows.upsert`` (locked, atomic).

Re-running a config replaces its rows instead of duplicating them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from raycell.core.errors import RaycellError
from raycell.tahoe.data.labels import TASKS

# Per task: macro and weighted F1 with sklearn's (and the seed's) semantics, accuracy, and
# macro F1 over the whole label space (classes absent from the test plates score 0).
TASK_METRICS = ("macro_f1", "weighted_f1", "accuracy", "macro_f1_all_classes")
SUMMARY_COLUMNS = (
    ["strategy", "seed", "epochs", "train_seconds", "cells_per_s", "startup_seconds"]
    + [f"{t}_{m}" for t in TASKS for m in TASK_METRICS]
    + ["run_key"]
)
CURVE_COLUMNS = (
    ["run_key", "strategy", "seed", "epoch", "train_loss", "epoch_seconds", "train_seconds",
     "cells_per_s", "startup_seconds", "train_cells", "eval_seconds", "test_cells"]
    + [f"{t}_{m}" for t in TASKS for m in TASK_METRICS]
)

EPOCH_METRICS = frozenset(CURVE_COLUMNS) - {"run_key", "strategy", "seed", "epoch", "train_cells",
                                            "test_cells"}


def summary_row(strategy: str, seed: int, run_key: str, epochs: pd.DataFrame) -> dict:
    """The summary of one run from its epoch log: scores of the last epoch, throughput over
    all epochs, and the loaders' start-up over all epochs (outside ``train_seconds``)."""
    last = epochs.sort_values("epoch").iloc[-1].to_dict()
    row = {"strategy": strategy, "seed": seed, "epochs": int(last["epoch"]), "run_key": run_key}
    row["train_seconds"] = float(last["train_seconds"])
    row["startup_seconds"] = float(epochs["startup_seconds"].sum())
    row["cells_per_s"] = float(last["train_cells"]) * row["epochs"] / row["train_seconds"]
    for col in SUMMARY_COLUMNS:
        if col not in row:
            row[col] = last[col]
    return {c: row[c] for c in SUMMARY_COLUMNS}


@dataclass(frozen=True)
class TahoeResults:
    summary: pd.DataFrame  # one row per finished (strategy, seed)
    curves: pd.DataFrame  # one row per (strategy, seed, epoch)


def load_tahoe_results(save_dir: str | Path) -> TahoeResults:
    """A Tahoe results folder's tables, as the plots and a notebook take them.

    Parameters
    ----------
    save_dir : str or Path
        A folder ``raycell tahoe`` (or a ``jobs/tahoe_grid.py`` job) wrote.

    Returns
    -------
    TahoeResults
        ``summary`` (summary.csv) and ``curves`` (curves.csv).

    Raises
    ------
    RaycellError
        The folder has no results, or a table lacks a column raycell writes.
    """
    folder = Path(save_dir).expanduser().resolve()
    tables = {}
    for name, columns in (("summary", SUMMARY_COLUMNS), ("curves", CURVE_COLUMNS)):
        path = folder / f"{name}.csv"
        if not path.is_file():
            raise RaycellError(f"{folder} holds no Tahoe results ({path.name} is missing)")
        tables[name] = pd.read_csv(path, dtype={"run_key": str})
        missing = [c for c in columns if c not in tables[name]]
        if missing:
            raise RaycellError(f"{path} lacks column {missing[0]!r}")
    return TahoeResults(**tables)
