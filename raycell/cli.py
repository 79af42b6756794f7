"""The ``raycell`` command: parse, load the config, call one function.

Heavy imports (ray, torch, mlflow) happen inside the commands, so ``--help`` and
input errors answer at once. A RaycellError prints one line and exits with 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from raycell.core.errors import Interrupted, RaycellError, RunsFailed
from raycell.core.layout import REPORT_FILE
from raycell.tahoe.loaders.strategies import STRATEGIES


@dataclass(frozen=True)
class Flag:
    """One flag of a workload command: argparse's arguments and the config keys it sets."""

    name: str
    keys: tuple[str, ...]  # dotted config keys the flag's value overrides
    read: bool | None  # a path: whether the run reads it (a job must find it); None: no path
    options: dict[str, Any]  # add_argument's keyword arguments

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(f"--{self.name}", **self.options)


def flag(name: str, *keys: str, read: bool | None = None, **options: Any) -> Flag:
    return Flag(name, keys, read, options)


# Flags every workload command takes, defined once.
SHARED_FLAGS = (
    flag("save_dir", "output.save_dir", read=False, help="results folder"),
    flag("ray_workers", "ray.num_workers", type=int, help="Ray Train workers (DDP ranks) per run"),
    flag("use_gpu", "ray.use_gpu", action="store_true", default=None,
         help="the seeds' --gpu: each Ray Train worker gets gpus_per_worker GPUs"),
    flag("gpus_per_worker", "ray.gpus_per_worker", type=float),
    flag("restart", action="store_true",
         help="train these runs afresh (default: skip finished, resume interrupted)"),
    flag("verbose", action="store_true",
         help="Ray's, Tune's and MLflow's own output too (default: a line per run)"),
)

# raycell tahoe: the seed's flag names.
TAHOE_FLAGS = (
    flag("epochs", "training.num_epochs", type=int),
    flag("batch_size", "training.batch_size", type=int),
    flag("learning_rate", "training.learning_rate", type=float),
    flag("seed", "training.seeds", type=int, nargs="+", help="one or more seeds: a run per seed"),
    flag("fetch_factor", "scdataset.fetch_factor", type=int),
    flag("num_workers", "scdataset.num_workers", type=int,
         help="DataLoader workers per Ray Train worker"),
    flag("min_count_baseline", "weights.min_count_baseline", type=int),
    # Sets the block strategies; random and weighted_true are block size 1 by definition.
    flag("block_size", *(f"strategies.{name}.block_size" for name, strategy in STRATEGIES.items()
                         if strategy.blocked), type=int,
         help="block size of block_shuffling, weighted_block, ray_block_shuffle"),
    flag("max_train_cells", "data.max_train_cells", type=int),
    flag("max_test_cells", "data.max_test_cells", type=int),
    flag("h5ad_dir", "data.h5ad_dir", read=True),
    flag("parquet_dir", "data.parquet_dir", read=True,
         help="a snapshot of the Hugging Face release (data/*.parquet, metadata/)"),
    flag("train_plates", "data.train_plates", type=int, nargs="+", metavar="N"),
    flag("test_plates", "data.test_plates", type=int, nargs="+", metavar="N"),
    flag("drug_table", "data.drug_table", read=True),
    flag("log1p", "training.log1p", action=argparse.BooleanOptionalAction, default=None,
         help="log1p the counts before the model (default: raw counts, as the seed)"),
    flag("input", "training.input", help="auto | sparse | dense: CSR rows or dense rows into "
                                         "the model (auto: sparse on a CPU, dense on a GPU)"),
    flag("max_steps", "training.max_steps", type=int,
         help="stop every epoch after N batches (pilots, start-up checks)"),
    *SHARED_FLAGS,
)

