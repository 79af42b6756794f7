"""CheMoE's results: one row per finished (cell line, fold, model) in results.csv, and
each CheMoE run's epoch log; the reader a notebook and the report take them with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from raycell.core.errors import RaycellError
from raycell.core.layout import EPOCH_LOG, run_dir

RESULTS_FILE = "results.csv"
SCORES = ("r2_top20", "r2_top40", "r2_top80", "pearson_de", "n_test", "n_scored")
RESULT_COLUMNS = ["model", "cell_line", "fold", "mol_encoder", *SCORES, "run_key", "timestamp"]


@dataclass(frozen=True)
class ChemoeResults:
    results: pd.DataFrame  # one row per finished (cell line, fold, model)
    curves: pd.DataFrame  # one row per (CheMoE run, epoch): run_key and its epochs.csv


def load_chemoe_results(save_dir: str | Path) -> ChemoeResults:
    """A CheMoE results folder's tables, as the report and a notebook take them.

    Parameters
    ----------
    save_dir : str or Path
        A folder ``raycell chemoe`` (or a ``jobs/chemoe_grid.py`` job) wrote.

    Returns
    -------
    ChemoeResults
        ``results`` (results.csv) and ``curves`` (the CheMoE runs' epoch logs; the
        baselines are fitted at once and have none).

    Raises
    ------
    RaycellError
        The folder has no results, or results.csv lacks a column raycell writes.
    """
    folder = Path(save_dir).expanduser().resolve()
    path = folder / RESULTS_FILE
    if not path.is_file():
        raise RaycellError(f"{folder} holds no CheMoE results ({RESULTS_FILE} is missing)")
    results = pd.read_csv(path, dtype={"run_key": str})
    missing = [c for c in RESULT_COLUMNS if c not in results]
    if missing:
        raise RaycellError(f"{path} lacks column {missing[0]!r}")
    logs = [pd.read_csv(log).assign(run_key=key)
            for key in results.loc[results["model"] == "chemoe", "run_key"]
            if (log := run_dir(folder, key) / EPOCH_LOG).is_file()]
    curves = pd.concat(logs, ignore_index=True) if logs else pd.DataFrame(columns=["run_key"])
    return ChemoeResults(results, curves)
