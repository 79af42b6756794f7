"""A CheMoE run's samples (one cell line, one fold) and its predictions file.

Ray-free: the CheMoE worker and the baselines read their data and write their
predictions through these two functions, so every model is scored on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raycell.chemoe.config import PDGRAPHER_CELL_LINES
from raycell.chemoe.pdgrapher import CellLineData, read_cell_line, read_split

PREDICTIONS_FILE = "predictions.npz"


@dataclass(frozen=True)
class RunSamples:
    data: CellLineData
    split: dict[str, np.ndarray]  # train / val / test sample indices
    mol: np.ndarray  # (n_drugs, dim) molecule features
    mol_row: np.ndarray  # (n,) each sample's row of ``mol``
    cell_index: int  # the cell line's embedding index

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(diseased, treated, per-sample molecule features, indices) of one split."""
        idx = self.split[name]
        return (self.data.diseased[idx], self.data.treated[idx], self.mol[self.mol_row[idx]],
                idx)


def load_samples(data_dir: Path, cell_line: str, fold: int, drug_names: list[str],
                 features: np.ndarray) -> RunSamples:
    data = read_cell_line(data_dir, cell_line)
    index = {name: i for i, name in enumerate(drug_names)}
    return RunSamples(data, read_split(data_dir, cell_line, fold), features,
                      np.array([index[d] for d in data.drug], np.int64),
                      PDGRAPHER_CELL_LINES.index(cell_line))


def write_predictions(run_dir: Path, samples: RunSamples, pred: np.ndarray) -> Path:
    """``predictions.npz`` for the test split: pred, treated, diseased, sample_index,
    drug, cell_line (strings as fixed-width unicode, so no pickle is needed to read it)."""
    diseased, treated, _, idx = samples.part("test")
    path = Path(run_dir) / PREDICTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, pred=np.asarray(pred, np.float32), treated=treated, diseased=diseased,
             sample_index=idx, drug=samples.data.drug[idx].astype(str),
             cell_line=np.full(len(idx), samples.data.cell_line))
    return path
