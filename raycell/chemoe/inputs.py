"""Everything a CheMoE grid reads, resolved and validated up front.

Validation happens in the launching process before Ray starts: every cell line, fold
and drug of the grid, and every molecule's features, so a bad file, drug or SMILES
fails in seconds with one line and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raycell.chemoe.config import ChemoeConfig
from raycell.chemoe.molecules import KPGT_FILE, drug_features, load_kpgt
from raycell.chemoe.pdgrapher import DRUGS_FILE, read_drug_table, read_info
from raycell.chemoe.synthetic import ensure_pdgrapher
from raycell.core.errors import RaycellError

USES_MOLECULES = ("chemoe", "ridge")


@dataclass(frozen=True)
class ChemoeInputs:
    """Validated inputs: the data folder and the drug features of the grid's encoder."""

    data_dir: Path
    drug_names: list[str]
    features: np.ndarray  # (n_drugs, dim), rows in drug_names order
    zeroed: int  # drugs without a structure/vector, zero-filled (--missing_embedding zero)


def mol_encoder_of(model: str, cfg: ChemoeConfig) -> str:
    return cfg.grid.mol_encoder if model in USES_MOLECULES else "none"


def prepare_inputs(cfg: ChemoeConfig, data_dir: Path) -> ChemoeInputs:
    """Check every cell line, fold and drug of the grid; build the drug features once."""
    if not cfg.grid.cell_lines:
        raise RaycellError("choose one or more cell lines: --cell_line CL [CL ...]")
    drugs_used: set[str] = set()
    for line in cfg.grid.cell_lines:
        for fold in cfg.grid.folds:
            drugs_used.update(read_info(data_dir, line, fold).drugs)
    table = read_drug_table(data_dir / DRUGS_FILE)
    unknown = sorted(drugs_used - set(table["name"]))
    if unknown:
        raise RaycellError(f"{len(unknown)} drug(s) are not in {data_dir / DRUGS_FILE}: "
                           f"{', '.join(unknown[:10])}")
    table = table[table["name"].isin(drugs_used)].reset_index(drop=True)
    if not any(m in USES_MOLECULES for m in cfg.grid.models):
        return ChemoeInputs(data_dir, table["name"].tolist(), np.zeros((len(table), 1),
                            np.float32), 0)
    kpgt = None
    if cfg.grid.mol_encoder == "kpgt":
        path = Path(cfg.data.kpgt_file) if cfg.data.kpgt_file else data_dir / KPGT_FILE
        if cfg.data.kpgt_file is None and not path.is_file():
            raise RaycellError(f"--mol_encoder kpgt needs --kpgt_file (no {KPGT_FILE} in "
                               f"{data_dir}); or use --mol_encoder morgan")
        kpgt = load_kpgt(path, cfg.data.allow_pickle)
    features, zeroed = drug_features(table, cfg.grid.mol_encoder, kpgt, cfg.data.missing_embedding)
    return ChemoeInputs(data_dir, table["name"].tolist(), features, zeroed)


def resolve_data_dir(cfg: ChemoeConfig) -> Path:
    """``data.dir`` as an absolute folder, or the demo data (generated once)."""
    if cfg.data.dir is not None:
        data = Path(cfg.data.dir).expanduser().resolve()
        if not data.is_dir():
            raise RaycellError(f"--data {data} is not a folder")
        return data
    if cfg.data.synthetic is None:
        raise RaycellError("no data: pass --data DIR (or set data.synthetic in the config)")
    spec = cfg.data.synthetic
    data = ensure_pdgrapher(spec.out_dir, spec)
    print(f"chemoe: demo data in {data}", flush=True)
    return data
