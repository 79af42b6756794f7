"""raycell: single-cell training experiments on Ray.

The public API, what a notebook calls (the CLI calls the same functions):

>>> import raycell
>>> cfg = raycell.load_tahoe_config("demo", {"training.num_epochs": 1})
>>> summary = raycell.run_tahoe(cfg, ["block_shuffling", "random"])  # doctest: +SKIP
>>> rows = raycell.run_chemoe(raycell.load_chemoe_config("demo"))  # doctest: +SKIP
>>> results = raycell.load_tahoe_results("results/tahoe-demo")  # doctest: +SKIP
>>> chemoe = raycell.load_chemoe_results("results/chemoe-demo")  # doctest: +SKIP
>>> bench = raycell.bench_loaders(raycell.LoaderBenchSettings(seconds=2))  # doctest: +SKIP

Both validate their inputs before anything is written and raise ``RaycellError`` with
one line naming the culprit.

Names load on first use (PEP 562): every Ray worker process imports ``raycell`` on its
way to its slice's code, and should not pay for MLflow, the other slice or the grids.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from raycell.core.errors import RaycellError

# public name -> the module that defines it
_API = {
    "ChemoeBenchSettings": "raycell.chemoe.config",
    "bench_chemoe": "raycell.chemoe.bench",
    "LoaderBenchSettings": "raycell.tahoe.config",
    "bench_loaders": "raycell.tahoe.bench.loaders",
    "TrainBenchSettings": "raycell.tahoe.config",
    "bench_train": "raycell.tahoe.bench.train",
    "ChemoeConfig": "raycell.chemoe.config",
    "ChemoeResults": "raycell.chemoe.results",
    "load_chemoe_results": "raycell.chemoe.results",
    "load_chemoe_config": "raycell.chemoe.config",
    "run_chemoe": "raycell.chemoe.api",
    "TahoeConfig": "raycell.tahoe.config",
    "load_tahoe_config": "raycell.tahoe.config",
    "run_tahoe": "raycell.tahoe.api",
    "TahoeResults": "raycell.tahoe.outputs.results",
    "load_tahoe_results": "raycell.tahoe.outputs.results",
}

__all__ = ["ChemoeBenchSettings", "ChemoeConfig", "ChemoeResults", "LoaderBenchSettings",
           "RaycellError", "TahoeConfig", "TahoeResults", "TrainBenchSettings", "bench_chemoe",
           "bench_loaders", "bench_train", "load_chemoe_config", "load_chemoe_results",
           "load_tahoe_config", "load_tahoe_results", "run_chemoe", "run_tahoe"]

if TYPE_CHECKING:
    from raycell.chemoe.api import run_chemoe
    from raycell.chemoe.bench import bench_chemoe
    from raycell.chemoe.config import ChemoeBenchSettings, ChemoeConfig, load_chemoe_config
    from raycell.chemoe.results import ChemoeResults, load_chemoe_results
    from raycell.tahoe.api import run_tahoe
    from raycell.tahoe.bench.loaders import bench_loaders
    from raycell.tahoe.bench.train import bench_train
    from raycell.tahoe.config import (
        LoaderBenchSettings,
        TahoeConfig,
        TrainBenchSettings,
        load_tahoe_config,
    )
    from raycell.tahoe.outputs.results import TahoeResults, load_tahoe_results


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'raycell' has no attribute {name!r}")
    value = getattr(import_module(_API[name]), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
