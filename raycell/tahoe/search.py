"""``raycell tune loaders``: which loader settings suit this machine and its storage.

Per strategy of ``search.strategies``, trials are drawn up front from the search space
(``core/search.py``), beside two fixed settings: the reference (``search.reference``,
random by default, at the config's own settings) and the setting
``scdataset.suggest_parameters`` proposes for this data and machine (as block_shuffling;
it never trains, so it is measured like the rest). Every trial is a Tahoe run keyed like
a grid run: in its Ray Train worker it first times the loader alone (cells/s to the
device and the batches' drug and plate entropy, as ``raycell bench loaders``; with the
plates out of the page cache unless ``search.cache`` is warm), then trains
``search.epochs`` epochs and scores the test plates.

The recommendation: the fastest loader within ``f1_tolerance`` drug macro F1 of the
best setting, then confirmed over ``repeats`` seeds beside the best and the reference
(their means must stay within the tolerance; if not, the next fastest is tried). It is
written as ``recommended.yaml``, a config ``raycell tahoe --config`` takes, with its
figures and their spread in ``recommendation.csv``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import ray
import yaml

from raycell.core.config import config_key, get_dotted
from raycell.core.grid import GridRun, Workload, forget_grid, run_grid
from raycell.core.html import page, write_page
from raycell.core.layout import EPOCH_LOG, REPORT_FILE
from raycell.core.rows import write_table
from raycell.core.search import SearchSpace, check_keys, draw, refusal
from raycell.core.tracking import flatten
from raycell.tahoe.config import LOADER_KEYS, STRATEGY_BLOCK, TahoeConfig, configured
from raycell.tahoe.grid import run_settings
from raycell.tahoe.inputs import TahoeInputs
from raycell.tahoe.loaders.strategies import get_strategy
from raycell.tahoe.outputs.results import EPOCH_METRICS, summary_row
from raycell.tahoe.outputs.search import (
    RECOMMENDATION_FILE,
    SEARCH_FILE,
    SETTING_COLUMNS,
    search_sections,
)
from raycell.tahoe.trial import trial

RECOMMENDED_CONFIG = "recommended.yaml"
LOADER_METRICS = frozenset({"loader_cells_per_s", "batch_drug_entropy", "batch_plate_entropy"})
SCORES = ("drug_macro_f1", "moa_broad_macro_f1", "moa_fine_macro_f1", "cell_line_macro_f1")


@dataclass(frozen=True)
class Setting:
    """A loader setting the search measures: a strategy and the keys it sets."""

    name: str  # "block_shuffling-trial3", "suggested", "reference"
    strategy: str
    values: dict[str, Any] = field(default_factory=dict)  # dotted key -> value


def applies(strategy: str, key: str) -> bool:
    """Whether a searched key changes anything of a strategy's runs."""
    kind, blocked = get_strategy(strategy).kind, get_strategy(strategy).blocked
    section = key.split(".")[0]
    return {STRATEGY_BLOCK: blocked}.get(key, {"scdataset": kind == "scdataset",
                                              "ray_data": kind == "ray_data"}.get(section, True))


def suggested_values(inputs: TahoeInputs, batch_size: int) -> dict[str, Any]:
    """scDataset's own heuristic for this data and machine (RAM, cores): its
    "balanced" block size, fetch factor and DataLoader workers."""
    from scdataset.experimental import suggest_parameters

    from raycell.tahoe.data.sparse import split_rows

    got = suggest_parameters(split_rows(inputs.train, inputs.labels), batch_size, verbose=False)
    return {STRATEGY_BLOCK: int(got["block_size_balanced"]),
            "scdataset.fetch_factor": int(got["fetch_factor"]),
            "scdataset.num_workers": int(got["num_workers"])}


