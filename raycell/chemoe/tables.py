"""The results table printed at the end of a CheMoE grid."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def print_chemoe(rows: pd.DataFrame, save_dir: Path) -> None:
    """This invocation's rows of results.csv, one line per run."""
    shown = rows.drop(columns=["run_key", "timestamp", "run_name", "mlflow_run_id"],
                      errors="ignore").sort_values(["cell_line", "fold", "model"])
    print("\ntest split, DE metrics (NaN: no sample has a predicted change to correlate):")
    print(shown.to_string(index=False, float_format="{:.4f}".format))
    print(f"\nresults: {save_dir / 'results.csv'}; runs: {save_dir / 'runs'}")