# raycell chemoe: the seed's flag names, plus the grid's.
CHEMOE_FLAGS = (
    flag("cell_line", "grid.cell_lines", nargs="+", metavar="CL",
         help="one or more of the nine lines"),
    flag("fold", "grid.folds", type=int, nargs="+", metavar="K", help="0..4 (split key K + 1)"),
    flag("model", "grid.models", nargs="+", metavar="M",
         help="chemoe | identity | mean_shift | ridge (several: a grid)"),
    flag("mol_encoder", "grid.mol_encoder", help="kpgt | morgan"),
    flag("num_experts", "model.num_experts", type=int),
    flag("top_k", "model.top_k", type=int),
    flag("embed_dim", "model.embed_dim", type=int),
    flag("epochs", "training.epochs", type=int),
    flag("batch_size", "training.batch_size", type=int),
    flag("lr", "training.lr", type=float),
    flag("weight_decay", "training.weight_decay", type=float),
    flag("aux_loss_weight", "training.aux_loss_weight", type=float),
    flag("eval_every", "training.eval_every", type=int),
    flag("seed", "training.seed", type=int),
    flag("data", "data.dir", read=True,
         help="raycell PDGrapher folder (default: demo data, made once)"),
    flag("kpgt_file", "data.kpgt_file", read=True,
         help="SMILES -> 2304 floats (.npz or .parquet; .pkl with --allow_pickle)"),
    flag("allow_pickle", "data.allow_pickle", action="store_true", default=None),
    flag("missing_embedding", "data.missing_embedding", help="error | zero"),
    *SHARED_FLAGS,
)

# raycell tune chemoe: the search's own, beside CheMoE's flags.
SEARCH_FLAGS = (
    flag("samples", "search.samples", type=int,
         help="trials drawn per cell line (chemoe), per strategy (loaders)"),
    flag("search_seed", "search.seed", type=int, help="seeds the draw of the trials"),
)
TUNE_CHEMOE_FLAGS = SEARCH_FLAGS + (
    flag("grace_period", "search.grace_period", type=int,
         help="epochs every trial trains before ASHA may stop it"),
    *(f for f in CHEMOE_FLAGS if f.name != "model"))
TUNE_LOADERS_FLAGS = SEARCH_FLAGS + (
    flag("strategy", "search.strategies", nargs="+", metavar="NAME",
         help="the strategies whose settings are searched"),
    flag("repeats", "search.repeats", type=int,
         help="seeds the recommendation is confirmed over"),
    flag("trial_epochs", "search.epochs", type=int,
         help="epochs each trial trains (--epochs: the recommended config's)"),
    *TAHOE_FLAGS)

# The config keys whose relative defaults a job places under $RAYCELL_JOB_ROOT
# (core/jobs.py), each with the key that leaves it unused.
TAHOE_RELOCATED = {"output.save_dir": None, "data.synthetic.out_dir": "data.h5ad_dir"}
CHEMOE_RELOCATED = {"output.save_dir": None, "data.synthetic.out_dir": "data.dir"}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit code 2) like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise RaycellError(f"{self.prog}: {message}")


def _workload_parser(sub, name: str, help_: str, configs: str, func) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_)
    p.add_argument("--config", default="default", help=f"{configs} | PATH.yaml")
    p.set_defaults(func=func)
    return p


def _tahoe_parser(sub) -> None:
    p = _workload_parser(sub, "tahoe", "loader-strategy experiment on Tahoe-100M plates",
                         "default | pilot | demo", _run_tahoe)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--strategy", nargs="+", metavar="NAME", help="one or more strategies")
    which.add_argument("--all", action="store_true", help="every enabled strategy, as a Tune grid")
    for f in TAHOE_FLAGS:
        f.add_to(p)


def _chemoe_parser(sub) -> None:
    p = _workload_parser(sub, "chemoe", "CheMoE and baselines on PDGrapher data",
                         "default | demo", _run_chemoe)
    for f in CHEMOE_FLAGS:
        f.add_to(p)


def _tune_parser(sub) -> None:
    p = sub.add_parser("tune", help="Tune searches (beyond grids)")
    kinds = p.add_subparsers(dest="kind", required=True, parser_class=Parser)
    c = _workload_parser(kinds, "chemoe", "search CheMoE's settings per cell line under ASHA "
                         "(results in <save_dir>-search unless --save_dir)",
                         "default | demo", _run_tune_chemoe)
    for f in TUNE_CHEMOE_FLAGS:
        f.add_to(c)
    t = _workload_parser(kinds, "loaders", "search loader settings: cells/s in a Ray Train "
                         "worker against a short training's drug macro F1; writes the "
                         "recommendation as a config (results in <save_dir>-search unless "
                         "--save_dir)", "default | pilot | demo", _run_tune_loaders)
    for f in TUNE_LOADERS_FLAGS:
        f.add_to(t)


