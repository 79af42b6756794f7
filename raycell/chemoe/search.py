"""``raycell tune chemoe``: a search over CheMoE's settings per cell line, under ASHA.

The trials (``core/search.py``: drawn up front, seeded; trial 0 the config's own setting)
run through the grid runner as CheMoE runs of the grid's first fold, keyed like grid
runs, with Tune's ASHA scheduler stopping the worst at each rung on validation loss by
epoch. A trial's row in ``search.csv`` says whether it finished or was stopped early,
how many epochs it trained and its best validation loss; a killed search, rerun, skips
the trials that have a row and resumes the others from their checkpoints. Trials are
chosen on validation loss alone (a finished trial scores the test split too, as every
CheMoE run does; the search does not read it). Per cell line, the best trial and trial 0
are then trained again with the next ``search.repeats - 1`` seeds, and the lower mean
is written as a config ``raycell chemoe --config`` takes:
``<save_dir>/best-<cell line>.yaml`` (the figures: ``recommendation.csv``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import ray
import yaml

from raycell.chemoe.config import ChemoeConfig, configured
from raycell.chemoe.grid import CURVE_METRICS, run_key
from raycell.chemoe.inputs import ChemoeInputs, mol_encoder_of
from raycell.chemoe.search_report import RECOMMENDATION_FILE, SEARCH_FILE, SEED, sections
from raycell.chemoe.trial import trial
from raycell.chemoe.worker import TEST_METRICS
from raycell.core.config import get_dotted
from raycell.core.errors import RaycellError
from raycell.core.grid import GridRun, Workload, forget_grid, run_grid
from raycell.core.html import page, write_page
from raycell.core.layout import EPOCH_LOG, REPORT_FILE, run_dir
from raycell.core.rows import upsert, write_table
from raycell.core.runtime import tracking_uri
from raycell.core.search import check_keys, draw, plain, refusal
from raycell.core.tracking import flatten, log_missing_epochs

BEST_FILE = "best-{cell_line}.yaml"


def own_setting(cfg: ChemoeConfig) -> dict[str, Any]:
    """The config's own values of the searched keys."""
    raw = cfg.model_dump()
    check_keys(raw, list(cfg.search.space), "CheMoE")
    return {key: plain(get_dotted(raw, key)) for key in cfg.search.space}


def draw_trials(cfg: ChemoeConfig) -> list[dict[str, Any]]:
    """The search's trials, ``{dotted key: value}`` each; trial 0 the config's own."""
    incumbent = own_setting(cfg)
    raw = cfg.model_dump()
    return draw(cfg.search, refusal(lambda trial: configured(raw, trial)),
                incumbent if cfg.search.include_config else None)


def trial_runs(cfg: ChemoeConfig, data_dir: Path, trials: dict[tuple[str, int], dict],
               seed: int) -> list[GridRun]:
    """A run per (cell line, trial number): its settings, trained with ``seed``."""
    raw, fold = cfg.model_dump(), cfg.grid.folds[0]
    runs = []
    for (line, i), drawn in trials.items():
        settings = {**drawn, SEED: seed}
        trial_cfg = configured(raw, settings)
        name = f"chemoe-{line}-trial{i}" + (f"-seed{seed}" if seed != cfg.training.seed else "")
        runs.append(GridRun(
            run_key(trial_cfg, data_dir, line, fold, "chemoe"), name,
            {"model": "chemoe", "cell_line": line, "fold": fold,
             "mol_encoder": mol_encoder_of("chemoe", cfg), "trial": i, **settings},
            trial_cfg.training.epochs))
    return runs


def search_runs(cfg: ChemoeConfig, data_dir: Path) -> list[GridRun]:
    """Every trial of the search, for every cell line of the grid."""
    trials = draw_trials(cfg)
    return trial_runs(cfg, data_dir, {(line, i): drawn for line in cfg.grid.cell_lines
                                      for i, drawn in enumerate(trials)}, cfg.training.seed)


