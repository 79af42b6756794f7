"""Typed configs: packaged YAML, overridden from the CLI, validated with pydantic.

An unknown key or an out-of-range value is a ``RaycellError`` naming the key, so a
typo in a 9-hour experiment's config fails in the first second instead of being
silently ignored.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raycell.errors import RaycellError

SCDATASET_STRATEGIES = (
    "streaming",
    "streaming_buffer",
    "block_shuffling",
    "random",
    "weighted_block",
    "weighted_true",
)
RAY_DATA_STRATEGIES = ("ray_streaming", "ray_buffer", "ray_block_shuffle")
STRATEGY_NAMES = SCDATASET_STRATEGIES + RAY_DATA_STRATEGIES
# Arms read in blocks of block_size rows (16 by default); the others are block 1 by definition.
BLOCK_STRATEGIES = ("block_shuffling", "weighted_block", "ray_block_shuffle")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TahoeSpec(Strict):
    """What the in-format Tahoe generator writes."""

    plates: int = Field(4, ge=2)
    cells_per_plate: int = Field(50_000, ge=100)
    genes: int = Field(2_000, ge=50)
    drugs: int = Field(40, ge=4)
    cell_lines: int = Field(10, ge=2)
    sublibraries: int = Field(2, ge=1)
    # None: dense Poisson counts (small gene panels); a number: counts drawn sparse, about
    # this many non-zero genes per cell (the Tahoe-shaped profile; 62,710 genes stay cheap).
    nnz_per_cell: int | None = Field(None, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _nnz_fits(self) -> TahoeSpec:
        if self.nnz_per_cell is not None and self.nnz_per_cell > self.genes // 2:
            raise ValueError(f"nnz_per_cell {self.nnz_per_cell} must be at most genes / 2")
        return self


# Real Tahoe's width and sparsity (FACTS.md: 62,710 genes, ~1.4k non-zeros a cell) at a
# size this machine holds in its page cache: 4 plates x 50k cells, about 2.2 GB on disk.
TAHOE_SHAPED = TahoeSpec(plates=4, cells_per_plate=50_000, genes=62_710, nnz_per_cell=1_400,
                         drugs=95, cell_lines=50, sublibraries=2)


class SyntheticTahoe(TahoeSpec):
    """Demo data generated once under ``out_dir`` when ``data.h5ad_dir`` is null."""

    out_dir: str = "data/demo/tahoe"


class TahoeData(Strict):
    h5ad_dir: str | None = None
    drug_table: str | None = None  # default: drug_metadata.{parquet,csv} inside h5ad_dir
    train_plates: list[int] = Field(default_factory=lambda: list(range(1, 14)), min_length=1)
    test_plates: list[int] = Field(default_factory=lambda: [14], min_length=1)
    max_train_cells: int | None = Field(None, ge=1)
    max_test_cells: int | None = Field(None, ge=1)
    synthetic: SyntheticTahoe | None = None

    @model_validator(mode="after")
    def _disjoint_plates(self) -> TahoeData:
        both = sorted(set(self.train_plates) & set(self.test_plates))
        if both:
            raise ValueError(f"plates {both} are in both train_plates and test_plates")
        return self


class TahoeTraining(Strict):
    batch_size: int = Field(64, ge=1)
    num_epochs: int = Field(1, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    # False: raw counts into the model, as the seed does. True: log1p on the device.
    log1p: bool = False


class ScDatasetSettings(Strict):
    fetch_factor: int = Field(256, ge=1)
    num_workers: int = Field(8, ge=0)  # DataLoader workers per Ray Train worker


class RayDataSettings(Strict):
    """The Ray Data arms; the defaults match one scDataset fetch (batch 64 x fetch_factor 256)."""

    read_rows: int = Field(16_384, ge=1)  # rows per read task (one Arrow block)
    shuffle_buffer_rows: int = Field(16_384, ge=1)  # ray_buffer's and ray_block_shuffle's buffer


class WeightSettings(Strict):
    min_count_baseline: int = Field(1000, ge=0)


class StrategySettings(Strict):
    enabled: bool = True
    block_size: int = Field(1, ge=1)


def _strategy_defaults() -> dict[str, StrategySettings]:
    return {name: StrategySettings(block_size=16 if name in BLOCK_STRATEGIES else 1)
            for name in STRATEGY_NAMES}


class RaySettings(Strict):
    num_workers: int = Field(1, ge=1)  # Ray Train workers (DDP ranks) per run
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(1.0, gt=0, le=8)
    driver_cpus: float = Field(0.5, ge=0)  # Tune trial driver; fractional so it never starves
    max_concurrent_trials: int = Field(1, ge=1)  # 1: strategies are timed alone, like for like
    local_num_cpus: int | None = Field(None, ge=1)  # logical CPUs of a local cluster
    max_failures: int = Field(0, ge=0)  # Ray Train restarts from the last checkpoint


class OutputSettings(Strict):
    save_dir: str = "results/tahoe"
    experiment_name: str = "raycell-tahoe"
    checkpoints_to_keep: int | None = Field(2, ge=1)  # one checkpoint per epoch; keep the last N


class TahoeConfig(Strict):
    data: TahoeData = Field(default_factory=TahoeData)
    training: TahoeTraining = Field(default_factory=TahoeTraining)
    scdataset: ScDatasetSettings = Field(default_factory=ScDatasetSettings)
    ray_data: RayDataSettings = Field(default_factory=RayDataSettings)
    weights: WeightSettings = Field(default_factory=WeightSettings)
    strategies: dict[str, StrategySettings] = Field(default_factory=_strategy_defaults)
    ray: RaySettings = Field(default_factory=RaySettings)
    output: OutputSettings = Field(default_factory=OutputSettings)

    @model_validator(mode="after")
    def _known_strategies(self) -> TahoeConfig:
        unknown = sorted(set(self.strategies) - set(STRATEGY_NAMES))
        if unknown:
            raise ValueError(
                f"unknown strategy {unknown[0]!r} (known: {', '.join(STRATEGY_NAMES)})"
            )
        # A config may list only some strategies; the rest keep their defaults.
        merged = _strategy_defaults()
        merged.update(self.strategies)
        object.__setattr__(self, "strategies", merged)
        return self

    def enabled_strategies(self) -> list[str]:
        return [name for name in STRATEGY_NAMES if self.strategies[name].enabled]


# ---- CheMoE on PDGrapher (seed 003) ----

# PDGrapher's nine chemical cell lines; the order fixes the cell-line embedding index.
PDGRAPHER_CELL_LINES = ("A375", "A549", "BT20", "HELA", "HT29", "MCF7", "MDAMB231", "PC3", "VCAP")
CHEMOE_MODELS = ("chemoe", "identity", "mean_shift", "ridge")
MOL_ENCODERS = ("kpgt", "morgan")
FOLDS = range(5)  # CLI fold K is PDGrapher's split key K + 1


def _known_cell_lines(lines: list[str]) -> list[str]:
    for line in lines:
        if line not in PDGRAPHER_CELL_LINES:
            known = ", ".join(PDGRAPHER_CELL_LINES)
            raise ValueError(f"unknown cell line {line!r} (known: {known})")
    if len(set(lines)) != len(lines):
        raise ValueError("a cell line is listed twice")
    return lines


class PdgrapherSpec(Strict):
    """What the in-format PDGrapher generator writes (per cell line)."""

    cell_lines: list[str] = Field(default_factory=lambda: list(PDGRAPHER_CELL_LINES), min_length=1)
    samples: int = Field(1_500, ge=50)
    genes: int = Field(500, ge=20)
    drugs: int = Field(40, ge=2)
    seed: int = 0

    @model_validator(mode="after")
    def _lines(self) -> PdgrapherSpec:
        _known_cell_lines(self.cell_lines)
        return self


class SyntheticPdgrapher(PdgrapherSpec):
    """Demo data generated once under ``out_dir`` when ``data.dir`` is null."""

    out_dir: str = "data/demo/pdgrapher"


class ChemoeData(Strict):
    dir: str | None = None  # raycell's PDGrapher format (`raycell data import-pdgrapher`)
    kpgt_file: str | None = None  # default: kpgt_embeddings.npz inside dir
    allow_pickle: bool = False  # a KPGT pickle runs code when loaded: opt in explicitly
    missing_embedding: Literal["error", "zero"] = "error"
    synthetic: SyntheticPdgrapher | None = None


class ChemoeGrid(Strict):
    """Which runs: every (cell line, fold, model) is one Tune trial."""

    cell_lines: list[str] = Field(default_factory=list)
    folds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    models: list[Literal["chemoe", "identity", "mean_shift", "ridge"]] = Field(
        default_factory=lambda: ["chemoe"], min_length=1)
    mol_encoder: Literal["kpgt", "morgan"] = "kpgt"

    @model_validator(mode="after")
    def _valid(self) -> ChemoeGrid:
        _known_cell_lines(self.cell_lines)
        for fold in self.folds:
            if fold not in FOLDS:
                raise ValueError(f"fold {fold} is out of range 0..4")
        return self


class ChemoeModelSettings(Strict):
    num_experts: int = Field(4, ge=1)
    top_k: int = Field(2, ge=1)
    embed_dim: int = Field(128, ge=4)
    hidden_dim: int = Field(256, ge=4)  # encoders' and experts' first hidden layer
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _k_fits(self) -> ChemoeModelSettings:
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k {self.top_k} exceeds num_experts {self.num_experts}")
        return self


class ChemoeTraining(Strict):
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    # adamw: Adam with decoupled weight decay. adam: the seed's Adam, whose L2 term is
    # added to gradients; with MSE on [0, 1] data those gradients are ~1e-4 and weight
    # decay 1e-3 outweighs them: the model stalls at "no change" (docs/benchmarks.md).
    optimizer: Literal["adamw", "adam"] = "adamw"
    aux_loss_weight: float = Field(0.01, ge=0)
    eval_every: int = Field(10, ge=1)  # epochs between validation passes (the last always runs)
    seed: int = 0
    ridge_alphas: list[float] = Field(default_factory=lambda: [0.1, 1.0, 10.0, 100.0, 1000.0],
                                      min_length=1)  # chosen on the validation split


class ChemoeConfig(Strict):
    data: ChemoeData = Field(default_factory=ChemoeData)
    grid: ChemoeGrid = Field(default_factory=ChemoeGrid)
    model: ChemoeModelSettings = Field(default_factory=ChemoeModelSettings)
    training: ChemoeTraining = Field(default_factory=ChemoeTraining)
    ray: RaySettings = Field(default_factory=RaySettings)
    output: OutputSettings = Field(default_factory=lambda: OutputSettings(
        save_dir="results/chemoe", experiment_name="raycell-chemoe", checkpoints_to_keep=None))


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "<root>"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown config key '{key}'"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{source}: {key}: {msg}"


def packaged_config_path(name: str, workload: str = "tahoe") -> Path:
    return Path(str(resources.files("raycell") / "configs" / f"{workload}_{name}.yaml"))


def load_yaml(name_or_path: str, workload: str = "tahoe") -> tuple[dict[str, Any], str]:
    """Read a packaged config by name (``default``, ``demo``, ...) or a YAML file."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = packaged_config_path(name_or_path, workload)
        if not path.exists():
            known = sorted(p.stem.removeprefix(f"{workload}_")
                           for p in path.parent.glob(f"{workload}_*.yaml"))
            raise RaycellError(
                f"config {name_or_path!r} is neither a file nor a packaged config "
                f"({', '.join(known)})"
            )
    if not path.is_file():
        raise RaycellError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RaycellError(f"config file {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(raw, dict):
        raise RaycellError(f"config file {path} must hold a mapping at the top level")
    return raw, str(path)


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RaycellError(f"config key {dotted!r}: {part!r} is not a section")
    node[leaf] = value


def _load(model: type[Strict], workload: str, name_or_path: str,
          overrides: dict[str, Any] | None) -> Any:
    raw, source = load_yaml(name_or_path, workload)
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    if overrides:
        source += " + command line"
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise RaycellError(_format_error(err, source)) from None


def load_tahoe_config(name_or_path: str, overrides: dict[str, Any] | None = None) -> TahoeConfig:
    """Load a config and apply ``{"dotted.key": value}`` overrides (CLI values win)."""
    return _load(TahoeConfig, "tahoe", name_or_path, overrides)


def load_chemoe_config(name_or_path: str,
                       overrides: dict[str, Any] | None = None) -> ChemoeConfig:
    """Load a CheMoE config and apply ``{"dotted.key": value}`` overrides (CLI values win)."""
    return _load(ChemoeConfig, "chemoe", name_or_path, overrides)


def config_key(payload: dict[str, Any]) -> str:
    """A short, stable hash of a run's config: the run key results are written under."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]

