"""The CheMoE part of a report: CheMoE against its baselines per cell line and fold."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from raycell.chemoe.results import RESULTS_FILE, ChemoeResults, load_chemoe_results
from raycell.core.errors import RaycellError
from raycell.core.html import Section, figure, table, text

METRICS = ("r2_top20", "r2_top40", "r2_top80", "pearson_de")
MODEL_ORDER = ("chemoe", "ridge", "mean_shift", "identity")


def ordered(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows in the report's order: cell line, then CheMoE before the baselines."""
    order = {m: i for i, m in enumerate(MODEL_ORDER)}
    return rows.sort_values(["cell_line", "model", "fold"],
                            key=lambda c: c.map(order) if c.name == "model" else c)


def fold_means(rows: pd.DataFrame) -> pd.DataFrame:
    """The seed's table: per cell line and model, each metric's mean over folds."""
    grouped = rows.groupby(["cell_line", "model"], sort=False)
    table_ = grouped[list(METRICS)].mean().reset_index()
    return table_.assign(folds=grouped.size().to_numpy())


def plot_models(means: pd.DataFrame):
    """Per metric, a group of bars per cell line, one bar per model."""
    lines = list(dict.fromkeys(means["cell_line"]))
    models = list(dict.fromkeys(means["model"]))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.6))
    width = 0.8 / len(models)
    for ax, metric in zip(axes, METRICS, strict=True):
        for i, model in enumerate(models):
            rows = means[means["model"] == model].set_index("cell_line").reindex(lines)
            ax.bar(np.arange(len(lines)) + i * width, rows[metric], width, label=model)
        ax.set_xticks(np.arange(len(lines)) + width * (len(models) - 1) / 2, lines)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("CheMoE against the baselines, mean over folds (higher is better)")
    fig.tight_layout()
    return fig


def expert_usage(results: ChemoeResults) -> pd.DataFrame:
    """Each CheMoE run's share of routing per expert, at its last epoch."""
    usage, rows, curves = [], results.results, results.curves
    for _, row in rows[rows["model"] == "chemoe"].iterrows():
        epochs = curves[curves["run_key"] == row["run_key"]]
        if epochs.empty:
            continue
        last = epochs.sort_values("epoch").iloc[-1]
        experts = {c.split("_")[1]: last[c] for c in last.index
                   if c.startswith("expert_") and pd.notna(last[c])}
        usage.append({"run": f"{row['cell_line']}-fold{row['fold']}", **experts})
    return pd.DataFrame(usage)


def plot_usage(usage: pd.DataFrame):
    values = usage.drop(columns="run").to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * values.shape[1], 0.9 + 0.35 * len(usage)))
    shown = ax.imshow(values, cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(values.shape[1]), [f"e{c}" for c in usage.columns[1:]])
    ax.set_yticks(range(len(usage)), usage["run"])
    fig.colorbar(shown, ax=ax, label="share of routing")
    ax.set_title("expert usage at the last epoch")
    fig.tight_layout()
    return fig


def sections(save_dir: Path) -> list[Section]:
    results = load_chemoe_results(save_dir)
    if results.results.empty:
        raise RaycellError(f"{save_dir / RESULTS_FILE} has no finished runs")
    rows = ordered(results.results)
    means = fold_means(rows)
    fmt = {m: "{:.4f}" for m in METRICS}
    out = [
        Section("CheMoE against identity, mean shift and ridge", figure(
            plot_models(means), "CheMoE and baselines per cell line") + text(
            "r2_topk: squared Pearson of true and predicted change over each test sample's "
            "k most changed genes; pearson_de: over all genes; means over samples. Every "
            "model is scored by the same evaluator.")),
        Section("Mean over folds per cell line (the seed's table)", table(means, fmt) + text(
            "identity predicts no change, so its correlation with the true change is "
            "undefined (blank; n_scored 0 in results.csv).")),
        Section("Per cell line and fold", table(
            rows[["cell_line", "fold", "model", "mol_encoder", *METRICS, "n_test", "run_key",
                  *(["mlflow_run_id"] if "mlflow_run_id" in rows else [])]], fmt)),
    ]
    usage = expert_usage(results)
    if not usage.empty:
        out.append(Section("Expert usage", figure(plot_usage(usage), "expert usage") +
                           table(usage, {c: "{:.3f}" for c in usage.columns[1:]})))
    return out
