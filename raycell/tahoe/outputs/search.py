"""A loader search's tables and its report: the Pareto front of loader cells/s against
drug macro F1, scDataset's suggested setting on it, and the confirmed recommendation."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from raycell.core.errors import RaycellError
from raycell.core.html import Section, figure, table, text

SEARCH_FILE = "search.csv"
RECOMMENDATION_FILE = "recommendation.csv"
# A search row's setting (GridRun tags): what the table shows beside the figures.
SETTING_COLUMNS = ["setting", "strategy", "seed", "block_size", "fetch_factor", "num_workers",
                   "shuffle_buffer_rows", "read_rows"]


def pareto_front(points: pd.DataFrame, x: str = "loader_cells_per_s",
                 y: str = "drug_macro_f1") -> pd.Series:
    """Whether each row is on the front: no other row is at least as good on both
    ``x`` and ``y`` and better on one."""
    xs, ys = points[x].to_numpy(), points[y].to_numpy()
    at_least = (xs[None, :] >= xs[:, None]) & (ys[None, :] >= ys[:, None])
    better = (xs[None, :] > xs[:, None]) | (ys[None, :] > ys[:, None])
    return pd.Series(~(at_least & better).any(axis=1), index=points.index)


def load_search(save_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """search.csv (the first seed's rows: the screen) and recommendation.csv if written."""
    path = Path(save_dir) / SEARCH_FILE
    if not path.is_file():
        raise RaycellError(f"{save_dir} holds no loader search ({SEARCH_FILE} is missing)")
    rows = pd.read_csv(path, dtype={"run_key": str})
    rec = Path(save_dir) / RECOMMENDATION_FILE
    return rows, pd.read_csv(rec) if rec.is_file() else None


def screen_of(rows: pd.DataFrame) -> pd.DataFrame:
    """Each setting's first-seed row, with whether it is on the Pareto front."""
    first = rows[rows["seed"] == rows["seed"].min()].drop_duplicates("setting")
    return first.assign(pareto=pareto_front(first)).reset_index(drop=True)


def plot_front(screen: pd.DataFrame, recommended: str | None):
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, (strategy, group) in enumerate(screen.groupby("strategy", sort=False)):
        ax.scatter(group["loader_cells_per_s"], group["drug_macro_f1"], color=f"C{i % 10}",
                   label=strategy, s=40, zorder=3)
    front = screen[screen["pareto"]].sort_values("loader_cells_per_s")
    ax.step(front["loader_cells_per_s"], front["drug_macro_f1"], where="post", color="k",
            lw=1, alpha=0.6, label="Pareto front")
    for name, marker, label in (("suggested", "*", "scdataset.suggest_parameters()"),
                                ("reference", "D", "reference"),
                                (recommended, "o", "recommended")):
        hit = screen[screen["setting"] == name]
        if len(hit):
            ax.scatter(hit["loader_cells_per_s"], hit["drug_macro_f1"], s=260 if marker == "o"
                       else 160, marker=marker, facecolors="none", edgecolors="k", lw=1.5,
                       label=label, zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel("loader cells/s in a Ray Train worker (log)")
    ax.set_ylabel("drug macro F1 after the short training")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("loader settings: top right is fast and learns the drug")
    fig.tight_layout()
    return fig


def search_sections(save_dir: Path) -> list[Section]:
    rows, rec = load_search(save_dir)
    screen = screen_of(rows)
    recommended = rec.loc[rec["recommended"], "setting"].iloc[0] if rec is not None else None
    shown = screen[[*SETTING_COLUMNS, "loader_cells_per_s", "batch_drug_entropy",
                    "batch_plate_entropy", "train_cells_per_s", "drug_macro_f1",
                    "moa_broad_macro_f1", "moa_fine_macro_f1", "pareto"]] \
        .sort_values("loader_cells_per_s", ascending=False)
    formats = {c: "{:,.0f}" for c in ("loader_cells_per_s", "train_cells_per_s")} | \
        {c: "{:.4f}" for c in shown if c.endswith("f1")} | \
        {c: "{:.2f}" for c in ("batch_drug_entropy", "batch_plate_entropy")}
    body = figure(plot_front(screen, recommended), "Pareto front of loader settings")
    body += text("Each setting on its first seed: the loader alone in a Ray Train worker "
                 "(cells/s, batch entropy in bits), then the short training's test scores.")
    body += table(shown, formats)
    sections = [Section("Loader search", body)]
    if rec is not None:
        figures = {c: "{:.4f}" for c in rec if c.startswith("drug")} | \
            {c: "{:,.0f}" for c in rec if "cells_per_s" in c}
        sections.append(Section("Recommendation, confirmed over seeds", table(rec, figures)
                                + text(f"Written as {Path(save_dir) / 'recommended.yaml'}.")))
    return sections
