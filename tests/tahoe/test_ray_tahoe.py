"""End to end on the session's Ray cluster: a Tune grid of every strategy, two DDP ranks
each, MLflow in sqlite. Slow-ish (minutes on 2 cores)."""

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from raycell.core.layout import REPORT_FILE
from raycell.tahoe.data.labels import TASKS
from raycell.tahoe.grid import tahoe_grid
from raycell.tahoe.loaders.strategies import STRATEGY_NAMES
from raycell.tahoe.outputs.results import SUMMARY_COLUMNS
from tests.conftest import GRID_EPOCHS as EPOCHS
from tests.conftest import run_cli
from tests.report_html import PNG, column, read_report
from tests.service.processes import chromium

pytestmark = pytest.mark.ray


@pytest.fixture
def grid(tahoe_grid_run):
    return tahoe_grid_run


def test_summary_has_a_row_per_strategy_with_the_seed_columns(grid):
    _, _, save, summary = grid
    on_disk = pd.read_csv(save / "summary.csv")
    assert list(on_disk.columns) == [*SUMMARY_COLUMNS, "run_name", "mlflow_run_id"]
    assert sorted(on_disk["run_name"]) == sorted(f"{s}-seed0" for s in STRATEGY_NAMES)
    assert sorted(on_disk["strategy"]) == sorted(STRATEGY_NAMES)
    assert (on_disk["epochs"] == EPOCHS).all()
    assert (on_disk["train_seconds"] > 0).all() and (on_disk["cells_per_s"] > 0).all()
    for task in TASKS:
        assert on_disk[f"{task}_macro_f1"].between(0, 1).all()
    assert on_disk["cell_line_accuracy"].min() > 0.6  # the easy task is learnt by every strategy


def test_settings_name_every_run_key_and_what_went_into_the_model(grid):
    _, _, save, summary = grid
    settings = pd.read_csv(save / "settings.csv", dtype={"run_key": str})
    assert sorted(settings["run_key"]) == sorted(summary["run_key"].astype(str))
    assert (~settings["training.log1p"]).all()  # raw counts, the default
    assert sorted(settings["strategy.name"]) == sorted(STRATEGY_NAMES)


def test_every_epoch_evaluates_the_whole_test_set_once_across_ranks(grid):
    _, inputs, save, _ = grid
    curves = pd.read_csv(save / "curves.csv")
    assert len(curves) == len(STRATEGY_NAMES) * EPOCHS
    assert (curves["test_cells"] == len(inputs.test)).all()
    # Both ranks train: together they see (nearly) the whole training split each epoch.
    assert (curves["train_cells"] > 0.8 * len(inputs.train)).all()
    assert (curves["train_cells"] <= len(inputs.train)).all()


def test_mlflow_has_a_parent_and_one_finished_child_per_strategy(grid):
    cfg, _, save, summary = grid
    client = mlflow.MlflowClient(f"sqlite:///{save}/mlflow.db")
    experiment = client.get_experiment_by_name(cfg.output.experiment_name).experiment_id
    runs = client.search_runs([experiment])
    parents = [r for r in runs if "run_key" not in r.data.tags]
    children = [r for r in runs if "run_key" in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags["raycell.workload"] == "tahoe"
    assert sorted(r.data.tags["strategy"] for r in children) == sorted(STRATEGY_NAMES)
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    assert all(r.info.status == "FINISHED" for r in runs)
    # The summary names each run's MLflow run.
    assert sorted(summary["mlflow_run_id"]) == sorted(r.info.run_id for r in children)
    run = children[0]
    history = client.get_metric_history(run.info.run_id, "drug_macro_f1")
    assert [m.step for m in history] == list(range(1, EPOCHS + 1))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "epochs.csv"} <= artifacts
    assert run.data.params["training.batch_size"] == "16"
    assert run.data.params["strategy"] == run.data.tags["strategy"]  # compare view: a param
    assert str(save) in run.info.artifact_uri  # absolute, beside the results


def test_each_run_records_where_its_ranks_ran(grid):
    """runs/<key>/placement.json: one attempt, both ranks, on this one-node cluster; the
    MLflow run carries the node count."""
    import ray

    cfg, _, save, summary = grid
    nodes = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    for key in summary["run_key"].astype(str):
        entries = json.loads((save / "runs" / key / "placement.json").read_text())
        assert [(e["attempt"], e["rank"], e["first_epoch"]) for e in entries] == [
            (1, 0, 1), (1, 1, 1)]
        assert all(nodes.get(e["node_id"]) == e["node_ip"] for e in entries)
    client = mlflow.MlflowClient(f"sqlite:///{save}/mlflow.db")
    experiment = client.get_experiment_by_name(cfg.output.experiment_name).experiment_id
    children = [r for r in client.search_runs([experiment]) if "run_key" in r.data.tags]
    assert {r.data.tags["raycell.nodes"] for r in children} == {"1"}


