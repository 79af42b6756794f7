"""The seed's plots: per-task macro F1 by strategy, training time, and curves over epochs."""

from __future__ import annotations

from pathlib import Path

# No backend forced: matplotlib falls back to Agg without a display (clusters, CI), and a
# notebook keeps its inline backend, so the same functions draw there.
import matplotlib.pyplot as plt
import pandas as pd

from raycell.tahoe.data.labels import TASKS
from raycell.tahoe.outputs.results import load_tahoe_results


def plot_comparison(summary: pd.DataFrame, title: str = "Strategy comparison"):
    """2x2 grid: macro F1 of each task per strategy (mean and spread over seeds)."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    grouped = summary.groupby("strategy", sort=False)
    for ax, task in zip(axes.flat, TASKS, strict=True):
        col = f"{task}_macro_f1"
        mean, std = grouped[col].mean(), grouped[col].std().fillna(0)
        ax.bar(mean.index, mean.values, yerr=std.values, color="tab:blue", alpha=0.8)
        ax.set_title(task)
        ax.set_ylabel("macro F1")
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle(title)
    fig.tight_layout()
    return fig, axes


def plot_time_comparison(summary: pd.DataFrame):
    """Training time and throughput per strategy."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    grouped = summary.groupby("strategy", sort=False)
    seconds, rate = grouped["train_seconds"].mean(), grouped["cells_per_s"].mean()
    left.bar(seconds.index, seconds.values, color="tab:orange")
    left.set_ylabel("training time (s)")
    right.bar(rate.index, rate.values, color="tab:green")
    right.set_ylabel("cells / s")
    for ax in (left, right):
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig, (left, right)


def plot_training_curves(curves: pd.DataFrame, task: str = "drug"):
    """Test macro F1 of one task after each epoch, one line per strategy and seed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for (strategy, seed), run in curves.groupby(["strategy", "seed"], sort=False):
        ax.plot(run["epoch"], run[f"{task}_macro_f1"], marker="o", label=f"{strategy} ({seed})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{task} macro F1")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, ax


def write_figures(save_dir: Path) -> list[Path]:
    """Figures for a results folder's summary.csv and curves.csv, as PNG files."""
    results = load_tahoe_results(save_dir)
    summary, curves = results.summary, results.curves
    out = Path(save_dir) / "figures"
    out.mkdir(exist_ok=True)
    figures = {
        "comparison.png": plot_comparison(summary)[0],
        "time.png": plot_time_comparison(summary)[0],
        **{f"curves_{t}.png": plot_training_curves(curves, t)[0] for t in TASKS},
    }
    paths = []
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        paths.append(out / name)
    return paths


def plot_bench(bench: pd.DataFrame, path: Path) -> Path:
    """``bench_figure`` as a PNG file."""
    fig = bench_figure(bench)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def bench_figure(bench: pd.DataFrame):
    """Throughput (log) against batch diversity, a panel per cache: the loader choice at a
    glance."""
    colors = {"scdataset": "tab:blue", "ray_data": "tab:orange", "reference": "tab:gray"}
    markers = {("h5ad", "bare"): "o", ("h5ad", "ray_train"): "x",
               ("parquet", "bare"): "s", ("parquet", "ray_train"): "+"}
    caches = list(dict.fromkeys(bench["cache"]))
    fig, axes = plt.subplots(1, len(caches), figsize=(9 * len(caches), 6), squeeze=False,
                             sharey=True)
    first = bench.iloc[0]
    for ax, cache in zip(axes[0], caches, strict=True):
        rows = bench[bench["cache"] == cache]
        for (kind, fmt, where), group in rows.groupby(["kind", "format", "where"]):
            ax.scatter(group["drug_entropy"], group["cells_per_s"], c=colors.get(kind, "k"),
                       marker=markers.get((fmt, where), "s"), label=f"{kind}, {fmt} ({where})",
                       s=50)
        for _, row in rows[rows["where"] == rows["where"].iloc[0]].iterrows():
            name = row["strategy"] + (" (parquet)" if row["format"] == "parquet" else "")
            ax.annotate(name, (row["drug_entropy"], row["cells_per_s"]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_yscale("log")
        ax.set_xlabel("batch diversity: mean per-batch drug entropy (bits)")
        ax.set_title(f"{cache} page cache: batch {first['batch_size']}, "
                     f"{first['n_genes']:,} genes")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(f"cells/s ({first['consumer']} batches at the consumer)")
    fig.tight_layout()
    return fig
