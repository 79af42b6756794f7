"""``raycell.run_tahoe``: the Tahoe experiment as one call, validated as the CLI validates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from raycell.core.errors import RaycellError
from raycell.core.rows import results_dir
from raycell.tahoe.config import TahoeConfig, load_tahoe_config
from raycell.tahoe.loaders.strategies import get_strategy

if TYPE_CHECKING:
    import pandas as pd


def check_strategies(cfg: TahoeConfig, strategies: Sequence[str] | None) -> list[str]:
    """The strategies to run: the named ones (each known), or every enabled one for ``None``."""
    if strategies is None:
        enabled = cfg.enabled_strategies()
        if not enabled:
            raise RaycellError("--all: every strategy is disabled in the config")
        return enabled
    if isinstance(strategies, str):
        strategies = [strategies]
    if not strategies:
        raise RaycellError("choose a strategy: --strategy NAME or --all")
    for name in strategies:
        get_strategy(name)  # an unknown name is a RaycellError listing the known ones
    return list(dict.fromkeys(strategies))


def run_tahoe(config: TahoeConfig | str, strategies: Sequence[str] | None = None,
              restart: bool = False) -> pd.DataFrame:
    """Train the multi-task classifier once per (strategy, seed) and score it.

    Parameters
    ----------
    config : TahoeConfig or str
        A loaded config (``load_tahoe_config``), or the name of a packaged config
        (``"demo"``, ``"pilot"``, ``"default"``) or a YAML path.
    strategies : sequence of str, optional
        Strategies to run, by registry name (``"block_shuffling"``, ``"ray_buffer"``, ...);
        ``None`` runs every strategy the config enables (the CLI's ``--all``).
    restart : bool, default False
        Forget these runs' rows, checkpoints and MLflow runs and train them afresh.
        Without it, runs whose rows exist are skipped and interrupted runs resume
        from their last epoch checkpoint.

    Returns
    -------
    pandas.DataFrame
        The rows of ``summary.csv`` for these (strategy, seed) run keys: time,
        throughput, the four tasks' F1 and accuracy, the MLflow run id. Figures are
        written to ``<save_dir>/figures``.

    Raises
    ------
    RaycellError
        For anything a user can get wrong (unknown strategy, a missing or corrupt
        plate, a drug missing from the table, a save_dir that is a file or holds these
        runs made with other settings, a corrupt checkpoint, ...), before anything
        is written.
    """
    cfg = config if isinstance(config, TahoeConfig) else load_tahoe_config(config)
    names = check_strategies(cfg, strategies)
    results_dir(cfg.output.save_dir)  # a save_dir that is a file: refused before Ray starts

    from raycell.tahoe.grid import tahoe_grid
    from raycell.tahoe.inputs import load_tahoe_inputs

    inputs = load_tahoe_inputs(cfg)  # validates every input before anything is written
    return tahoe_grid(cfg, inputs, names, restart)  # figures: written by the grid