def test_the_last_checkpoints_are_kept_under_the_run_key(grid):
    cfg, _, save, summary = grid
    runs = sorted(p.name for p in (save / "ray").iterdir())
    assert runs == sorted(f"{r.run_name}-{r.run_key}" for r in summary.itertuples())
    kept = cfg.output.checkpoints_to_keep
    assert kept < EPOCHS  # one checkpoint an epoch, the oldest removed
    for run in runs:
        assert len(list((save / "ray" / run).glob("checkpoint_*/state.pt"))) == kept


def test_rerunning_finished_strategies_trains_nothing_and_says_so(grid, capsys):
    cfg, inputs, save, summary = grid
    before = (save / "summary.csv").read_text()
    again = tahoe_grid(cfg, inputs, ["block_shuffling", "random"])
    said = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in said if line.startswith("skipped")] == [
        "block_shuffling-seed0", "random-seed0"]
    assert (save / "summary.csv").read_text() == before
    assert sorted(again["strategy"]) == ["block_shuffling", "random"]


def test_restart_trains_again_and_replaces_row_and_mlflow_run(grid):
    cfg, inputs, save, summary = grid
    old = summary.set_index("strategy").loc["random", "mlflow_run_id"]
    again = tahoe_grid(cfg, inputs, ["random"], restart=True)
    on_disk = pd.read_csv(save / "summary.csv")
    assert len(on_disk) == len(STRATEGY_NAMES) and on_disk["run_key"].is_unique
    assert len(pd.read_csv(save / "curves.csv")) == len(STRATEGY_NAMES) * EPOCHS
    new = again.set_index("strategy").loc["random", "mlflow_run_id"]
    assert new != old
    client = mlflow.MlflowClient(f"sqlite:///{save}/mlflow.db")
    experiment = client.get_experiment_by_name(cfg.output.experiment_name).experiment_id
    keyed = client.search_runs([experiment], "tags.strategy = 'random'")
    assert [r.info.run_id for r in keyed] == [new]  # the old one is deleted, not doubled
    # Same settings, same numbers: a restart reproduces the run.
    for metric in ("drug_macro_f1", "cell_line_accuracy", "moa_fine_weighted_f1"):
        assert again[metric].iloc[0] == pytest.approx(
            summary.set_index("strategy").loc["random", metric], abs=1e-6)


def test_figures_are_written_from_the_results(grid):
    from raycell.tahoe.outputs.plots import write_figures

    _, _, save, _ = grid
    paths = write_figures(save)
    assert {p.name for p in paths} >= {"comparison.png", "time.png", "curves_drug.png"}
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_the_grid_writes_a_self_contained_report_of_every_run(grid):
    _, _, save, _ = grid
    report = read_report(save / REPORT_FILE)
    assert report.outside == []  # opens from disk, offline
    assert report.headings[:4] == [
        "Which strategy: macro F1 against training time",
        "Summary per strategy (mean ± sd over seeds)", "Every run (macro F1 per task)",
        "Training curves"]
    assert len(report.images) == 2 and all(i.startswith(PNG) for i in report.images)
    per_strategy, every_run, differing, shared = report.tables
    on_disk = pd.read_csv(save / "summary.csv", dtype={"run_key": str})
    assert sorted(column(per_strategy, "strategy")) == sorted(STRATEGY_NAMES)
    by_key = on_disk.set_index("run_key")
    for key, run_id, drug in zip(column(every_run, "run_key"), column(every_run, "mlflow_run_id"),
                                 column(every_run, "drug"), strict=True):
        assert run_id == by_key.at[key, "mlflow_run_id"]
        assert drug == f"{by_key.at[key, 'drug_macro_f1']:.4f}"
    assert differing[0][:2] == ["run_key", "strategy.name"]  # what tells the runs apart
    assert ["training.num_epochs", str(EPOCHS)] in shared


def test_a_report_over_a_grid_and_a_bench_folder_renders_in_chromium(grid, tmp_path):
    _, _, save, _ = grid
    bench = tmp_path / "bench"
    bench.mkdir()
    shutil.copy(Path(__file__).parents[2] / "docs" / "bench_loaders_cold.csv", bench / "bench.csv")
    out = tmp_path / "both.html"
    result = run_cli("report", str(save), str(bench), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"report: {out}"
    report = read_report(out)
    assert report.headings[0] == f"{save.name}: Which strategy: macro F1 against training time"
    assert report.headings[-1].startswith("bench: Loader throughput against batch diversity")
    strategies = column(report.tables[-1], "strategy")
    assert {"block_shuffling", "storage_limit"} <= set(strategies)
    shot = tmp_path / "report.png"
    chromium(f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", out.as_uri(),
             size="1280,1600")
    with Image.open(shot) as image:
        top = np.asarray(image.convert("L").crop((0, 0, 1280, 600)))
    assert (top < 128).mean() > 0.005  # the title and the first figure are drawn, not blank
