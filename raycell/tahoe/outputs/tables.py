"""The summary table printed at the end of a run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from raycell.tahoe.data.labels import TASKS

SHOWN = ["strategy", "seed", "train_seconds", "cells_per_s"] + [f"{t}_macro_f1" for t in TASKS]


def format_summary(summary: pd.DataFrame) -> str:
    table = summary[SHOWN].rename(columns=lambda c: c.removesuffix("_macro_f1"))
    return table.to_string(
        index=False,
        formatters={
            "train_seconds": "{:.1f}".format,
            "cells_per_s": "{:,.0f}".format,
            **{t: "{:.4f}".format for t in TASKS},
        },
    )


def print_summary(summary: pd.DataFrame, save_dir: str, log1p: bool) -> None:
    inputs = "log1p counts" if log1p else "raw counts"
    print(f"\nmacro F1 per task on the test plates ({inputs} into the model); "
          "time and throughput of training:")
    print(format_summary(summary))
    print(f"\nsummary: {Path(save_dir).resolve() / 'summary.csv'}")
