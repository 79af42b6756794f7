"""PDGrapher chemical data in raycell's own format: one HDF5 file per cell line.

PDGrapher ships ``data_backward_{CL}.pt`` (a pickled list of torch_geometric
``Data``) and ``splits.pt``. Unpickling runs code and needs torch_geometric, and
35k small objects load slowly, so ``import_pdgrapher`` converts them once into

    DIR/{CL}.h5     diseased, treated: (n, genes) float32; drug: (n,) names;
                    genes: (genes,) symbols; splits/fold{K}/{train,val,test}: int64
    DIR/drugs.csv   name, smiles (one row per drug seen; smiles empty when unknown)

which loads with plain h5py, no pickle. CLI fold K is PDGrapher's split key K + 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from raycell.chemoe.config import FOLDS, PDGRAPHER_CELL_LINES
from raycell.core.errors import RaycellError
from raycell.core.rows import upsert

FORMAT = "raycell-pdgrapher/1"
DRUGS_FILE = "drugs.csv"
SPLITS = ("train", "val", "test")


def cell_line_path(root: Path, cell_line: str) -> Path:
    return Path(root) / f"{cell_line}.h5"


@dataclass(frozen=True)
class CellLineData:
    """One cell line's samples, in memory."""

    cell_line: str
    diseased: np.ndarray  # (n, genes) float32
    treated: np.ndarray  # (n, genes) float32
    drug: np.ndarray  # (n,) drug names (str)
    genes: np.ndarray  # (genes,) symbols

    def __len__(self) -> int:
        return len(self.drug)


@dataclass(frozen=True)
class CellLineInfo:
    """What validation needs without reading the expression matrices."""

    cell_line: str
    n_samples: int
    n_genes: int
    drugs: list[str]  # distinct drug names, sorted
    split_sizes: dict[str, int]


def _open(root: Path, cell_line: str) -> h5py.File:
    if cell_line not in PDGRAPHER_CELL_LINES:
        raise RaycellError(f"unknown cell line {cell_line!r} "
                           f"(known: {', '.join(PDGRAPHER_CELL_LINES)})")
    path = cell_line_path(root, cell_line)
    if not path.is_file():
        present = sorted(p.stem for p in Path(root).glob("*.h5"))
        raise RaycellError(f"{path} does not exist (cell lines in {root}: "
                           f"{', '.join(present) or 'none'})")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise RaycellError(f"{path} is not a readable HDF5 file ({exc})") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise RaycellError(f"{path} is not in raycell's PDGrapher format "
                           "(convert PDGrapher files with `raycell data import-pdgrapher`)")
    return f


def _fold_group(f: h5py.File, path: str, fold: int) -> h5py.Group:
    if fold not in FOLDS:
        raise RaycellError(f"fold {fold} is out of range 0..4")
    key = f"splits/fold{fold}"
    if key not in f:
        raise RaycellError(f"{path} has no split for fold {fold}")
    return f[key]


def read_split(root: Path, cell_line: str, fold: int) -> dict[str, np.ndarray]:
    """Sample indices of fold ``fold``'s train, val and test parts; an empty part is an error."""
    with _open(root, cell_line) as f:
        group = _fold_group(f, f.filename, fold)
        split = {name: group[name][:].astype(np.int64) for name in SPLITS}
    for name, idx in split.items():
        if idx.size == 0:
            raise RaycellError(f"{cell_line} fold {fold}: the {name} split is empty")
    return split


def read_info(root: Path, cell_line: str, fold: int) -> CellLineInfo:
    """Shapes, drug names and split sizes: enough to validate a run before it starts."""
    split = read_split(root, cell_line, fold)
    with _open(root, cell_line) as f:
        n, genes = f["diseased"].shape
        drugs = sorted(set(f["drug"].asstr()[:]))
    for name, idx in split.items():
        if idx.min() < 0 or idx.max() >= n:
            raise RaycellError(f"{cell_line} fold {fold}: {name} indices fall outside 0..{n - 1}")
    return CellLineInfo(cell_line, n, genes, drugs, {k: len(v) for k, v in split.items()})


def read_cell_line(root: Path, cell_line: str) -> CellLineData:
    with _open(root, cell_line) as f:
        return CellLineData(
            cell_line=cell_line,
            diseased=f["diseased"][:],
            treated=f["treated"][:],
            drug=f["drug"].asstr()[:].astype(object),
            genes=f["genes"].asstr()[:].astype(object),
        )


