"""The Tahoe experiment's config: data, training, loaders, strategies, Ray, outputs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from raycell.core.config import (
    Device,
    OutputSettings,
    RaySettings,
    Seed,
    Strict,
    load_config,
    with_settings,
)
from raycell.core.errors import RaycellError
from raycell.core.search import Kind, SearchSpace
from raycell.tahoe.loaders.strategies import DEFAULT_BLOCK, STRATEGIES, STRATEGY_NAMES


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
    # The Hugging Face release's layout (tahoe/data/hf_layout.py): a snapshot folder.
    parquet_dir: str | None = None
    # default: drug_metadata.{parquet,csv} inside h5ad_dir, metadata/drug_metadata.parquet
    # inside parquet_dir
    drug_table: str | None = None
    train_plates: list[int] = Field(default_factory=lambda: list(range(1, 14)), min_length=1)
    test_plates: list[int] = Field(default_factory=lambda: [14], min_length=1)
    max_train_cells: int | None = Field(None, ge=1)
    max_test_cells: int | None = Field(None, ge=1)
    synthetic: SyntheticTahoe | None = None

    @model_validator(mode="after")
    def _one_format(self) -> TahoeData:
        if self.h5ad_dir is not None and self.parquet_dir is not None:
            raise ValueError("set data.h5ad_dir or data.parquet_dir, not both")
        return self

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
    """The Ray Data strategies; the defaults match one scDataset fetch (batch 64 x fetch_factor
    256)."""

    read_rows: int = Field(16_384, ge=1)  # rows per read task (one Arrow block)
    shuffle_buffer_rows: int = Field(16_384, ge=1)  # ray_buffer's and ray_block_shuffle's buffer


class WeightSettings(Strict):
    min_count_baseline: int = Field(1000, ge=0)


class StrategySettings(Strict):
    enabled: bool = True
    # None: the strategy's own (16 for the block strategies, 1 for the others), also when a config
    # lists a strategy with only some of its keys.
    block_size: int | None = Field(None, ge=1)


def _strategy_defaults() -> dict[str, StrategySettings]:
    return {name: StrategySettings() for name in STRATEGIES}


class TahoeOutput(OutputSettings):
    save_dir: str = "results/tahoe"
    experiment_name: str = "raycell-tahoe"


def _check_known(name: str) -> str:
    if name not in STRATEGY_NAMES:
        raise ValueError(f"unknown strategy {name!r} (known: {', '.join(STRATEGY_NAMES)})")
    return name


# The space's own key for the trial strategy's block size (``strategies.<name>.block_size``).
STRATEGY_BLOCK = "strategy.block_size"
# A loader search run's settings by their short names (its MLflow params, search.csv's
# columns) and the keys they set.
LOADER_KEYS = {"block_size": STRATEGY_BLOCK, "fetch_factor": "scdataset.fetch_factor",
               "num_workers": "scdataset.num_workers",
               "shuffle_buffer_rows": "ray_data.shuffle_buffer_rows",
               "read_rows": "ray_data.read_rows"}


def _default_loader_space() -> dict[str, dict[str, list]]:
    return {STRATEGY_BLOCK: {"choice": [4, 8, 16, 64, 256]},
            "scdataset.fetch_factor": {"choice": [64, 256, 1024, 2048]},
            "scdataset.num_workers": {"choice": [0, 1, 2]},
            "ray_data.shuffle_buffer_rows": {"choice": [4_096, 16_384, 65_536]}}


class LoaderSearch(SearchSpace):
    """``raycell tune loaders``: per strategy, trials drawn from ``space`` (dotted keys of
    this config; ``strategy.block_size`` is the trial strategy's block size; a key that
    changes nothing of a strategy is left out of its trials). Each trial measures its
    loader in a Ray Train worker, then trains ``epochs`` epochs and scores the test plates."""

    space: dict[str, dict[Kind, list]] = Field(default_factory=_default_loader_space,
                                               min_length=1)
    samples: int = Field(6, ge=1)
    strategies: list[str] = Field(default_factory=lambda: ["block_shuffling",
                                                           "ray_block_shuffle"], min_length=1)
    # Run at this config's own settings beside the trials (and over every repeat), so
    # the recommendation's figures stand beside it. None: no reference.
    reference: str | None = "random"
    suggested: bool = True  # scdataset.suggest_parameters()'s setting, as a block_shuffling trial
    epochs: int = Field(1, ge=1)  # the short training of a trial
    measure_seconds: float = Field(10.0, gt=0)  # the loader alone, after warmup_seconds
    warmup_seconds: float = Field(3.0, ge=0)
    # cold: plates evicted from the page cache before and during the timing, as on data
    # that does not fit in memory (Tahoe-100M's 314 GB); warm: as the page cache has them
    cache: Literal["cold", "warm"] = "cold"
    f1_tolerance: float = Field(0.01, ge=0)  # drug macro F1 a recommendation may give up
    repeats: int = Field(3, ge=1)  # seeds a recommendation is confirmed over

    @field_validator("strategies")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        for name in names:
            _check_known(name)
        return list(dict.fromkeys(names))

    @field_validator("reference")
    @classmethod
    def _known_reference(cls, name: str | None) -> str | None:
        return name if name is None else _check_known(name)


class TahoeConfig(Strict):
    data: TahoeData = Field(default_factory=TahoeData)
    training: TahoeTraining = Field(default_factory=TahoeTraining)
    scdataset: ScDatasetSettings = Field(default_factory=ScDatasetSettings)
    ray_data: RayDataSettings = Field(default_factory=RayDataSettings)
    weights: WeightSettings = Field(default_factory=WeightSettings)
    strategies: dict[str, StrategySettings] = Field(default_factory=_strategy_defaults)
    ray: RaySettings = Field(default_factory=RaySettings)
    output: TahoeOutput = Field(default_factory=TahoeOutput)
    search: LoaderSearch = Field(default_factory=LoaderSearch)

    @model_validator(mode="after")
    def _known_strategies(self) -> TahoeConfig:
        for name in sorted(set(self.strategies) - set(STRATEGY_NAMES)):
            _check_known(name)
        for name, settings in self.strategies.items():
            if not STRATEGIES[name].blocked and settings.block_size not in (None, 1):
                raise ValueError(f"strategies.{name}.block_size is {settings.block_size}, but "
                                 f"{name} reads single rows by definition (block size 1)")
        # A config may list only some strategies, each with only some keys; the rest
        # keep their defaults.
        merged = _strategy_defaults() | self.strategies
        for name, settings in merged.items():
            if settings.block_size is None:
                merged[name] = settings.model_copy(
                    update={"block_size": DEFAULT_BLOCK if STRATEGIES[name].blocked else 1})
        object.__setattr__(self, "strategies", merged)
        return self

    def enabled_strategies(self) -> list[str]:
        return [name for name in STRATEGY_NAMES if self.strategies[name].enabled]


def configured(raw: dict[str, Any], strategy: str, trial: dict[str, Any]) -> TahoeConfig:
    """A config (as a dict) with a loader search trial's ``{dotted key: value}`` set in it;
    ``strategy.block_size`` is ``strategy``'s."""
    return with_settings(TahoeConfig, raw, {
        f"strategies.{strategy}.block_size" if key == STRATEGY_BLOCK else key: value
        for key, value in trial.items()})


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


