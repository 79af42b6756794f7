"""raycell: single-cell training experiments on Ray.

The public API, what a notebook calls (the CLI calls the same functions):

>>> import raycell
>>> cfg = raycell.load_tahoe_config("demo", {"training.num_epochs": 1})
>>> summary = raycell.run_tahoe(cfg, ["block_shuffling", "random"])  # doctest: +SKIP
>>> rows = raycell.run_chemoe(raycell.load_chemoe_config("demo"))  # doctest: +SKIP
>>> results = raycell.load_tahoe_results("results/tahoe-demo")  # doctest: +SKIP

Both validate their inputs before anything is written and raise ``RaycellError`` with
one line naming the culprit.
"""

from raycell.chemoe.api import run_chemoe
from raycell.chemoe.config import ChemoeConfig, load_chemoe_config
from raycell.core.errors import RaycellError
from raycell.tahoe.api import run_tahoe
from raycell.tahoe.config import TahoeConfig, load_tahoe_config
from raycell.tahoe.results import TahoeResults, load_tahoe_results

__all__ = ["ChemoeConfig", "RaycellError", "TahoeConfig", "TahoeResults", "load_chemoe_config",
           "load_tahoe_config", "load_tahoe_results", "run_chemoe", "run_tahoe"]