def write_cell_line(root: Path, data: CellLineData,
                    folds: dict[int, dict[str, np.ndarray]]) -> Path:
    """Write one cell line atomically (temp file, then rename)."""
    path = cell_line_path(root, data.cell_line)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    text = h5py.string_dtype()
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["cell_line"] = data.cell_line
        f.create_dataset("diseased", data=np.asarray(data.diseased, np.float32))
        f.create_dataset("treated", data=np.asarray(data.treated, np.float32))
        f.create_dataset("drug", data=np.asarray(data.drug, object), dtype=text)
        f.create_dataset("genes", data=np.asarray(data.genes, object), dtype=text)
        for fold, parts in folds.items():
            for name in SPLITS:
                f.create_dataset(f"splits/fold{fold}/{name}",
                                 data=np.asarray(parts[name], np.int64))
    os.replace(tmp, path)
    return path


def read_drug_table(path: Path) -> pd.DataFrame:
    """A user's drug table (CSV or parquet) with columns ``name`` and ``smiles``."""
    path = Path(path)
    if not path.is_file():
        raise RaycellError(f"drug table {path} does not exist")
    try:
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(
            path, keep_default_na=False, dtype=str)
    except Exception as exc:  # pandas raises many types for a malformed file
        raise RaycellError(f"drug table {path} is unreadable ({type(exc).__name__})") from None
    missing = [c for c in ("name", "smiles") if c not in table.columns]
    if missing:
        raise RaycellError(f"drug table {path} has no column {missing[0]!r} "
                           f"(columns: {', '.join(map(str, table.columns))})")
    table = table[["name", "smiles"]].fillna("").astype(str)  # no SMILES: an empty string
    twice = table["name"][table["name"].duplicated()].unique()
    if len(twice):
        raise RaycellError(f"drug table {path} lists {twice[0]!r} twice")
    return table.reset_index(drop=True)


def write_drugs(root: Path, table: pd.DataFrame) -> None:
    """Add or replace drugs in ``DIR/drugs.csv`` (several imports share one table)."""
    upsert(Path(root) / DRUGS_FILE, table[["name", "smiles"]], key="name")


def _field(sample, name: str, index: int, source: Path):
    value = getattr(sample, name, None)
    if value is None:
        raise RaycellError(f"{source}: sample {index} has no field {name!r}")
    return value


def _vector(value) -> np.ndarray:
    return np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value,
                      np.float32).reshape(-1)


def import_pdgrapher(backward: Path, splits: Path, drug_table: Path, out: Path,
                     cell_line: str | None = None) -> Path:
    """Convert PDGrapher's ``data_backward_{CL}.pt`` and ``splits.pt`` into raycell's format.

    Both files are pickles (torch_geometric objects): load only files you trust.
    """
    import torch

    backward, splits, out = Path(backward), Path(splits), Path(out)
    if cell_line is None:
        cell_line = backward.stem.removeprefix("data_backward_")
    if cell_line not in PDGRAPHER_CELL_LINES:
        raise RaycellError(f"unknown cell line {cell_line!r} (known: "
                           f"{', '.join(PDGRAPHER_CELL_LINES)}); pass --cell_line")
    table = read_drug_table(drug_table)
    samples, folds_raw = (_torch_load(torch, p) for p in (backward, splits))
    if not isinstance(samples, list | tuple) or not samples:
        raise RaycellError(f"{backward} does not hold a list of samples")
    diseased, treated = (np.stack([_vector(_field(s, name, i, backward))
                                   for i, s in enumerate(samples)])
                         for name in ("diseased", "treated"))
    drug = np.array([str(_field(s, "perturbagen_name", i, backward))
                     for i, s in enumerate(samples)], dtype=object)
    genes = np.asarray(getattr(samples[0], "gene_symbols", None)
                       or [f"gene{i}" for i in range(diseased.shape[1])], dtype=object)
    folds = {}
    for fold in FOLDS:
        part = folds_raw.get(fold + 1) if isinstance(folds_raw, dict) else None
        if part is None:
            raise RaycellError(f"{splits} has no split key {fold + 1} (fold {fold})")
        folds[fold] = {name: _indices(part, name, splits, len(samples)) for name in SPLITS}
    known = dict(zip(table["name"], table["smiles"], strict=True))
    seen = sorted(set(drug))
    path = write_cell_line(out, CellLineData(cell_line, diseased, treated, drug, genes), folds)
    write_drugs(out, pd.DataFrame({"name": seen, "smiles": [known.get(d, "") for d in seen]}))
    return path


def _torch_load(torch, path: Path):
    if not path.is_file():
        raise RaycellError(f"{path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        raise RaycellError(f"{path} needs {exc.name} to load (pip install torch_geometric)") \
            from None
    except Exception as exc:  # noqa: BLE001 - pickle raises anything for a bad file
        raise RaycellError(f"{path} is not a readable torch file ({type(exc).__name__})") from None


def _indices(part, name: str, source: Path, n: int) -> np.ndarray:
    key = f"{name}_index_backward"
    if key not in part:
        raise RaycellError(f"{source}: a split has no {key!r}")
    value = part[key]
    idx = np.asarray(value.cpu().numpy() if hasattr(value, "cpu") else value, np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise RaycellError(f"{source}: {key} indexes outside the {n} samples")
    return idx
