"""``raycell tune chemoe``: a search over CheMoE's settings per cell line, under ASHA.

The trials (``core/search.py``: drawn up front, seeded) run through the grid runner as
CheMoE runs of the grid's first fold, keyed like grid runs, with Tune's ASHA scheduler
stopping the worst at each rung on validation loss by epoch. A trial's row in
``search.csv`` says whether it finished or was stopped early, how many epochs it
trained and its best validation loss; a killed search, rerun, skips the trials that
have a row and resumes the others from their checkpoints. Trials are chosen on
validation loss alone (a finished trial scores the test split too, as every CheMoE run
does; the search does not read it). Per cell line, the trial with the lowest validation
loss is written as a config ``raycell chemoe --config`` takes:
``<save_dir>/best-<cell line>.yaml``.
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
from raycell.chemoe.search_report import SEARCH_FILE, sections
from raycell.chemoe.trial import trial
from raycell.chemoe.worker import TEST_METRICS
from raycell.core.config import get_dotted
from raycell.core.grid import GridRun, Workload, run_grid
from raycell.core.html import page, write_page
from raycell.core.layout import EPOCH_LOG, REPORT_FILE, run_dir
from raycell.core.rows import upsert
from raycell.core.search import check_keys, draw, plain, refusal
from raycell.core.tracking import flatten

BEST_FILE = "best-{cell_line}.yaml"


def search_runs(cfg: ChemoeConfig, data_dir: Path) -> list[GridRun]:
    """Every trial of the search, for every cell line of the grid."""
    raw = cfg.model_dump()
    check_keys(raw, list(cfg.search.space), "CheMoE")
    incumbent = {key: plain(get_dotted(raw, key)) for key in cfg.search.space} \
        if cfg.search.include_config else None
    trials = draw(cfg.search, refusal(lambda trial: configured(raw, trial)), incumbent)
    fold = cfg.grid.folds[0]
    runs = []
    for line in cfg.grid.cell_lines:
        for i, drawn in enumerate(trials):
            trial_cfg = configured(raw, drawn)
            runs.append(GridRun(
                run_key(trial_cfg, data_dir, line, fold, "chemoe"), f"chemoe-{line}-trial{i}",
                {"model": "chemoe", "cell_line": line, "fold": fold,
                 "mol_encoder": mol_encoder_of("chemoe", cfg), "trial": i, **drawn},
                trial_cfg.training.epochs))
    return runs


def _records(searched: list[str]):
    def records(run: GridRun, folder: Path) -> dict[str, pd.DataFrame]:
        log = pd.read_csv(folder / EPOCH_LOG) if (folder / EPOCH_LOG).is_file() \
            else pd.DataFrame({"epoch": []})
        scored = log.dropna(subset=["val_loss"]) if "val_loss" in log else log.iloc[:0]
        best = scored.loc[scored["val_loss"].idxmin()] if len(scored) else None
        row = {k: run.tags[k] for k in ("cell_line", "fold", "trial", *searched)}
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
    count (its best may be among them). Once the search has ended, every log is final."""
    stored = rows.set_index("run_key")
    changed = []
    for key in stored.index[stored["status"] == "stopped"]:
        row = workload.records(runs[key], run_dir(save_dir, key))[SEARCH_FILE]
        if (row.at[0, "epochs"], row.at[0, "status"]) != (stored.at[key, "epochs"], "stopped"):
            changed.append(row.assign(run_name=stored.at[key, "run_name"],
                                      mlflow_run_id=stored.at[key, "mlflow_run_id"]))
    if not changed:  # a rerun's rows stay as they are
        return rows
    table = upsert(save_dir / SEARCH_FILE, pd.concat(changed)).set_index("run_key")
    return table.loc[rows["run_key"]].reset_index()[rows.columns]


def write_best(cfg: ChemoeConfig, rows: pd.DataFrame, save_dir: Path) -> list[Path]:
    """Per cell line, the lowest validation loss's trial as a config file."""
    written = []
    searched = list(cfg.search.space)
    for line, trials in rows.groupby("cell_line"):
        best = trials.loc[trials["best_val_loss"].idxmin()]
        trial_cfg = configured(cfg.model_dump(), {k: plain(best[k]) for k in searched})
        raw = trial_cfg.model_dump(exclude={"search"})
        raw["grid"] |= {"cell_lines": [line], "models": ["chemoe"]}
        path = save_dir / BEST_FILE.format(cell_line=line)
        head = (f"# raycell tune chemoe: trial {int(best['trial'])} of {len(trials)} on {line}, "
                f"validation loss {best['best_val_loss']:.6g} at epoch "
                f"{int(best['best_epoch'])} ({best['status']}).\n")
        path.write_text(head + yaml.safe_dump(raw, sort_keys=False))
        written.append(path)
    return written


def chemoe_search(cfg: ChemoeConfig, inputs: ChemoeInputs, restart: bool = False
                  ) -> pd.DataFrame:
    """Run the search's unfinished trials; returns its rows of search.csv."""
    from ray.tune.schedulers import ASHAScheduler

    save_dir = Path(cfg.output.save_dir).resolve()
    runs = search_runs(cfg, inputs.data_dir)
    searched = list(cfg.search.space)
    experts = max(int(run.tags.get("model.num_experts", cfg.model.num_experts)) for run in runs)
    # The parent run's params: the config less what each trial sets (those are the
    # children's), plus the space itself, so no param is logged twice with two values.
    params = {k: v for k, v in flatten(cfg.model_dump()).items()
              if k not in searched and not k.startswith("search.")}
    params["search"] = json.dumps(cfg.search.model_dump())
    workload = Workload(name="chemoe-search", results_file=SEARCH_FILE, trial=trial,
                        records=_records(searched),
                        metrics=CURVE_METRICS | {f"expert_{e}_usage" for e in range(experts)},
                        params=params)
    scheduler = ASHAScheduler(time_attr="epoch", metric="val_loss", mode="min",
                              max_t=cfg.training.epochs, grace_period=cfg.search.grace_period,
                              reduction_factor=cfg.search.reduction_factor,
                              stop_last_trials=False)  # the last epoch ends the run itself

    def shared() -> dict[str, Any]:
        return {"cfg": cfg.model_dump(), "data_dir": str(inputs.data_dir),
                "features": ray.put((inputs.drug_names, inputs.features))}

    rows = run_grid(workload, runs, save_dir, cfg.ray, cfg.output.experiment_name, shared,
                    restart, scheduler=scheduler)
    rows = _settle(rows, {run.key: run for run in runs}, workload, save_dir) \
        .sort_values(["cell_line", "trial"], ignore_index=True)
    for path in write_best(cfg, rows, save_dir):
        print(f"best config: {path}", flush=True)
    write_page(save_dir / REPORT_FILE, page("raycell chemoe-search", str(save_dir),
                                            sections(save_dir)))
    return rows
