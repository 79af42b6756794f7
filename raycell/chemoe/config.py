"""CheMoE's config: data, grid (cell lines x folds x models), model, training, Ray, outputs,
and the search space of ``raycell tune chemoe``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from raycell.core.config import (
    Device,
    OutputSettings,
    RaySettings,
    Seed,
    Strict,
    load_config,
    with_settings,
)
from raycell.core.search import Kind, SearchSpace

# PDGrapher's nine chemical cell lines; the order fixes the cell-line embedding index.
PDGRAPHER_CELL_LINES = ("A375", "A549", "BT20", "HELA", "HT29", "MCF7", "MDAMB231", "PC3", "VCAP")
# The models of a grid (CheMoE and the baselines scored by the same evaluator) and the
# molecule encoders: one definition each, the config's types.
ModelName = Literal["chemoe", "identity", "mean_shift", "ridge"]
MolEncoder = Literal["kpgt", "morgan"]
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
    seed: Seed = 0

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
    models: list[ModelName] = Field(
        default_factory=lambda: ["chemoe"], min_length=1)
    mol_encoder: MolEncoder = "kpgt"

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
    seed: Seed = 0
    ridge_alphas: list[float] = Field(default_factory=lambda: [0.1, 1.0, 10.0, 100.0, 1000.0],
                                      min_length=1)  # chosen on the validation split


class ChemoeOutput(OutputSettings):
    save_dir: str = "results/chemoe"
    experiment_name: str = "raycell-chemoe"
    checkpoints_to_keep: int | None = Field(None, ge=1)  # CheMoE keeps its final checkpoint


def _default_space() -> dict[str, dict[str, list]]:
    return {"training.lr": {"loguniform": [1e-4, 1e-2]},
            "model.num_experts": {"choice": [2, 4, 8]},
            "model.top_k": {"choice": [1, 2]},
            "model.embed_dim": {"choice": [64, 128, 256]},
            "training.aux_loss_weight": {"loguniform": [1e-3, 1e-1]}}


class ChemoeSearch(SearchSpace):
    """``raycell tune chemoe``: trials drawn from ``space`` (dotted keys of this config),
    trained under ASHA on validation loss by epoch, per cell line (the grid's first fold)."""

    space: dict[str, dict[Kind, list]] = Field(default_factory=_default_space, min_length=1)
    # Trial 0 is the config's own setting (the search cannot end above it), and the
    # first to run, so ASHA's first rungs are set by the setting the user has.
    include_config: bool = True
    # Seeds the recommendation is confirmed over: per cell line, the best trial and the
    # config's own train again with the next repeats - 1 seeds; the lower mean is written.
    repeats: int = Field(3, ge=1)
    grace_period: int = Field(5, ge=1)  # epochs every trial trains before ASHA may stop it
    reduction_factor: float = Field(3, gt=1)  # 1 in reduction_factor goes on at each rung


class ChemoeConfig(Strict):
    data: ChemoeData = Field(default_factory=ChemoeData)
    grid: ChemoeGrid = Field(default_factory=ChemoeGrid)
    model: ChemoeModelSettings = Field(default_factory=ChemoeModelSettings)
    training: ChemoeTraining = Field(default_factory=ChemoeTraining)
    ray: RaySettings = Field(default_factory=RaySettings)
    output: ChemoeOutput = Field(default_factory=ChemoeOutput)
    search: ChemoeSearch = Field(default_factory=ChemoeSearch)


def configured(raw: dict[str, Any], trial: dict[str, Any]) -> ChemoeConfig:
    """A config (as a dict) with a search trial's ``{dotted key: value}`` set in it."""
    return with_settings(ChemoeConfig, raw, trial)


def load_chemoe_config(name_or_path: str,
                       overrides: dict[str, Any] | None = None) -> ChemoeConfig:
    """Load a CheMoE config, strictly validated.

    Parameters
    ----------
    name_or_path : str
        A packaged config (``"default"``, ``"demo"``) or a YAML file.
    overrides : dict, optional
        ``{"dotted.key": value}`` applied over the file, as the CLI's flags are
        (``{"grid.cell_lines": ["A549"], "grid.folds": [0, 1]}``).

    Returns
    -------
    ChemoeConfig

    Raises
    ------
    RaycellError
        An unknown key, a bad value (a fold outside 0..4, top_k above num_experts) or
        an unreadable file, naming the key or file.
    """
    return load_config(ChemoeConfig, "chemoe", name_or_path, overrides)


class ChemoeBenchSettings(Strict):
    """``raycell bench chemoe`` (``raycell.bench_chemoe``); each field is its flag."""

    genes: int = Field(1_000, gt=0, description="10716: PDGrapher's full width")
    batch_size: int = Field(64, gt=0)
    mol_dim: int = Field(2304, gt=0, description="2304 KPGT, 1024 Morgan")
    num_experts: int = Field(4, gt=0)
    top_k: int = Field(2, gt=0)
    embed_dim: int = Field(128, gt=0)
    hidden_dim: int = Field(256, gt=0)
    seconds: float = Field(10.0, gt=0, description="measured seconds per round")
    rounds: int = Field(2, gt=0)
    device: Device = Field("cpu", description="cpu | cuda (bf16 autocast)")
    out: str = "results/bench"

    @model_validator(mode="after")
    def _top_k_fits(self) -> ChemoeBenchSettings:
        if self.top_k > self.num_experts:
            raise ValueError(f"--top_k {self.top_k} exceeds --num_experts {self.num_experts}")
        return self
