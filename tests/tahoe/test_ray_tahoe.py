"""End to end on a real local Ray cluster: Tune grid of the six strategies, two DDP ranks each,
MLflow in sqlite. One cluster for the module; slow-ish (minutes on 2 cores)."""

import mlflow
import pandas as pd
import pytest
import ray

from raycell.tahoe.config import STRATEGY_NAMES
from raycell.tahoe.grid import run_grid
from raycell.tahoe.inputs import load_tahoe_inputs
from raycell.tahoe.labels import TASKS
from raycell.tahoe.results import SUMMARY_COLUMNS
from tests.conftest import tiny_config

pytestmark = pytest.mark.ray
EPOCHS = 2


@pytest.fixture(scope="module")
def grid(tahoe_dir, tmp_path_factory):
    save = tmp_path_factory.mktemp("grid")
    cfg = tiny_config(tahoe_dir, save, **{"training.num_epochs": EPOCHS, "ray.num_workers": 2,
                                          "training.learning_rate": 0.02})
    inputs = load_tahoe_inputs(cfg)
    summary = run_grid(cfg, inputs, list(STRATEGY_NAMES))
    yield cfg, inputs, save, summary
    ray.shutdown()


def test_summary_has_a_row_per_strategy_with_the_seed_columns(grid):
    _, _, save, summary = grid
    on_disk = pd.read_csv(save / "summary.csv")
    assert list(on_disk.columns) == SUMMARY_COLUMNS
    assert sorted(on_disk["strategy"]) == sorted(STRATEGY_NAMES)
    assert (on_disk["epochs"] == EPOCHS).all()
    assert (on_disk["train_seconds"] > 0).all() and (on_disk["cells_per_s"] > 0).all()
    for task in TASKS:
        assert on_disk[f"{task}_macro_f1"].between(0, 1).all()
    assert on_disk["cell_line_accuracy"].min() > 0.6  # the easy task is learnt by every arm


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


def test_mlflow_has_one_finished_run_per_strategy_with_curves_and_summary(grid):
    cfg, _, save, _ = grid
    mlflow.set_tracking_uri(f"sqlite:///{save}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=[cfg.output.experiment_name])
    assert sorted(runs["tags.strategy"]) == sorted(STRATEGY_NAMES)
    assert (runs["status"] == "FINISHED").all()
    client = mlflow.tracking.MlflowClient()
    run_id = runs["run_id"].iloc[0]
    history = client.get_metric_history(run_id, "drug_macro_f1")
    assert [m.step for m in history] == list(range(1, EPOCHS + 1))
    assert "summary.json" in [a.path for a in client.list_artifacts(run_id)]
    assert runs["params.training.batch_size"].eq("16").all()
    assert str(save) in runs["artifact_uri"].iloc[0]  # absolute, beside the results


def test_a_checkpoint_per_epoch_is_kept(grid):
    _, _, save, _ = grid
    runs = list((save / "ray").iterdir())
    assert len(runs) == len(STRATEGY_NAMES)
    for run in runs:
        assert len(list(run.glob("checkpoint_*/model.pt"))) == EPOCHS


def test_rerunning_a_strategy_replaces_its_row(grid):
    cfg, inputs, save, _ = grid
    run_grid(cfg, inputs, ["block_shuffling"])
    summary = pd.read_csv(save / "summary.csv")
    assert len(summary) == len(STRATEGY_NAMES)
    assert len(pd.read_csv(save / "curves.csv")) == len(STRATEGY_NAMES) * EPOCHS


def test_figures_are_written_from_the_results(grid):
    from raycell.tahoe.plots import write_figures

    _, _, save, _ = grid
    paths = write_figures(save)
    assert {p.name for p in paths} >= {"comparison.png", "time.png", "curves_drug.png"}
    assert all(p.stat().st_size > 10_000 for p in paths)
