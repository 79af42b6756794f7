"""``raycell.run_chemoe``: a CheMoE grid as one call, validated as the CLI validates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raycell.chemoe.config import ChemoeConfig, load_chemoe_config
from raycell.core.rows import results_dir

if TYPE_CHECKING:
    import pandas as pd


def run_chemoe(config: ChemoeConfig | str, restart: bool = False) -> pd.DataFrame:
    """Train and score every (cell line, fold, model) of the config's grid.

    Parameters
    ----------
    config : ChemoeConfig or str
        A loaded config (``load_chemoe_config``; ``grid.cell_lines`` must name at least
        one line), or the name of a packaged config (``"demo"``) or a YAML path.
    restart : bool, default False
        Forget these runs' files, rows, checkpoints and MLflow runs and train them
        afresh. Without it, finished runs are skipped and interrupted ones resume
        from their last checkpoint.

    Returns
    -------
    pandas.DataFrame
        The grid's rows of ``results.csv``: one per run key, with r2_top20/40/80,
        pearson_de, n_test and n_scored on the test split and the MLflow run id.
        Each run's predictions and weights are under ``<save_dir>/runs/<run_key>/``.

    Raises
    ------
    RaycellError
        For anything a user can get wrong (no cell line, a fold out of range, a drug
        without a structure, an invalid SMILES, a missing file, ...), before anything
        is written.
    """
    cfg = config if isinstance(config, ChemoeConfig) else load_chemoe_config(config)
    results_dir(cfg.output.save_dir)

    from raycell.chemoe.inputs import prepare_inputs, resolve_data_dir

    inputs = prepare_inputs(cfg, resolve_data_dir(cfg))  # validated before anything is written
    if inputs.zeroed:
        print(f"chemoe: {inputs.zeroed} of {len(inputs.drug_names)} drugs have no "
              f"{cfg.grid.mol_encoder} features: zeros (--missing_embedding zero)", flush=True)
    from raycell.chemoe.grid import chemoe_grid

    return chemoe_grid(cfg, inputs, restart)
