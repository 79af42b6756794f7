"""CheMoE end to end on the session's Ray cluster: the four models on a tiny cell line,
results.csv, predictions.npz, checkpoints and MLflow."""

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from raycell.chemoe.grid import chemoe_grid
from raycell.chemoe.inputs import prepare_inputs
from raycell.chemoe.metrics import de_scores
from raycell.chemoe.results import RESULT_COLUMNS
from raycell.core.layout import REPORT_FILE
from tests.conftest import CHEMOE_EPOCHS, CHEMOE_MODELS
from tests.report_html import PNG, column, read_report

pytestmark = pytest.mark.ray
MODELS = CHEMOE_MODELS


@pytest.fixture
def grid(tiny_chemoe_grid):
    return tiny_chemoe_grid


def test_a_results_row_per_model(grid):
    _, save, rows = grid
    on_disk = pd.read_csv(save / "results.csv")
    assert list(on_disk.columns) == [*RESULT_COLUMNS, "run_name", "mlflow_run_id"]
    assert sorted(on_disk["model"]) == sorted(MODELS)
    assert (on_disk["cell_line"] == "A549").all() and (on_disk["fold"] == 0).all()
    by_model = on_disk.set_index("model")
    assert by_model.loc["chemoe", "mol_encoder"] == "kpgt"
    assert by_model.loc["identity", "mol_encoder"] == "none"
    # Identity predicts no change: every sample is skipped, the score is undefined.
    assert by_model.loc["identity", "n_scored"] == 0
    assert np.isnan(by_model.loc["identity", "r2_top20"])
    for model in ("chemoe", "mean_shift", "ridge"):
        assert by_model.loc[model, "n_scored"] == by_model.loc[model, "n_test"] > 0
        assert 0 <= by_model.loc[model, "r2_top20"] <= 1


def test_metrics_recomputed_from_predictions_match_results(grid):
    _, save, _ = grid
    for row in pd.read_csv(save / "results.csv").itertuples():
        with np.load(save / "runs" / row.run_key / "predictions.npz") as npz:
            assert set(npz.files) == {"pred", "treated", "diseased", "sample_index", "drug",
                                      "cell_line"}
            scores = de_scores(npz["pred"], npz["treated"], npz["diseased"])
            assert len(npz["pred"]) == row.n_test == len(npz["sample_index"])
            assert (npz["cell_line"] == "A549").all()
        for metric in ("r2_top20", "r2_top40", "r2_top80", "pearson_de"):
            assert scores[metric] == pytest.approx(getattr(row, metric), nan_ok=True)


def test_checkpoints_and_mlflow_record_the_chemoe_run(grid):
    cfg, save, rows = grid
    key = rows.set_index("model").loc["chemoe", "run_key"]
    run_dir = save / "runs" / key
    best, final = (torch.load(run_dir / f, weights_only=True) for f in ("best.pt", "final.pt"))
    assert best.keys() == final.keys() and "gene_embedding" in best

    # A client on this store only: mlflow.set_tracking_uri would also set
    # MLFLOW_TRACKING_URI for the process and send later tests' runs here.
    client = mlflow.MlflowClient(f"sqlite:///{save}/mlflow.db")
    experiment = client.get_experiment_by_name(cfg.output.experiment_name)
    runs = {r.data.tags["model"]: r for r in client.search_runs([experiment.experiment_id])
            if "run_key" in r.data.tags}
    assert sorted(runs) == sorted(MODELS)
    run = runs["chemoe"]
    assert run.data.tags["run_key"] == key and run.info.run_name == "chemoe-A549-fold0"
    val = client.get_metric_history(run.info.run_id, "val_loss")
    # Every eval_every (2) epochs, and always the last epoch.
    assert [m.step for m in val] == list(range(2, CHEMOE_EPOCHS + 1, 2))
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == CHEMOE_EPOCHS
    assert client.get_metric_history(run.info.run_id, "expert_0_usage")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"best.pt", "final.pt", "predictions.npz"} <= artifacts
    # The best checkpoint is chosen by validation loss.
    best_epoch = min(val, key=lambda m: m.value).step
    assert run.data.metrics["test_best_epoch"] == best_epoch
    assert run.data.params["training.lr"] == str(cfg.training.lr)
    # Baselines log their test scores too.
    assert runs["ridge"].data.metrics["test_r2_top20"] == pytest.approx(
        rows.set_index("model").loc["ridge", "r2_top20"])


def test_rerunning_a_finished_run_key_skips_it(grid, pdgrapher_dir, capsys):
    cfg, save, rows = grid
    again = cfg.model_copy(deep=True)
    again.grid.models = ["identity"]
    before = (save / "results.csv").read_text()
    got = chemoe_grid(again, prepare_inputs(again, pdgrapher_dir))
    assert "skipped identity-A549-fold0" in capsys.readouterr().out
    assert (save / "results.csv").read_text() == before
    assert list(got["model"]) == ["identity"]


def test_the_grid_writes_a_report_of_models_per_cell_line_and_fold(grid):
    _, save, _ = grid
    report = read_report(save / REPORT_FILE)
    assert report.outside == []
    assert report.headings == ["CheMoE against identity, mean shift and ridge",
                               "Mean over folds per cell line (the seed's table)",
                               "Per cell line and fold", "Expert usage"]
    assert len(report.images) == 2 and all(i.startswith(PNG) for i in report.images)
    means, per_fold, usage = report.tables
    assert means[0] == ["cell_line", "model", "r2_top20", "r2_top40", "r2_top80", "pearson_de",
                        "folds"]
    on_disk = pd.read_csv(save / "results.csv").set_index("model")
    shown = dict(zip(column(means, "model"), column(means, "pearson_de"), strict=True))
    assert shown["ridge"] == f"{on_disk.at['ridge', 'pearson_de']:.4f}"
    assert shown["identity"] == ""  # undefined, not zero
    assert sorted(column(per_fold, "mlflow_run_id")) == sorted(on_disk["mlflow_run_id"])
    # Routing shares of the one CheMoE run: a share per expert, summing to one.
    (shares,) = [[float(v) for v in row[1:]] for row in usage[1:]]
    assert sum(shares) == pytest.approx(1, abs=2e-3)