def settings_of(cfg: TahoeConfig, inputs: TahoeInputs) -> list[Setting]:
    """Every setting the search measures, in a fixed order."""
    search, raw = cfg.search, cfg.model_dump()
    check_keys(raw, [k for k in search.space if k != STRATEGY_BLOCK], "Tahoe")
    settings = [Setting("reference", search.reference)] if search.reference else []
    if search.suggested:
        settings.append(Setting("suggested", "block_shuffling",
                                suggested_values(inputs, cfg.training.batch_size)))
    for strategy in search.strategies:
        space = {k: v for k, v in search.space.items() if applies(strategy, k)}
        if not space:  # nothing to search for it: the config's own setting
            settings.append(Setting(f"{strategy}-trial0", strategy))
            continue
        sub = SearchSpace(space=space, samples=search.samples, seed=search.seed)
        accepts = refusal(lambda values, strategy=strategy: configured(raw, strategy, values))
        for i, values in enumerate(draw(sub, accepts)):
            settings.append(Setting(f"{strategy}-trial{i}", strategy, values))
    # A trial may land on the reference's or the suggested setting: measured once.
    seen, distinct = set(), []
    for setting in settings:
        key = config_key(run_settings(configured(raw, setting.strategy, setting.values),
                                      setting.strategy, 0))
        if key not in seen:
            seen.add(key)
            distinct.append(setting)
    return distinct


def loader_values(cfg: TahoeConfig, strategy: str) -> dict[str, Any]:
    """The loader settings a strategy's run has, by short name."""
    raw = cfg.model_dump()
    raw["strategy"] = raw["strategies"][strategy]
    return {name: get_dotted(raw, key) for name, key in LOADER_KEYS.items()}


def grid_runs(cfg: TahoeConfig, settings: list[Setting], seeds: list[int]) -> list[GridRun]:
    """A run per (setting, seed), keyed by what changes its numbers, the loader timing too."""
    raw, search = cfg.model_dump(), cfg.search
    runs = []
    for setting in settings:
        trial_cfg = configured(raw, setting.strategy, setting.values)
        for seed in seeds:
            payload = run_settings(trial_cfg, setting.strategy, seed) | {
                "measure": [search.warmup_seconds, search.measure_seconds, search.cache]}
            # The loader's settings by short name (every run has all five, as it runs);
            # other searched keys dotted. The trial sets both (tahoe/trial.py).
            runs.append(GridRun(
                config_key(payload), f"{setting.name}-seed{seed}",
                {"setting": setting.name, "strategy": setting.strategy, "seed": seed,
                 **loader_values(trial_cfg, setting.strategy),
                 **{k: v for k, v in setting.values.items() if k not in LOADER_KEYS.values()},
                 "warmup_seconds": search.warmup_seconds,
                 "measure_seconds": search.measure_seconds, "cache": search.cache},
                trial_cfg.training.num_epochs))
    return runs


def _records(run: GridRun, folder: Path) -> dict[str, pd.DataFrame]:
    log = pd.read_csv(folder / EPOCH_LOG).sort_values("epoch")
    summary = summary_row(run.tags["strategy"], run.tags["seed"], run.key, log)
    row = {k: run.tags[k] for k in SETTING_COLUMNS}
    row |= {k: float(log[k].iloc[0]) for k in LOADER_METRICS}  # timed before epoch 1
    row["train_cells_per_s"] = summary["cells_per_s"]
    row |= {k: summary[k] for k in SCORES}
    row["run_key"] = run.key
    return {SEARCH_FILE: pd.DataFrame([row])}