def _data_parser(sub) -> None:
    from raycell.chemoe.config import PdgrapherSpec
    from raycell.tahoe.config import TahoeSpec

    p = sub.add_parser("data", help="write in-format synthetic data")
    kinds = p.add_subparsers(dest="kind", required=True)
    t = kinds.add_parser("tahoe", help="Tahoe-100M plates and drug table")
    t.add_argument("--out", required=True)
    t.add_argument("--profile", choices=("demo", "tahoe_shaped", "tahoe_scale"), default="demo",
                   help="demo: 2,000 genes, dense Poisson counts; tahoe_shaped: 62,710 genes, "
                        "~1,400 non-zeros a cell (the bench's data); tahoe_scale: Tahoe's 14 "
                        "plates and 100.6M cells, 4 non-zeros a cell (~11 GB, start-up checks)")
    t.add_argument("--format", choices=("h5ad", "parquet"), default="h5ad",
                   help="h5ad: the plates of the h5ad release; parquet: the Hugging Face "
                        "release's layout (data/*.parquet, metadata/)")
    add_settings_flags(t, TahoeSpec, note="overrides the profile")
    t.set_defaults(func=_write_tahoe)
    c = kinds.add_parser("convert", help="h5ad plates and their drug table as the Hugging "
                                         "Face release's parquet layout")
    c.add_argument("h5ad_dir")
    c.add_argument("--out", required=True, help="a new folder")
    c.add_argument("--rows_per_shard", type=int, default=None)
    c.add_argument("--rows_per_group", type=int, default=None)
    c.set_defaults(func=_convert_tahoe)
    g = kinds.add_parser("pdgrapher", help="PDGrapher-format cell lines, drugs with SMILES, "
                                           "stand-in KPGT vectors")
    g.add_argument("--out", required=True)
    add_settings_flags(g, PdgrapherSpec)
    g.set_defaults(func=_write_pdgrapher)
    i = kinds.add_parser("import-pdgrapher",
                         help="convert PDGrapher's data_backward_{CL}.pt + splits.pt (pickles: "
                              "trusted files only)")
    i.add_argument("--backward", required=True, help="data_backward_{CL}.pt")
    i.add_argument("--splits", required=True, help="that cell line's 5-fold splits.pt")
    i.add_argument("--drug_table", required=True, help="CSV or parquet: name, smiles")
    i.add_argument("--out", required=True)
    i.add_argument("--cell_line", help="default: from the file name")
    i.set_defaults(func=_import_pdgrapher)


def _flag_type(annotation) -> tuple[type, bool]:
    """(the argparse type, whether the flag takes several values) of a settings field."""
    many = get_origin(annotation) in (tuple, list)
    if many:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):  # X | None
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return (annotation if annotation in (int, float) else str), many


def add_settings_flags(parser: argparse.ArgumentParser, model, note: str | None = None) -> None:
    """A flag per field of a settings model, with the model's description and default (or
    ``note``) in its help. A flag not given stays None, so the model's own default applies."""
    for name, field in model.model_fields.items():
        kind, many = _flag_type(field.annotation)
        default = field.get_default(call_default_factory=True)
        shown = " ".join(map(str, default)) if isinstance(default, (tuple, list)) else default
        help_ = " ".join(filter(None, [
            field.description,
            note or (None if default is None else f"(default: {shown})")]))
        parser.add_argument(f"--{name}", type=kind, nargs="+" if many else None,
                            help=help_ or None)


def _bench_parser(sub) -> None:
    from raycell.chemoe.config import ChemoeBenchSettings
    from raycell.tahoe.config import LoaderBenchSettings, TrainBenchSettings

    p = sub.add_parser("bench", help="benchmarks")
    kinds = p.add_subparsers(dest="kind", required=True, parser_class=Parser)
    for name, model, help_, func in (
            ("loaders", LoaderBenchSettings, "loader throughput against batch diversity",
             _run_bench),
            ("chemoe", ChemoeBenchSettings, "CheMoE training samples/s against the dense "
             "reference", _run_bench_chemoe),
            ("train", TrainBenchSettings, "Tahoe training cells/s: dense input against sparse",
             _run_bench_train)):
        b = kinds.add_parser(name, help=help_)
        add_settings_flags(b, model)
        b.set_defaults(func=func, settings=model)
    s = _workload_parser(kinds, "searchers", "raycell tune chemoe's random search against "
                         "Optuna's TPE through Tune, under the same ASHA (results in "
                         "<save_dir>-searchers unless --save_dir)", "default | demo",
                         _run_bench_searchers)
    for f in TUNE_CHEMOE_FLAGS:
        f.add_to(s)
    s.add_argument("--searchers", nargs="+", choices=("random", "tpe"),
                   default=["random", "tpe"])
    s.add_argument("--search_seeds", nargs="+", type=int, default=[0], metavar="S",
                   help="a search per searcher and seed (default: 0)")


