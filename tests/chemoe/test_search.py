"""raycell tune chemoe on the session's Ray cluster: seeded trials under ASHA (trial 0 the
config's own), a row per trial saying finished or stopped early, MLflow children marked
so, the best and the config's own confirmed over seeds, the lower mean written as a file
raycell chemoe takes, a rerun that trains nothing, and a killed search rerun."""

import os

import mlflow
import pandas as pd
import pytest
import yaml

from raycell.chemoe.config import load_chemoe_config
from raycell.chemoe.inputs import prepare_inputs
from raycell.chemoe.search import SEARCH_FILE, chemoe_search
from tests.conftest import (
    assert_clean_error,
    kill_after,
    run_main,
    start_cli,
    status_of,
    tiny_chemoe_config,
)

pytestmark = pytest.mark.ray
SAMPLES, EPOCHS, REPEATS = 4, 9, 2


def _config(save, samples=SAMPLES, repeats=REPEATS):
    return tiny_chemoe_config(save, **{
        "training.epochs": EPOCHS, "training.eval_every": 1, "search.repeats": repeats,
        "search.samples": samples, "search.grace_period": 1, "search.reduction_factor": 3,
        "search.space": {"training.lr": {"loguniform": [1e-4, 3e-2]},
                         "model.num_experts": {"choice": [2, 4]}},
        "ray.max_concurrent_trials": 1})  # one at a time: ASHA sees every earlier trial


@pytest.fixture(scope="module")
def search(pdgrapher_dir, tmp_path_factory, ray_address):
    save = tmp_path_factory.mktemp("search")
    cfg = _config(save)
    return cfg, save, chemoe_search(cfg, prepare_inputs(cfg, pdgrapher_dir))


def _trials(save, cfg):
    """search.csv's rows of the trials (the config's seed; the others confirm)."""
    on_disk = pd.read_csv(save / SEARCH_FILE)
    return on_disk[on_disk["training.seed"] == cfg.training.seed]


def test_a_row_per_trial_and_asha_stopped_some_early(search):
    cfg, save, rows = search
    on_disk = _trials(save, cfg)
    assert sorted(on_disk["trial"]) == list(range(SAMPLES))
    assert set(on_disk["status"]) <= {"finished", "stopped"}
    finished = on_disk[on_disk["status"] == "finished"]
    stopped = on_disk[on_disk["status"] == "stopped"]
    assert len(finished) >= 1 and len(stopped) >= 1
    assert (finished["epochs"] == EPOCHS).all() and (stopped["epochs"] < EPOCHS).all()
    assert on_disk["epochs"].sum() < SAMPLES * EPOCHS  # ASHA saved epochs
    # Each row counts every epoch its trial trained (a stopped one may train on while Tune
    # stops it), and its best validation loss is its epoch log's lowest.
    for row in on_disk.itertuples():
        log = pd.read_csv(save / "runs" / row.run_key / "epochs.csv")
        assert row.epochs == log["epoch"].max()
        assert row.best_val_loss == pytest.approx(log["val_loss"].min())


def test_trial_0_is_the_config_s_own_setting(search):
    cfg, _, rows = search
    first = rows[rows["trial"] == 0].iloc[0]
    assert first["training.lr"] == pytest.approx(cfg.training.lr)
    assert first["model.num_experts"] == cfg.model.num_experts


def test_mlflow_children_carry_the_trials_settings_and_status(search):
    cfg, save, rows = search
    client = mlflow.MlflowClient(f"sqlite:///{save}/mlflow.db")
    experiment = client.get_experiment_by_name(cfg.output.experiment_name)
    runs = client.search_runs([experiment.experiment_id])
    children = {r.data.tags["run_key"]: r for r in runs if "run_key" in r.data.tags}
    parents = {r.info.run_id: r for r in runs if "run_key" not in r.data.tags}
    assert len(parents) == 2  # the trials under ASHA, then the confirmation
    for parent in parents.values():  # what children set is theirs alone
        assert "search" in parent.data.params
        assert not {"training.lr", "training.seed"} & set(parent.data.params)
    assert sorted(children) == sorted(rows["run_key"])
    for _, row in rows.iterrows():
        child = children[row["run_key"]]
        assert child.data.tags["raycell.status"] == row["status"]
        assert child.data.tags["mlflow.parentRunId"] in parents
        assert float(child.data.params["training.lr"]) == pytest.approx(row["training.lr"])
        assert int(child.data.params["training.seed"]) == row["training.seed"]


