"""raycell bench searchers on the session's Ray cluster: random (the trials raycell tune
chemoe draws) and TPE (Optuna through Tune) over the same space under the same ASHA, with
the summary recomputed from the trials' epoch logs."""

import pandas as pd
import pytest
import yaml

from raycell.chemoe.bench_searchers import RESULTS_FILE, summary
from raycell.chemoe.search import draw_trials
from raycell.core.layout import EPOCH_LOG, run_dir
from tests.conftest import assert_clean_error, run_main, tiny_chemoe_config

pytestmark = pytest.mark.ray
SPACE = {"training.lr": {"loguniform": [1e-4, 3e-2]}, "model.num_experts": {"choice": [2, 4]}}


@pytest.fixture(scope="module")
def bench(pdgrapher_dir, tmp_path_factory, ray_address):
    save = tmp_path_factory.mktemp("searchers")
    # eval_every 2: epochs without val_loss, which Ray's own OptunaSearch fails on
    cfg = tiny_chemoe_config(save, **{
        "training.epochs": 4, "training.eval_every": 2, "search.grace_period": 2,
        "search.space": SPACE, "search.samples": 2, "data.dir": str(pdgrapher_dir)})
    config = save.parent / "searchers.yaml"
    # unsorted: the trials are drawn in the space's order
    config.write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    done = run_main("bench", "searchers", "--config", config, "--samples", 2,
                    "--search_seeds", 0, "--save_dir", save)
    assert done.returncode == 0, done.stderr
    return cfg, save, pd.read_csv(save / RESULTS_FILE), done.stdout


def test_random_runs_the_trials_tune_chemoe_draws(bench):
    cfg, _, rows, _ = bench
    random = rows[rows["searcher"] == "random"].sort_values("trial")
    drawn = pd.DataFrame(draw_trials(cfg))
    assert random["model.num_experts"].tolist() == drawn["model.num_experts"].tolist()
    assert random["training.lr"].tolist() == pytest.approx(drawn["training.lr"].tolist())


def test_tpe_starts_at_the_config_s_own_and_draws_inside_the_space(bench):
    cfg, _, rows, _ = bench
    tpe = rows[rows["searcher"] == "tpe"].sort_values("trial")
    assert tpe["trial"].tolist() == [0, 1]
    first = tpe.iloc[0]
    assert (first["training.lr"], first["model.num_experts"]) == (cfg.training.lr,
                                                                  cfg.model.num_experts)
    assert tpe["training.lr"].between(1e-4, 3e-2).all()
    assert tpe["model.num_experts"].isin([2, 4]).all()
    # trial 0 is one run key in both searches, trained once and the same numbers
    random0 = rows[(rows["searcher"] == "random") & (rows["trial"] == 0)].iloc[0]
    assert (first["run_key"], first["best_val_loss"]) == (random0["run_key"],
                                                          random0["best_val_loss"])


def test_the_summary_matches_the_trials_epoch_logs(bench):
    _, save, rows, stdout = bench
    table = summary(rows).set_index("searcher")
    for searcher, group in rows.groupby("searcher"):
        logs = [pd.read_csv(run_dir(save, key) / EPOCH_LOG) for key in group["run_key"]]
        assert table.at[searcher, "epochs"] == sum(int(log["epoch"].max()) for log in logs)
        assert table.at[searcher, "best_val_loss"] == pytest.approx(
            min(log["val_loss"].min() for log in logs))
        assert table.at[searcher, "trials"] == 2
    assert "beat_trial_0" in stdout and (save / "bench_searchers.png").is_file()


@pytest.mark.parametrize(("flags", "culprit"), [
    (["--cell_line", "A549", "MCF7"], "bench searchers takes one --cell_line, not 2"),
    (["--cell_line", "A549", "--epochs", "3", "--grace_period", "5"],
     "search.grace_period 5 is above the 3 epochs"),
])
def test_bad_benches_are_one_line_and_write_nothing(tmp_path, pdgrapher_dir, flags, culprit):
    save = tmp_path / "out"
    done = run_main("bench", "searchers", "--data", pdgrapher_dir, "--save_dir", save, *flags)
    assert_clean_error(done, culprit, save)