def build_parser() -> Parser:
    parser = Parser(prog="raycell", description="Single-cell training experiments on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    _tahoe_parser(sub)
    _chemoe_parser(sub)
    _data_parser(sub)
    _tune_parser(sub)
    _bench_parser(sub)
    _report_parser(sub)
    st = sub.add_parser("status", help="the runs of a results folder: finished, running, "
                                       "interrupted, failed")
    st.add_argument("folder", metavar="DIR")
    st.set_defaults(func=_run_status)
    return parser


def _run_status(args: argparse.Namespace) -> None:
    from raycell.core.status import format_status, grid_status

    workload, runs = grid_status(args.folder)
    print(format_status(Path(args.folder).expanduser().resolve(), workload, runs))


def _report_parser(sub) -> None:
    r = sub.add_parser("report", help="one self-contained HTML page over results folders")
    r.add_argument("folders", nargs="+", metavar="DIR",
                   help="raycell tahoe / chemoe results folders, or loader bench folders")
    r.add_argument("--out", required=True, metavar="FILE.html")
    r.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> None:
    from raycell.report import write_report

    print(f"report: {write_report(args.folders, args.out)}")


def overrides(args: argparse.Namespace, flags: tuple[Flag, ...]) -> dict[str, Any]:
    """The config keys the given flags set."""
    out = {}
    for f in flags:
        value = getattr(args, f.name)
        if f.keys and value is not None:
            out.update(dict.fromkeys(f.keys, value))
    return out


def _load(args: argparse.Namespace, load, flags: tuple[Flag, ...],
          relocated: dict[str, str | None]):
    """The command's config: file + flags; in a job (``jobs/``), with every path absolute
    and outside the job's working directory."""
    if not args.job:
        return load(args.config, overrides(args, flags))
    from raycell.core.jobs import job_defaults, job_flag_path

    for f in flags:
        if f.read is not None and getattr(args, f.name) is not None:
            setattr(args, f.name, job_flag_path(getattr(args, f.name), f.name, f.read))
    given = overrides(args, flags)
    return load(args.config, given | job_defaults(load(args.config, given), relocated))


def _run_tahoe(args: argparse.Namespace) -> None:
    from raycell import load_tahoe_config, run_tahoe

    if args.strategy is None and not args.all:
        raise RaycellError("choose a strategy: --strategy NAME or --all")
    cfg = _load(args, load_tahoe_config, TAHOE_FLAGS, TAHOE_RELOCATED)
    summary = run_tahoe(cfg, args.strategy, args.restart)  # None with --all: every enabled strategy
    from raycell.tahoe.outputs.tables import print_summary

    print_summary(summary, cfg.output.save_dir, cfg.training.log1p)
    save_dir = Path(cfg.output.save_dir).resolve()
    print(f"figures: {save_dir / 'figures'}")
    print(f"report: {save_dir / REPORT_FILE}")


def _settings(args: argparse.Namespace):
    """The subcommand's settings model from the flags given."""
    return _spec_from_flags(args.settings, None, args)


def _run_bench(args: argparse.Namespace) -> None:
    settings = _settings(args)
    from raycell.tahoe.bench.loaders import bench_loaders, ratios

    frame = bench_loaders(settings)
    out = Path(settings.out).expanduser().resolve()
    print(f"\nwrote {out / 'bench.csv'} and {out / 'bench.png'}")
    for name, value in ratios(frame).items():
        print(f"  {name:<52} {value:8.3f}")


def _spec_from_flags(model, base, args: argparse.Namespace):
    """A generator spec: ``base`` with the flags given; a bad value is one line naming its flag."""
    from raycell.core.config import from_flags

    return from_flags(model, {k: getattr(args, k, None) for k in model.model_fields}, base)


def _run_chemoe(args: argparse.Namespace) -> None:
    from raycell import load_chemoe_config, run_chemoe

    cfg = _load(args, load_chemoe_config, CHEMOE_FLAGS, CHEMOE_RELOCATED)
    rows = run_chemoe(cfg, args.restart)
    from raycell.chemoe.tables import print_chemoe

    save_dir = Path(cfg.output.save_dir).resolve()
    print_chemoe(rows, save_dir)
    print(f"report: {save_dir / REPORT_FILE}")


def _search_dir(cfg, given: str | None, suffix: str = "-search"):
    """A search's config: its results beside the grid's folder (its name + ``suffix``)
    unless --save_dir."""
    from raycell.core.rows import results_dir

    if given is None:
        cfg = cfg.model_copy(update={"output": cfg.output.model_copy(
            update={"save_dir": cfg.output.save_dir.rstrip("/") + suffix})})
    results_dir(cfg.output.save_dir)
    return cfg


def _run_tune_loaders(args: argparse.Namespace) -> None:
    from raycell import load_tahoe_config

    cfg = _search_dir(_load(args, load_tahoe_config, TUNE_LOADERS_FLAGS, TAHOE_RELOCATED),
                      args.save_dir)
    from raycell.tahoe.inputs import load_tahoe_inputs
    from raycell.tahoe.search import loader_search

    inputs = load_tahoe_inputs(cfg)
    table = loader_search(cfg, inputs, args.restart)
    shown = ["setting", "strategy", "seeds", "drug_macro_f1_mean", "drug_macro_f1_std",
             "loader_cells_per_s_mean", "loader_cells_per_s_std", "recommended"]
    print(table[shown].to_string(index=False))
    print(f"report: {Path(cfg.output.save_dir).resolve() / REPORT_FILE}")


def _run_tune_chemoe(args: argparse.Namespace) -> None:
    from raycell import load_chemoe_config

    cfg = _search_dir(_load(args, load_chemoe_config, TUNE_CHEMOE_FLAGS, CHEMOE_RELOCATED),
                      args.save_dir)
    from raycell.chemoe.inputs import prepare_inputs, resolve_data_dir
    from raycell.chemoe.search import chemoe_search

    inputs = prepare_inputs(cfg, resolve_data_dir(cfg))

    rows = chemoe_search(cfg, inputs, args.restart)
    columns = ["cell_line", "trial", *cfg.search.space, "training.seed", "status", "epochs",
               "best_val_loss"]
    print(rows[columns].to_string(index=False))


def _write_pdgrapher(args: argparse.Namespace) -> None:

    from raycell.chemoe.config import PdgrapherSpec
    from raycell.chemoe.synthetic import write_pdgrapher

    spec = _spec_from_flags(PdgrapherSpec, PdgrapherSpec(), args)
    out = write_pdgrapher(args.out, spec)
    print(f"wrote {len(spec.cell_lines)} cell lines, drugs.csv and kpgt_embeddings.npz to {out}")


def _import_pdgrapher(args: argparse.Namespace) -> None:
    from raycell.chemoe.pdgrapher import import_pdgrapher

    path = import_pdgrapher(args.backward, args.splits, args.drug_table, args.out, args.cell_line)
    print(f"wrote {path} and {path.parent / 'drugs.csv'}")


def _run_bench_chemoe(args: argparse.Namespace) -> None:
    settings = _settings(args)
    from raycell.chemoe.bench import bench_chemoe, speedup

    frame = bench_chemoe(settings)
    print(f"\nwrote {Path(settings.out).expanduser().resolve() / 'bench_chemoe.csv'}")
    print(f"  raycell / dense reference, training samples/s: {speedup(frame):.2f}x")


def _run_bench_searchers(args: argparse.Namespace) -> None:
    from raycell import load_chemoe_config

    cfg = _search_dir(_load(args, load_chemoe_config, TUNE_CHEMOE_FLAGS, CHEMOE_RELOCATED),
                      args.save_dir, "-searchers")
    from raycell.chemoe.bench_searchers import RESULTS_FILE, bench_searchers, summary
    from raycell.chemoe.inputs import prepare_inputs, resolve_data_dir
    from raycell.core.rows import results_dir

    out = results_dir(cfg.output.save_dir)  # checked in _search_dir; here, as a path
    rows = bench_searchers(cfg, prepare_inputs(cfg, resolve_data_dir(cfg)), args.searchers,
                           args.search_seeds, out, args.restart)
    print(summary(rows).to_string(index=False))
    print(f"\nwrote {out / RESULTS_FILE}")


def _run_bench_train(args: argparse.Namespace) -> None:
    settings = _settings(args)
    from raycell.tahoe.bench.train import bench_train, sparse_speedup

    frame = bench_train(settings)
    print(f"\nwrote {Path(settings.out).expanduser().resolve() / 'train.csv'}")
    print(f"  sparse / dense input, training cells/s: {sparse_speedup(frame):.2f}x")


def _write_tahoe(args: argparse.Namespace) -> None:

    from raycell.tahoe.config import TAHOE_SHAPED, TahoeSpec
    from raycell.tahoe.data.synthetic import write_tahoe

    if args.profile == "tahoe_scale":
        from raycell.tahoe.data.tahoe_scale import (
            TahoeScaleSpec,
            check_room,
            estimated_bytes,
            write_tahoe_scale,
        )

        for flag in ("plates", "cells_per_plate"):
            if getattr(args, flag) is not None:
                raise RaycellError(f"--{flag} does not apply to --profile tahoe_scale "
                                   "(Tahoe's 14 plates and their cell counts)")
        spec = _spec_from_flags(TahoeScaleSpec, TahoeScaleSpec(), args)
        print(f"writing {len(spec.plate_cells)} plates, {sum(spec.plate_cells):,} cells, "
              f"~{estimated_bytes(spec) / 1e9:.1f} GB", flush=True)
        if args.format == "parquet":  # its fast writer writes plates: they are converted
            import shutil

            from raycell.tahoe.data.hf_layout import convert_h5ad

            plates = Path(args.out).resolve().with_name(Path(args.out).name + ".plates")
            check_room(plates, spec, parquet=True)
            shutil.rmtree(plates, ignore_errors=True)
            try:
                write_tahoe_scale(plates, spec, progress=lambda line: print(line, flush=True))
                out = convert_h5ad(plates, Path(args.out))
            finally:
                shutil.rmtree(plates, ignore_errors=True)
            print(f"wrote {sum(spec.plate_cells):,} cells as parquet shards and metadata to {out}")
            return
        out = write_tahoe_scale(args.out, spec, progress=lambda line: print(line, flush=True))
        print(f"wrote {len(spec.plate_cells)} plates and drug_metadata.parquet to {out}")
        return
    profile = TAHOE_SHAPED if args.profile == "tahoe_shaped" else TahoeSpec()
    spec = _spec_from_flags(TahoeSpec, profile, args)
    if args.format == "parquet":
        from raycell.tahoe.data.synthetic import write_tahoe_parquet

        out = write_tahoe_parquet(args.out, spec)
        print(f"wrote {spec.plates} plates' cells as parquet shards and metadata to {out}")
        return
    out = write_tahoe(args.out, spec)
    print(f"wrote {spec.plates} plates and drug_metadata.parquet to {out}")


def _convert_tahoe(args: argparse.Namespace) -> None:
    from raycell.tahoe.data.hf_layout import ROWS_PER_GROUP, ROWS_PER_SHARD, convert_h5ad

    defaults = {"rows_per_shard": ROWS_PER_SHARD, "rows_per_group": ROWS_PER_GROUP}
    sizes = {flag: default if getattr(args, flag) is None else getattr(args, flag)
             for flag, default in defaults.items()}
    for flag, value in sizes.items():
        if value < 1:
            raise RaycellError(f"--{flag} must be at least 1, not {value}")
    out = convert_h5ad(Path(args.h5ad_dir).expanduser(), Path(args.out).expanduser(), **sizes)
    shards = len(list((out / "data").glob("*.parquet")))
    print(f"wrote {shards} shards and metadata to {out}")


def main(argv: list[str] | None = None, job: bool = False) -> int:
    """``job``: run as a ``ray job submit`` entry point (``jobs/``): paths are checked for
    a job's temporary working directory (core/jobs.py)."""
    try:
        args = build_parser().parse_args(argv)
        args.job = job
        if getattr(args, "verbose", False):
            from raycell.core.console import VERBOSE_ENV

            os.environ[VERBOSE_ENV] = "1"  # also for the processes Ray starts from here
        args.func(args)
    except RaycellError as err:
        print(f"raycell: error: {err}", file=sys.stderr)
        return 2
    except RunsFailed as err:
        print(f"raycell: {err}", file=sys.stderr)
        return 1
    except (Interrupted, KeyboardInterrupt) as err:
        if sys.stdout.isatty():
            print(flush=True)  # end a progress line rewritten in place
        print(f"raycell: {err or 'interrupted'}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