def trial_records(searched: list[str]):
    def records(run: GridRun, folder: Path) -> dict[str, pd.DataFrame]:
        log = pd.read_csv(folder / EPOCH_LOG) if (folder / EPOCH_LOG).is_file() \
            else pd.DataFrame({"epoch": []})
        scored = log.dropna(subset=["val_loss"]) if "val_loss" in log else log.iloc[:0]
        best = scored.loc[scored["val_loss"].idxmin()] if len(scored) else None
        row = {k: run.tags[k] for k in ("cell_line", "fold", "trial", *searched, SEED)}
        row |= {"status": "finished" if (folder / TEST_METRICS).is_file() else "stopped",
                "epochs": int(log["epoch"].max()) if len(log) else 0,
                "max_epochs": run.epochs,
                "best_val_loss": float(best["val_loss"]) if best is not None else float("nan"),
                "best_epoch": int(best["epoch"]) if best is not None else 0,
                "run_key": run.key, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}
        return {SEARCH_FILE: pd.DataFrame([row])}

    return records


def _settle(rows: pd.DataFrame, runs: dict[str, GridRun], workload: Workload,
            save_dir: Path) -> pd.DataFrame:
    """Stopped trials' rows from their finished epoch logs. Tune makes a stopped trial's
    row when ASHA decides, and stops it after: it may train an epoch or two more, which
    count (its best may be among them), in the row and in MLflow. Once the search has
    ended, every log is final."""
    stored = rows.set_index("run_key")
    changed = []
    for key in stored.index[stored["status"] == "stopped"]:
        log_missing_epochs(tracking_uri(save_dir), stored.at[key, "mlflow_run_id"],
                           run_dir(save_dir, key) / EPOCH_LOG, workload.metrics)
        row = workload.records(runs[key], run_dir(save_dir, key))[SEARCH_FILE]
        if (row.at[0, "epochs"], row.at[0, "status"]) != (stored.at[key, "epochs"], "stopped"):
            changed.append(row.assign(run_name=stored.at[key, "run_name"],
                                      mlflow_run_id=stored.at[key, "mlflow_run_id"]))
    if not changed:  # a rerun's rows stay as they are
        return rows
    table = upsert(save_dir / SEARCH_FILE, pd.concat(changed)).set_index("run_key")
    return table.loc[rows["run_key"]].reset_index()[rows.columns]


def confirmation_runs(cfg: ChemoeConfig, data_dir: Path, runs: list[GridRun],
                      seeds: list[int], rows: pd.DataFrame | None = None) -> list[GridRun]:
    """Per cell line, the trial of the lowest validation loss and trial 0 (the config's
    own) again with every seed but the first. Without ``rows`` (a restart, before anything
    ran) every trial's: any may turn out the best."""
    trials = {(run.tags["cell_line"], run.tags["trial"]):
              {k: v for k, v in run.tags.items() if "." in k and k != SEED} for run in runs}
    if rows is not None:
        picks = {(line, int(group.loc[group["best_val_loss"].idxmin(), "trial"]))
                 for line, group in rows.groupby("cell_line")}
        if cfg.search.include_config:
            picks |= {(line, 0) for line in cfg.grid.cell_lines}
        trials = {pick: drawn for pick, drawn in trials.items() if pick in picks}
    return [run for seed in seeds[1:] for run in trial_runs(cfg, data_dir, trials, seed)]


def confirmed(rows: pd.DataFrame, seeds: int) -> pd.DataFrame:
    """Per cell line and confirmed trial: best validation loss over its seeds (mean, std,
    min, max), and which one is recommended (the lowest mean of its line)."""
    by_trial = rows.groupby(["cell_line", "trial"])
    counts = by_trial.size()
    table = by_trial["best_val_loss"].agg(["mean", "std", "min", "max"])
    table = table[counts == seeds].add_prefix("best_val_loss_").assign(seeds=seeds)
    lowest = table.groupby("cell_line")["best_val_loss_mean"].transform("min")
    return table.assign(recommended=table["best_val_loss_mean"] == lowest).reset_index()


