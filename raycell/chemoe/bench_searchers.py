"""``raycell bench searchers``: Tune's own random search against Optuna's TPE through Tune,
the same CheMoE trials under the same ASHA, side by side.

Each (searcher, search seed) is one Tune run over ``search.samples`` trials of one cell
line, one trial at a time (TPE then draws from every earlier result). Trial 0 of both is
the config's own setting. ``random`` runs the trials ``raycell tune chemoe`` draws up
front (``chemoe/search.py``); ``tpe`` is Ray's ``OptunaSearch`` with Optuna's
``TPESampler`` seeded by the search seed. A trial is the CheMoE run of
``raycell tune chemoe`` (Ray Train, run-keyed files in ``<out>/runs/<key>``). What a run
key has logged in this folder is replayed from its epoch log instead of trained again (a
run key's numbers are the same on every run: docs/benchmarks.md), and a run that had not
finished trains on from its checkpoint: trial 0 trains once for every search, and a
killed bench resumes where it stopped. No MLflow: a bench, not a search of record.

Written: ``bench_searchers.csv`` (a row per trial: searcher, search seed, order, setting,
status, epochs, best validation loss), ``bench_searchers.png`` (the best validation loss
found against epochs trained so far).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import ray
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from raycell.chemoe.config import ChemoeConfig, configured
from raycell.chemoe.inputs import ChemoeInputs
from raycell.chemoe.search import (
    SEARCH_FILE,
    asha,
    draw_trials,
    own_setting,
    trial_records,
    trial_runs,
)
from raycell.chemoe.trial import trial as chemoe_trial
from raycell.chemoe.worker import TEST_METRICS
from raycell.core import runtime
from raycell.core.errors import RaycellError, RunsFailed
from raycell.core.grid import GridRun, fit_tuner
from raycell.core.layout import EPOCH_LOG, RUNS_DIR, TRAIN_DIR, run_dir
from raycell.core.rows import write_table
from raycell.core.search import domain
from raycell.core.status import first_error_line
from raycell.core.storage import checkpoint_store

SEARCHERS = ("random", "tpe")
RESULTS_FILE = "bench_searchers.csv"
FIGURE_FILE = "bench_searchers.png"
NUMBER = "number"  # a trial's place in its search, beside its setting in the config


class _OptunaOnValidation(OptunaSearch):
    """Ray's OptunaSearch reads its metric from every result and fails on one without it
    (KeyError); CheMoE validates every ``eval_every`` epochs, so the others are skipped.
    A trial's number is Optuna's (trial 0: the first point to evaluate)."""

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            config["trial"][NUMBER] = self._ot_trials[trial_id].number
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.metric in result:
            super().on_trial_result(trial_id, result)


def _replay(folder: Path) -> bool:
    """Report the epochs a run has logged in this folder, as its training reported them
    (the metric only where it was evaluated); whether it had finished. A run that had
    not trains on from its checkpoint, as a grid run resumes."""
    log = folder / EPOCH_LOG
    for row in pd.read_csv(log).to_dict("records") if log.is_file() else []:
        tune.report({k: v for k, v in row.items() if not pd.isna(v)})
    return (folder / TEST_METRICS).is_file()


def _run(cfg: ChemoeConfig, data_dir: Path, trial: dict[str, Any]) -> GridRun:
    """The search's run of a trial (``{NUMBER: i, dotted key: value, ...}``)."""
    setting = {k: v for k, v in trial.items() if k != NUMBER}
    (run,) = trial_runs(cfg, data_dir, {(cfg.grid.cell_lines[0], trial[NUMBER]): setting},
                        cfg.training.seed)
    return run


def _trial(config: dict[str, Any]) -> None:
    """One trial: the setting Tune's searcher chose, trained (or replayed) as the search's
    run of that setting."""
    cfg = ChemoeConfig.model_validate(config["cfg"])
    run = _run(cfg, Path(config["data_dir"]), config["trial"])
    folder = run_dir(Path(config["save_dir"]), run.key)
    if not _replay(folder):
        chemoe_trial({**{k: v for k, v in config.items() if k != "trial"},
                      "key": run.key, "name": run.name, "train_name": run.train_name(),
                      "run_dir": str(folder), "epochs": run.epochs, **run.tags})


def _searcher(name: str, cfg: ChemoeConfig, seed: int):
    """The Tune search algorithm and the trials' part of the param space."""
    if name == "random":  # raycell's own: drawn up front, in order
        return None, tune.grid_search([{NUMBER: i, **setting}
                                       for i, setting in enumerate(draw_trials(cfg))])
    space = {key: domain(spec) for key, spec in cfg.search.space.items()}
    return _OptunaOnValidation(
        space={"trial": space}, metric="val_loss", mode="min", seed=seed,
        points_to_evaluate=[{f"trial/{k}": v for k, v in own_setting(cfg).items()}]
        if cfg.search.include_config else None,
    ), None