# The loader bench's reference loaders beside the registry's strategies: what the seed
# ran (AnnCollection), what per-row reads cost, and what in-order reads and the bytes
# themselves allow (raycell/tahoe/bench/references.py).
REFERENCE_LOADERS = ("per_row_backed", "seed_anncollection", "sequential_limit", "storage_limit")
BENCH_STRATEGIES = STRATEGY_NAMES + REFERENCE_LOADERS


def check_bench_strategies(names) -> tuple[str, ...]:
    unknown = [n for n in names if n not in BENCH_STRATEGIES]
    if unknown:
        raise RaycellError(f"unknown strategy {unknown[0]!r} (known: "
                           f"{', '.join(BENCH_STRATEGIES)})")
    return tuple(dict.fromkeys(names))


class LoaderBenchSettings(Strict):
    """``raycell bench loaders`` (``raycell.bench_loaders``); each field is its flag."""

    data: str | None = Field(None, description="plate directory (default: Tahoe-shaped "
                                                "data in data/bench/tahoe-shaped, made once)")
    format: Literal["h5ad", "parquet", "both"] = Field(
        "h5ad", description="the plates, the same cells as parquet shards (converted once "
        "into <out>/snapshot), or both side by side")
    snapshot: str | None = Field(None, description="the parquet to read instead of the "
                                 "converted plates: a snapshot folder, or s3:// / gs:// "
                                 "(always cold: no page cache)")
    strategies: tuple[str, ...] = Field(BENCH_STRATEGIES, description="what to measure: "
                                        "strategies and reference loaders")
    where: tuple[Literal["bare", "ray_train"], ...] = Field(
        ("bare", "ray_train"), description="in this process, in a Ray Train worker, or both")
    seconds: float = Field(10.0, gt=0, description="measured seconds per strategy")
    warmup: float = Field(3.0, ge=0, description="warm-up seconds per strategy")
    rounds: int = Field(2, gt=0, description="rounds over all strategies; the best counts")
    batch_size: int = Field(64, gt=0)
    fetch_factor: int = Field(256, gt=0)
    block_size: int = Field(16, gt=0)
    num_workers: int = Field(0, ge=0, description="DataLoader workers (scDataset)")
    device: Device = Field("cpu", description="the consumer's device: cpu | cuda")
    cache: Literal["cold", "warm", "both"] = Field(
        "both", description="cold (plates evicted from the page cache before every "
        "strategy) | warm (plates read once before every strategy) | both")
    consumer: Literal["sparse", "dense"] | None = Field(
        None, description="what the consumer makes of a batch: sparse (CsrRows) | dense; "
        "default: what training uses on --device (sparse on cpu, dense on cuda)")
    threads: int | None = Field(None, ge=1, description="torch threads (default: torch's)")
    seed: Seed = 0
    out: str = "results/bench"

    @field_validator("strategies")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return check_bench_strategies(names)

    @field_validator("where")
    @classmethod
    def _once_each(cls, where: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(where))

    @model_validator(mode="after")
    def _snapshot_is_parquet(self) -> LoaderBenchSettings:
        if self.snapshot is not None and self.format == "h5ad":
            raise ValueError("snapshot is parquet: use --format parquet or both")
        return self

    @model_validator(mode="after")
    def _consumer_of_the_device(self) -> LoaderBenchSettings:
        if self.consumer is None:
            self.consumer = "sparse" if self.device == "cpu" else "dense"
        return self

    @property
    def caches(self) -> tuple[str, ...]:
        return ("cold", "warm") if self.cache == "both" else (self.cache,)


class TrainBenchSettings(Strict):
    """``raycell bench train`` (``raycell.bench_train``); each field is its flag."""

    genes: int = Field(62_710, gt=0, description="62710: Tahoe's width")
    batch_size: int = Field(64, gt=0)
    nnz_per_cell: int = Field(1_400, gt=0, description="Tahoe: ~1,400")
    seconds: float = Field(10.0, gt=0, description="measured seconds per round")
    rounds: int = Field(2, gt=0)
    device: Device = Field("cpu", description="cpu | cuda")
    out: str = "results/bench"

    @model_validator(mode="after")
    def _nnz_fits(self) -> TrainBenchSettings:
        if self.nnz_per_cell > self.genes // 2:
            raise ValueError(f"--nnz_per_cell {self.nnz_per_cell} must be at most --genes / 2")
        return self
