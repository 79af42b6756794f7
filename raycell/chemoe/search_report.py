"""A CheMoE search's part of a report: every trial's validation loss by epoch, the ones
ASHA stopped early drawn dashed, and the trials' table (best first)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from raycell.core.errors import RaycellError
from raycell.core.html import Section, figure, table, text
from raycell.core.layout import EPOCH_LOG, run_dir

SEARCH_FILE = "search.csv"
RECOMMENDATION_FILE = "recommendation.csv"
SEED = "training.seed"  # a confirming run's seed; the trials' is the config's
SHOWN_LAST = ["status", "epochs", "max_epochs", "best_val_loss", "best_epoch"]


def plot_trials(rows: pd.DataFrame, save_dir: Path):
    lines = list(dict.fromkeys(rows["cell_line"]))
    fig, axes = plt.subplots(1, len(lines), figsize=(6.5 * len(lines), 4.2), squeeze=False)
    for ax, line in zip(axes[0], lines, strict=True):
        for row in rows[rows["cell_line"] == line].itertuples():
            log = pd.read_csv(run_dir(save_dir, row.run_key) / EPOCH_LOG).dropna(
                subset=["val_loss"])
            ax.plot(log["epoch"], log["val_loss"], marker=".", label=f"trial {row.trial}",
                    ls="--" if row.status == "stopped" else "-")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation loss (log)")
        ax.set_title(f"{line}: dashed = stopped early by ASHA")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def sections(save_dir: Path) -> list[Section]:
    path = Path(save_dir) / SEARCH_FILE
    if not path.is_file():
        raise RaycellError(f"{save_dir} holds no CheMoE search ({SEARCH_FILE} is missing)")
    rows = pd.read_csv(path, dtype={"run_key": str}).sort_values(["cell_line", "best_val_loss"])
    rows = rows[rows[SEED] == rows[SEED].min()]  # the trials; the others confirm two of them
    searched = [c for c in rows if "." in c and c != SEED]
    shown = rows[["cell_line", "trial", *searched, *SHOWN_LAST]]
    trained, full = int(rows["epochs"].sum()), int(rows["max_epochs"].sum())
    body = figure(plot_trials(rows, Path(save_dir)), "validation loss of every trial")
    body += text(f"{len(rows)} trials trained {trained} epochs of the {full} they would "
                 f"without ASHA ({trained / full:.0%}).")
    body += table(shown, {"best_val_loss": "{:.6f}", "training.lr": "{:.2e}",
                          "training.aux_loss_weight": "{:.2e}"})
    sections = [Section("CheMoE search", body)]
    rec = Path(save_dir) / RECOMMENDATION_FILE
    if rec.is_file():
        confirmed = pd.read_csv(rec)
        sections.append(Section("Recommendation, confirmed over seeds", table(
            confirmed, {c: "{:.6f}" for c in confirmed if c.startswith("best_val_loss")})
            + text("Per cell line, the recommended trial is written as "
                   "best-<cell line>.yaml (trial 0: the config's own setting).")))
    return sections