def write_best(cfg: ChemoeConfig, rows: pd.DataFrame, table: pd.DataFrame, save_dir: Path
               ) -> list[Path]:
    """Per cell line, the recommended trial as a config file."""
    written = []
    searched = list(cfg.search.space)
    for pick in table[table["recommended"]].itertuples():
        first = rows[(rows["cell_line"] == pick.cell_line) & (rows["trial"] == pick.trial)
                     & (rows[SEED] == cfg.training.seed)].iloc[0]
        trial_cfg = configured(cfg.model_dump(), {k: plain(first[k]) for k in searched})
        raw = trial_cfg.model_dump(exclude={"search"})
        raw["grid"] |= {"cell_lines": [pick.cell_line], "models": ["chemoe"]}
        path = save_dir / BEST_FILE.format(cell_line=pick.cell_line)
        trials = rows.loc[rows["cell_line"] == pick.cell_line, "trial"].nunique()
        spread = f" (std {pick.best_val_loss_std:.3g})" if pick.seeds > 1 else ""
        head = (f"# raycell tune chemoe: trial {pick.trial} of {trials} on {pick.cell_line}, "
                f"best validation loss {pick.best_val_loss_mean:.6g}{spread} over "
                f"{pick.seeds} seed{'s' * (pick.seeds > 1)}.\n")
        path.write_text(head + yaml.safe_dump(raw, sort_keys=False))
        written.append(path)
    return written


def asha(cfg: ChemoeConfig):
    """The search's scheduler: ASHA on validation loss by epoch."""
    from ray.tune.schedulers import ASHAScheduler

    if cfg.search.grace_period > cfg.training.epochs:  # ASHA asserts it
        raise RaycellError(f"search.grace_period {cfg.search.grace_period} is above the "
                           f"{cfg.training.epochs} epochs a trial trains: lower --grace_period "
                           f"or raise --epochs")
    return ASHAScheduler(time_attr="epoch", metric="val_loss", mode="min",
                         max_t=cfg.training.epochs, grace_period=cfg.search.grace_period,
                         reduction_factor=cfg.search.reduction_factor,
                         stop_last_trials=False)  # the last epoch ends the run itself


def chemoe_search(cfg: ChemoeConfig, inputs: ChemoeInputs, restart: bool = False
                  ) -> pd.DataFrame:
    """Run the search's unfinished trials; returns its rows of search.csv."""
    save_dir = Path(cfg.output.save_dir).resolve()
    runs = search_runs(cfg, inputs.data_dir)
    searched = list(cfg.search.space)
    experts = max(int(run.tags.get("model.num_experts", cfg.model.num_experts)) for run in runs)
    # The parent run's params: the config less what each trial sets (those are the
    # children's), plus the space itself, so no param is logged twice with two values.
    params = {k: v for k, v in flatten(cfg.model_dump()).items()
              if k not in {*searched, SEED} and not k.startswith("search.")}
    params["search"] = json.dumps(cfg.search.model_dump())
    workload = Workload(name="chemoe-search", results_file=SEARCH_FILE, trial=trial,
                        records=trial_records(searched),
                        metrics=CURVE_METRICS | {f"expert_{e}_usage" for e in range(experts)},
                        params=params)
    scheduler = asha(cfg)

    def shared() -> dict[str, Any]:
        return {"cfg": cfg.model_dump(), "data_dir": str(inputs.data_dir),
                "features": ray.put((inputs.drug_names, inputs.features))}

    seeds = [cfg.training.seed + r for r in range(cfg.search.repeats)]
    if restart:  # the confirmations too, which the search may only make later
        forget_grid(workload, confirmation_runs(cfg, inputs.data_dir, runs, seeds), save_dir,
                    cfg.ray)
    rows = run_grid(workload, runs, save_dir, cfg.ray, cfg.output.experiment_name, shared,
                    restart, scheduler=scheduler)
    rows = _settle(rows, {run.key: run for run in runs}, workload, save_dir) \
        .assign(**{SEED: cfg.training.seed})  # these runs' keys hold the config's seed
    if len(seeds) > 1:  # the best and the config's own, each again with the other seeds
        again = confirmation_runs(cfg, inputs.data_dir, runs, seeds, rows)
        rows = pd.concat([rows, run_grid(workload, again, save_dir, cfg.ray,
                                         cfg.output.experiment_name, shared)])
    rows = rows.sort_values(["cell_line", "trial", SEED], ignore_index=True)
    table = confirmed(rows, len(seeds))
    write_table(save_dir / RECOMMENDATION_FILE, table)
    for path in write_best(cfg, rows, table, save_dir):
        print(f"best config: {path}", flush=True)
    write_page(save_dir / REPORT_FILE, page("raycell chemoe-search", str(save_dir),
                                            sections(save_dir)))
    return rows
