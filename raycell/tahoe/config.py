"""The Tahoe experiment's config: data, training, loaders, arms, Ray, outputs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from raycell.core.config import OutputSettings, RaySettings, Seed, Strict, load_config
from raycell.tahoe.arms import ARM_NAMES, ARMS, DEFAULT_BLOCK


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
    seed: Seed = 0

    @model_validator(mode="after")
    def _nnz_fits(self) -> TahoeSpec:
        if self.nnz_per_cell is not None and self.nnz_per_cell > self.genes // 2:
            raise ValueError(f"nnz_per_cell {self.nnz_per_cell} must be at most genes / 2")
        return self


# Real Tahoe's width and sparsity (docs/facts.md: 62,710 genes, ~1.4k non-zeros a cell) at a
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
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    # False: raw counts into the model, as the seed does. True: log1p on the device.
    log1p: bool = False
    # How batches reach the model: CSR rows (a sparse matmul) or dense rows, with the same
    # numbers to float tolerance. auto: sparse on a CPU, where ``raycell bench train``
    # measures it 5.0x faster at 62,710 genes (docs/benchmarks.md); dense on a GPU until
    # a GPU bench says otherwise.
    input: Literal["auto", "sparse", "dense"] = "auto"
    max_steps: int | None = Field(None, ge=1)  # batches per epoch at most: pilots, start-up

    def sparse_on(self, device_type: str) -> bool:
        return self.input == "sparse" or (self.input == "auto" and device_type == "cpu")


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
    # None: the arm's own (16 for the block arms, 1 for the others), also when a config
    # lists an arm with only some of its keys.
    block_size: int | None = Field(None, ge=1)


def _strategy_defaults() -> dict[str, StrategySettings]:
    return {name: StrategySettings() for name in ARMS}


class TahoeOutput(OutputSettings):
    save_dir: str = "results/tahoe"
    experiment_name: str = "raycell-tahoe"


class TahoeConfig(Strict):
    data: TahoeData = Field(default_factory=TahoeData)
    training: TahoeTraining = Field(default_factory=TahoeTraining)
    scdataset: ScDatasetSettings = Field(default_factory=ScDatasetSettings)
    ray_data: RayDataSettings = Field(default_factory=RayDataSettings)
    weights: WeightSettings = Field(default_factory=WeightSettings)
    strategies: dict[str, StrategySettings] = Field(default_factory=_strategy_defaults)
    ray: RaySettings = Field(default_factory=RaySettings)
    output: TahoeOutput = Field(default_factory=TahoeOutput)

    @model_validator(mode="after")
    def _known_strategies(self) -> TahoeConfig:
        unknown = sorted(set(self.strategies) - set(ARM_NAMES))
        if unknown:
            raise ValueError(f"unknown strategy {unknown[0]!r} (known: {', '.join(ARM_NAMES)})")
        for name, settings in self.strategies.items():
            if not ARMS[name].blocked and settings.block_size not in (None, 1):
                raise ValueError(f"strategies.{name}.block_size is {settings.block_size}, but "
                                 f"{name} reads single rows by definition (block size 1)")
        # A config may list only some strategies, each with only some keys; the rest
        # keep their defaults.
        merged = _strategy_defaults() | self.strategies
        for name, settings in merged.items():
            if settings.block_size is None:
                merged[name] = settings.model_copy(
                    update={"block_size": DEFAULT_BLOCK if ARMS[name].blocked else 1})
        object.__setattr__(self, "strategies", merged)
        return self

    def enabled_strategies(self) -> list[str]:
        return [name for name in ARM_NAMES if self.strategies[name].enabled]


def load_tahoe_config(name_or_path: str, overrides: dict[str, Any] | None = None) -> TahoeConfig:
    """Load a Tahoe config, strictly validated.

    Parameters
    ----------
    name_or_path : str
        A packaged config (``"default"``, ``"pilot"``, ``"demo"``) or a YAML file.
    overrides : dict, optional
        ``{"dotted.key": value}`` applied over the file, as the CLI's flags are
        (``{"training.num_epochs": 1, "data.h5ad_dir": "/data/tahoe"}``).

    Returns
    -------
    TahoeConfig

    Raises
    ------
    RaycellError
        An unknown key, a bad value or an unreadable file, naming the key or file.
    """
    return load_config(TahoeConfig, "tahoe", name_or_path, overrides)