def run_search(cfg: ChemoeConfig, inputs: ChemoeInputs, searcher: str, seed: int,
               out: Path) -> pd.DataFrame:
    """One search; its trials' rows, in the order Tune started them."""
    cfg = configured(cfg.model_dump(), {"search.seed": seed})
    search_alg, trials = _searcher(searcher, cfg, seed)
    scheduler = asha(cfg)
    store = checkpoint_store(out, cfg.ray.storage_path)
    space = {"cfg": cfg.model_dump(), "data_dir": str(inputs.data_dir), "save_dir": str(out),
             "features": ray.put((inputs.drug_names, inputs.features)), "storage": store.uri}
    if trials is not None:
        space["trial"] = trials
    name = f"{searcher}-seed{seed}"
    tuner = tune.Tuner(
        tune.with_resources(_trial, runtime.driver_bundle(cfg.ray)), param_space=space,
        tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler,
                                    num_samples=1 if trials is not None else cfg.search.samples,
                                    max_concurrent_trials=1),
        run_config=tune.RunConfig(name=name, storage_path=str(out / "tune"), verbose=0))
    results = fit_tuner(tuner, scheduled=True)
    records = trial_records(list(cfg.search.space))
    rows = []
    for result in results:
        if result.error is not None:
            raise RunsFailed(f"{name}: a trial failed: {first_error_line(str(result.error))}")
        run = _run(cfg, inputs.data_dir, result.config["trial"])
        row = records(run, run_dir(out, run.key))[SEARCH_FILE]
        rows.append(row.assign(searcher=searcher, search_seed=seed))
    table = pd.concat(rows).sort_values("trial", ignore_index=True)
    # A stopped trial may train an epoch past ASHA's decision (docs/facts.md): those
    # epochs are counted, as they were paid for.
    return table[["searcher", "search_seed", *table.columns[:-2]]]


def bench_searchers(cfg: ChemoeConfig, inputs: ChemoeInputs, searchers: list[str],
                    seeds: list[int], out: Path, restart: bool = False) -> pd.DataFrame:
    """Every searcher with every search seed; the rows are written as each search ends.
    ``restart``: train every trial again (the bench's own folders in ``out`` go)."""
    if len(cfg.grid.cell_lines) != 1:
        raise RaycellError(f"bench searchers takes one --cell_line, not "
                           f"{len(cfg.grid.cell_lines)}")
    asha(cfg)  # a grace period above the epochs is refused before Ray starts
    if restart:
        for name in (RUNS_DIR, TRAIN_DIR, "tune"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    if where := runtime.ensure_ray(cfg.ray):
        print(where)
    runtime.check_placement(cfg.ray)
    frames = []
    for seed in seeds:
        for searcher in searchers:
            frames.append(run_search(cfg, inputs, searcher, seed, out))
            write_table(out / RESULTS_FILE, pd.concat(frames, ignore_index=True))
    rows = pd.concat(frames, ignore_index=True)
    plot(rows).savefig(out / FIGURE_FILE, dpi=120)
    return rows


def best_so_far(rows: pd.DataFrame) -> pd.DataFrame:
    """Per search, after each drawn trial (all but trial 0, the config's own): the epochs
    trained so far (trial 0's included) and the drawn trials' lowest best validation loss
    so far."""
    ordered = rows.sort_values(["searcher", "search_seed", "trial"])
    by_search = ordered.groupby(["searcher", "search_seed"])
    ordered = ordered.assign(epochs_so_far=by_search["epochs"].cumsum())
    drawn = ordered[ordered["trial"] != 0]
    return drawn.assign(best_so_far=drawn.groupby(["searcher", "search_seed"])
                        ["best_val_loss"].cummin())


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per search: trials, epochs trained, its best validation loss and trial, the best
    of the drawn trials alone (all but trial 0, the config's own), how many of those beat
    trial 0 and how many trained to the end."""
    out = []
    for (searcher, seed), group in rows.groupby(["searcher", "search_seed"], sort=False):
        best = group.loc[group["best_val_loss"].idxmin()]
        default = group.loc[group["trial"] == 0, "best_val_loss"].min()
        drawn = group[group["trial"] != 0]
        out.append({"searcher": searcher, "search_seed": seed, "trials": len(group),
                    "epochs": int(group["epochs"].sum()),
                    "best_val_loss": best["best_val_loss"], "best_trial": int(best["trial"]),
                    "best_drawn": drawn["best_val_loss"].min(),
                    "drawn_finished": int((drawn["status"] == "finished").sum()),
                    "beat_trial_0": int((drawn["best_val_loss"] < default).sum())})
    return pd.DataFrame(out)


def plot(rows: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = dict(zip(SEARCHERS, ("tab:blue", "tab:orange"), strict=True))
    for (searcher, seed), group in best_so_far(rows).groupby(["searcher", "search_seed"]):
        ax.step(group["epochs_so_far"], group["best_so_far"], where="post",
                color=colors.get(searcher), ls=("-", "--", ":", "-.")[seed % 4],
                label=f"{searcher}, search seed {seed}")
    for loss in rows.loc[rows["trial"] == 0, "best_val_loss"].unique():
        ax.axhline(loss, color="black", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("epochs trained, all trials so far")
    ax.set_ylabel("best validation loss of the drawn trials (log)")
    ax.set_title("random (raycell's) against TPE (Optuna through Tune), under ASHA;\n"
                 "dotted: trial 0, the config's own", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