def test_the_best_and_the_config_s_own_are_confirmed_and_the_lower_mean_written(search):
    cfg, save, rows = search
    trials = _trials(save, cfg)
    best = int(trials.loc[trials["best_val_loss"].idxmin(), "trial"])
    again = rows[rows["training.seed"] != cfg.training.seed]
    assert sorted(set(again["trial"])) == sorted({best, 0})
    assert (again["training.seed"] == cfg.training.seed + 1).all()
    assert (again["status"] == "finished").all() and (again["epochs"] == EPOCHS).all()
    means = {t: rows.loc[rows["trial"] == t, "best_val_loss"] for t in {best, 0}}
    assert all(len(m) == REPEATS for m in means.values())
    pick = min(means, key=lambda t: means[t].mean())
    table = pd.read_csv(save / "recommendation.csv").set_index("trial")
    assert table["recommended"].sum() == 1 and table["recommended"].idxmax() == pick
    assert table.at[pick, "best_val_loss_mean"] == pytest.approx(means[pick].mean())
    assert table.at[pick, "best_val_loss_std"] == pytest.approx(means[pick].std())
    chosen = trials.set_index("trial").loc[pick]
    written = load_chemoe_config(str(save / "best-A549.yaml"))
    assert written.training.lr == pytest.approx(chosen["training.lr"])
    assert written.model.num_experts == chosen["model.num_experts"]
    assert written.training.seed == cfg.training.seed
    assert written.grid.cell_lines == ["A549"] and written.grid.models == ["chemoe"]
    assert written.model.embed_dim == cfg.model.embed_dim  # the rest as the search ran


def test_a_rerun_trains_nothing(search, pdgrapher_dir, capsys):
    cfg, save, rows = search
    again = chemoe_search(cfg, prepare_inputs(cfg, pdgrapher_dir))
    assert "skipped" in capsys.readouterr().out
    pd.testing.assert_frame_equal(again, rows)


def test_status_and_report_read_a_search_folder(search, tmp_path):
    cfg, save, rows = search
    status = status_of(save)
    assert status["header"].startswith(f"{save}: chemoe-search, {len(rows)} runs:")
    for _, row in rows.iterrows():
        seed = row["training.seed"]
        line = status[f"chemoe-A549-trial{row['trial']}"
                      + (f"-seed{seed}" if seed != cfg.training.seed else "")]
        assert line[0] == row["status"]
        if row["status"] == "stopped":
            assert line[4].startswith(f"{row['epochs']} epoch")
            assert line[4].endswith(f"of {EPOCHS} (ASHA)")
    done = run_main("report", save, "--out", tmp_path / "r.html")
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "r.html").read_text()
    trials = _trials(save, cfg)
    assert "CheMoE search" in page and f"trained {trials['epochs'].sum()} epochs" in page
    assert "Recommendation, confirmed over seeds" in page


def test_a_killed_search_rerun_records_each_trial_once(pdgrapher_dir, tmp_path, ray_address):
    """Killed (SIGKILL, with the cluster it started) once a trial has its row and the next
    has trained an epoch, then run again: the rest resume or start, and each trial has one
    row and one MLflow run whose epochs are each logged once."""
    save, samples = tmp_path / "out", 3
    cfg = _config(save, samples, repeats=1)
    config = tmp_path / "c.yaml"
    settings = cfg.model_dump(mode="json")
    settings["data"]["dir"] = str(pdgrapher_dir)
    config.write_text(yaml.safe_dump(settings))
    proc = start_cli("tune", "chemoe", "--config", str(config), "--save_dir", str(save),
                     log=tmp_path / "killed.log",
                     env=dict(os.environ))
    # Mid-epoch of the next trial (a kill while Tune starts one can outlive kill_after's wait).
    kill_after(proc, lambda: (save / SEARCH_FILE).is_file()
               and len(list(save.glob("runs/*/epochs.csv"))) >= 2)
    assert len(pd.read_csv(save / SEARCH_FILE)) < samples, "killed after the search ended"
    cfg = load_chemoe_config(str(config))  # as the command read it (data.dir: a run key's)
    rows = chemoe_search(cfg, prepare_inputs(cfg, pdgrapher_dir))
    on_disk = pd.read_csv(save / SEARCH_FILE)
    assert sorted(on_disk["trial"]) == list(range(samples))
    client = mlflow.MlflowClient(f"sqlite:///{save}/mlflow.db")
    experiment = client.get_experiment_by_name(cfg.output.experiment_name)
    children = [r for r in client.search_runs([experiment.experiment_id])
                if "run_key" in r.data.tags]
    assert sorted(r.data.tags["run_key"] for r in children) == sorted(rows["run_key"])
    for child in children:
        row = rows.set_index("run_key").loc[child.data.tags["run_key"]]
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "train_loss")]
        assert sorted(steps) == list(range(1, row["epochs"] + 1))


@pytest.mark.parametrize(("search", "flags", "culprit"), [
    ({}, ["--samples", "0"], "search.samples: Input should be greater than or equal to 1"),
    ({"space": {}}, [], "search.space"),
    ({"space": {"training.lr": {"loguniform": [0.1, 0.01]}}}, [], "low 0.1 is not below high"),
    ({"space": {"training.lrr": {"choice": [0.1]}}}, [], "'training.lrr' is not a setting"),
    ({}, ["--grace_period", "5", "--epochs", "3"], "search.grace_period 5 is above the 3 "),
])
def test_bad_searches_are_one_line_and_write_nothing(tmp_path, pdgrapher_dir, search, flags,
                                                      culprit):
    save = tmp_path / "out"
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({"grid": {"cell_lines": ["A549"]}, "search": search}))
    done = run_main("tune", "chemoe", "--config", str(config), "--data", str(pdgrapher_dir),
                    "--save_dir", str(save), *flags)
    assert_clean_error(done, culprit, save)