def _screened(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    return rows[rows["seed"] == seed].set_index("setting")


def candidates(screen: pd.DataFrame, tolerance: float) -> list[str]:
    """Settings within ``tolerance`` drug macro F1 of the best, fastest loader first."""
    best = screen["drug_macro_f1"].max()
    near = screen[screen["drug_macro_f1"] >= best - tolerance]
    return list(near.sort_values("loader_cells_per_s", ascending=False).index)


def spread(rows: pd.DataFrame, settings: list[str]) -> pd.DataFrame:
    """Per setting, its runs' drug macro F1 and loader cells/s: mean, std, min, max."""
    grouped = rows[rows["setting"].isin(settings)].groupby("setting")
    table = grouped[["drug_macro_f1", "loader_cells_per_s", "train_cells_per_s"]] \
        .agg(["mean", "std", "min", "max"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    return table.assign(seeds=grouped.size()).loc[settings]


def write_recommended(cfg: TahoeConfig, user_epochs: int, setting: Setting, save_dir: Path,
                      figures: pd.Series, versus: str | None) -> Path:
    """The recommendation as a config ``raycell tahoe --config`` takes: this search's
    config with the setting applied, only its strategy enabled, the user's epochs."""
    trial_cfg = configured(cfg.model_dump(), setting.strategy, setting.values)
    raw = trial_cfg.model_dump(exclude={"search"})
    raw["training"]["num_epochs"] = user_epochs
    for name in raw["strategies"]:
        raw["strategies"][name]["enabled"] = name == setting.strategy
    head = (f"# raycell tune loaders: {setting.name} ({setting.strategy}), over "
            f"{int(figures['seeds'])} seeds: drug macro F1 {figures['drug_macro_f1_mean']:.4f} "
            f"(std {figures['drug_macro_f1_std']:.4f}), loader "
            f"{figures['loader_cells_per_s_mean']:,.0f} cells/s (std "
            f"{figures['loader_cells_per_s_std']:,.0f})" + (f"; against {versus}" if versus else "")
            + f".\n# Run it: raycell tahoe --config {save_dir / RECOMMENDED_CONFIG} --all\n")
    path = save_dir / RECOMMENDED_CONFIG
    path.write_text(head + yaml.safe_dump(raw, sort_keys=False))
    return path


def loader_search(cfg: TahoeConfig, inputs: TahoeInputs, restart: bool = False,
                  say: Callable[[str], None] = print) -> pd.DataFrame:
    """Measure every setting on the first seed, confirm the recommendation over
    ``repeats`` seeds, write it; returns recommendation.csv's rows."""
    search, save_dir = cfg.search, Path(cfg.output.save_dir).resolve()
    user_epochs = cfg.training.num_epochs
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(
        update={"num_epochs": search.epochs})})
    settings = {s.name: s for s in settings_of(cfg, inputs)}
    seed0 = cfg.training.seeds[0]
    seeds = [seed0 + i for i in range(search.repeats)]
    # The parent's params: the config less what runs set (their own params), plus the space.
    own = set(search.space) | set(LOADER_KEYS.values())
    params = {k: v for k, v in flatten(cfg.model_dump(exclude={"search"})).items()
              if k not in own and not k.endswith(".block_size")}
    params["search"] = json.dumps(search.model_dump())
    workload = Workload(name="tahoe-search", results_file=SEARCH_FILE, trial=trial,
                        records=_records, metrics=EPOCH_METRICS | LOADER_METRICS,
                        params=params)

    def shared() -> dict[str, Any]:
        return {"cfg": cfg.model_dump(), "inputs": ray.put(inputs)}

    def run(names: list[str], on: list[int]) -> pd.DataFrame:
        runs = grid_runs(cfg, [settings[n] for n in names], on)
        return run_grid(workload, runs, save_dir, cfg.ray, cfg.output.experiment_name, shared,
                        say=say)

    if restart:  # every run the search may make, confirmations included
        forget_grid(workload, grid_runs(cfg, list(settings.values()), seeds), save_dir, cfg.ray)
    rows = run(list(settings), [seed0])
    screen = _screened(rows, seed0)
    best = screen["drug_macro_f1"].idxmax()
    anchors = list(dict.fromkeys([best, *(["reference"] if search.reference else [])]))
    # The anchors come last: the one with the highest mean is within any tolerance of it.
    for name in dict.fromkeys([*candidates(screen, search.f1_tolerance), *anchors]):
        confirming = list(dict.fromkeys([name, *anchors]))
        rows = run(confirming, seeds)
        table = spread(rows, confirming)
        target = table.loc[anchors, "drug_macro_f1_mean"].max()
        if table.at[name, "drug_macro_f1_mean"] >= target - search.f1_tolerance:
            break
        say(f"{name}: drug macro F1 {table.at[name, 'drug_macro_f1_mean']:.4f} over "
            f"{len(seeds)} seeds, more than {search.f1_tolerance} below {target:.4f}: "
            "trying the next fastest")
    table = table.reset_index().assign(recommended=lambda t: t["setting"] == name)
    table.insert(1, "strategy", [settings[s].strategy for s in table["setting"]])
    write_table(save_dir / RECOMMENDATION_FILE, table)
    versus = None
    if search.reference and name != "reference":
        ref = table.set_index("setting").loc["reference"]
        mine = table.set_index("setting").loc[name]
        versus = (f"reference {settings['reference'].strategy}: drug macro F1 "
                  f"{ref['drug_macro_f1_mean']:.4f}, loader x"
                  f"{mine['loader_cells_per_s_mean'] / ref['loader_cells_per_s_mean']:.2f}")
    path = write_recommended(cfg, user_epochs, settings[name], save_dir,
                             table.set_index("setting").loc[name], versus)
    write_page(save_dir / REPORT_FILE, page("raycell tahoe-search", str(save_dir),
                                            search_sections(save_dir)))
    say(f"recommended: {path}")
    return table
