"""The Tahoe part of a report: the lesson first, then the table, curves, bench and settings."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from raycell.core.errors import RaycellError
from raycell.core.html import Section, figure, table, text
from raycell.tahoe.data.labels import TASKS
from raycell.tahoe.loaders.strategies import STRATEGIES
from raycell.tahoe.outputs.plots import bench_figure
from raycell.tahoe.outputs.results import load_tahoe_results

KIND_MARKERS = {"scdataset": "o", "ray_data": "s"}
BENCH_SHOWN = ["strategy", "kind", "format", "where", "cache", "cells_per_s", "drug_entropy",
               "plate_entropy"]


def plot_lesson(summary: pd.DataFrame):
    """Macro F1 against training time, a panel per task, one point per strategy (mean over
    seeds, bars: their spread): good and fast strategies sit top left. One legend names
    the points: labels beside them collide where strategies tie (every strategy scores 1.0 on
    cell line)."""
    grouped = summary.groupby("strategy", sort=False)
    seconds = grouped["train_seconds"].agg(["mean", "std"]).fillna(0)
    order = ([a for a in STRATEGIES if a in seconds.index]
             + [s for s in seconds.index if s not in STRATEGIES])
    colors = {strategy: f"C{i % 10}" for i, strategy in enumerate(order)}  # cycle, never run out
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for ax, task in zip(axes.flat, TASKS, strict=True):
        f1 = grouped[f"{task}_macro_f1"].agg(["mean", "std"]).fillna(0)
        for strategy in order:
            kind = STRATEGIES[strategy].kind if strategy in STRATEGIES else ""
            marker = KIND_MARKERS.get(kind, "^")
            ax.errorbar(seconds.at[strategy, "mean"], f1.at[strategy, "mean"],
                        xerr=seconds.at[strategy, "std"], yerr=f1.at[strategy, "std"],
                        fmt=marker, ms=7, color=colors[strategy], capsize=3, label=strategy)
        ax.set_title(task)
        ax.set_ylim(0, 1.05)  # on one scale, streaming's collapse reads at a glance
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("training time (s)")
    for ax in axes[:, 0]:
        ax.set_ylabel("test macro F1")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               title="circles: scDataset\nsquares: Ray Data")
    fig.suptitle("macro F1 against training time: top left is accurate and fast")
    fig.tight_layout()
    return fig


def plot_curves(curves: pd.DataFrame):
    """Per epoch: training loss and each task's test macro F1, a line per run."""
    panels = ["train_loss", *(f"{t}_macro_f1" for t in TASKS)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), sharex=True)
    for (strategy, seed), run in curves.sort_values("epoch").groupby(["strategy", "seed"],
                                                                     sort=False):
        for ax, column in zip(axes, panels, strict=True):
            ax.plot(run["epoch"], run[column], marker="o", ms=3, label=f"{strategy}-seed{seed}")
    for ax, column in zip(axes, panels, strict=True):
        ax.set_title(column.removesuffix("_macro_f1"))
        ax.set_xlabel("epoch")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def strategy_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over seeds per strategy, in the order the strategies ran."""
    rows = []
    for strategy, runs in summary.groupby("strategy", sort=False):
        row = {"strategy": strategy, "seeds": len(runs),
               "train s": _mean_sd(runs["train_seconds"], "{:.1f}"),
               "cells/s": f"{runs['cells_per_s'].mean():,.0f}",
               "start-up s": f"{runs['startup_seconds'].mean():.1f}"}
        for task in TASKS:
            row[f"{task} F1"] = _mean_sd(runs[f"{task}_macro_f1"], "{:.3f}")
        rows.append(row)
    return pd.DataFrame(rows)


def _mean_sd(values: pd.Series, spec: str) -> str:
    mean = spec.format(values.mean())
    return mean if len(values) < 2 else f"{mean} ± {spec.format(values.std())}"


def settings_table(save_dir: Path, keys: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(settings shared by every run: key, value; settings that differ: one row per run)."""
    path = save_dir / "settings.csv"
    if not path.is_file():
        return pd.DataFrame(), pd.DataFrame()
    settings = pd.read_csv(path, dtype={"run_key": str})
    settings = settings[settings["run_key"].isin(keys)]
    columns = [c for c in settings.columns if c != "run_key"]
    same = [c for c in columns if settings[c].astype(str).nunique() == 1]
    shared = pd.DataFrame({"setting": same, "value": [settings[c].iloc[0] for c in same]})
    differing = settings[["run_key", *[c for c in columns if c not in same]]]
    return shared, differing


def bench_section(bench_csv: Path) -> Section:
    from raycell.tahoe.bench.loaders import BENCH_COLUMNS, best_rounds

    bench = pd.read_csv(bench_csv)
    if "format" not in bench:  # written before parquet was benched: h5ad plates
        bench.insert(2, "format", "h5ad")
    missing = [c for c in BENCH_COLUMNS if c not in bench]
    if missing:
        raise RaycellError(f"{bench_csv} lacks column {missing[0]!r}")
    best = best_rounds(bench)
    return Section(f"Loader throughput against batch diversity ({bench_csv})", figure(
        bench_figure(bench), "throughput against batch diversity") + text(
        "Best round of each strategy, cells/s at the consumer; diversity: mean per-batch entropy "
        "(bits) of drug and plate labels.") + table(
        best[BENCH_SHOWN], {"cells_per_s": "{:,.0f}", "drug_entropy": "{:.2f}",
                                    "plate_entropy": "{:.2f}"}))


def sections(save_dir: Path) -> list[Section]:
    """A Tahoe results folder, or a loader bench folder (bench.csv only)."""
    if not (save_dir / "summary.csv").is_file() and (save_dir / "bench.csv").is_file():
        return [bench_section(save_dir / "bench.csv")]
    results = load_tahoe_results(save_dir)
    summary, curves = results.summary, results.curves
    if summary.empty:
        raise RaycellError(f"{save_dir / 'summary.csv'} has no finished runs")
    out = [
        Section("Which strategy: macro F1 against training time", figure(
            plot_lesson(summary), "macro F1 against training time per task") + text(
            "Top left is accurate and fast. Points: mean over seeds; bars: their standard "
            "deviation. Training time starts at each epoch's first step: the loader's "
            "start-up (start-up s below) and evaluation are counted apart.")),
        Section("Summary per strategy (mean ± sd over seeds)", table(strategy_table(summary))),
        Section("Every run (macro F1 per task)", table(
            summary[["strategy", "seed", "epochs", "train_seconds", "cells_per_s",
                     *(f"{t}_macro_f1" for t in TASKS), "run_key",
                     *(["mlflow_run_id"] if "mlflow_run_id" in summary else [])]]
            .rename(columns=lambda c: c.removesuffix("_macro_f1")),
            {"train_seconds": "{:.1f}", "cells_per_s": "{:,.0f}", **{t: "{:.4f}" for t in TASKS}})),
        Section("Training curves", figure(plot_curves(curves), "per-epoch loss and macro F1")),
    ]
    if (save_dir / "bench.csv").is_file():
        out.append(bench_section(save_dir / "bench.csv"))
    shared, differing = settings_table(save_dir, list(summary["run_key"]))
    if not shared.empty:
        body = f"<details><summary>{len(shared)} settings every run shares</summary>" \
            f"{table(shared)}</details>"
        if len(differing.columns) > 1:
            body = table(differing) + body
        out.append(Section("Run settings", body))
    return out
