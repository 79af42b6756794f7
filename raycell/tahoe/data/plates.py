"""Tahoe-100M on disk: plate discovery, validation, obs columns and the drug table.

Only what the experiment needs is read: the CSR ``indptr`` of the selected rows and
two obs columns (cell_line, drug). Expression rows are read later, in fetches, by
``raycell.tahoe.data.sparse``. Every user-caused problem is a ``RaycellError`` that
names the file and the culprit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import pandas as pd

from raycell.core.errors import RaycellError
from raycell.tahoe.data.labels import LabelSpace

if TYPE_CHECKING:
    from raycell.tahoe.data.hf_rows import ShardRows

PLATE_FILENAME = "plate{n}_filt_Vevo_Tahoe100M_WServicesFrom_ParseGigalab.h5ad"
PLATE_PATTERN = re.compile(r"^plate(\d+)_.*\.h5ad$")
DRUG_TABLE_NAMES = ("drug_metadata.parquet", "drug_metadata.csv")
CONTROL_DRUG = "DMSO_TF"
REQUIRED_OBS = ("cell_line", "drug")
DRUG_TABLE_COLUMNS = ("drug", "moa-broad", "moa-fine")


def find_plates(h5ad_dir: str | Path) -> dict[int, Path]:
    """Map plate number to file for every real-named plate file in ``h5ad_dir``."""
    root = Path(h5ad_dir)
    if not root.is_dir():
        raise RaycellError(f"h5ad directory {root} does not exist")
    plates = {}
    for path in root.iterdir():
        match = PLATE_PATTERN.match(path.name)
        if match:
            plates[int(match.group(1))] = path.resolve()
    if not plates:
        raise RaycellError(f"h5ad directory {root} holds no plate files (plate<N>_*.h5ad)")
    return dict(sorted(plates.items()))


def select_plates(plates: dict[int, Path], wanted: list[int], role: str) -> list[Path]:
    missing = [n for n in wanted if n not in plates]
    if missing:
        raise RaycellError(
            f"{role} plate {missing[0]} not found (found plates {sorted(plates)})"
        )
    return [plates[n] for n in wanted]


def open_plate(path: Path) -> h5py.File:
    """Open a plate read-only, checking it is HDF5 with a CSR ``X`` and the needed obs."""
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise RaycellError(f"{path}: not a readable HDF5/h5ad file") from None
    try:
        x = f.get("X")
        if not isinstance(x, h5py.Group) or x.attrs.get("encoding-type") != "csr_matrix":
            raise RaycellError(f"{path}: X is not a CSR matrix (encoding-type csr_matrix)")
        obs = f.get("obs")
        for col in REQUIRED_OBS:
            if obs is None or col not in obs:
                raise RaycellError(f"{path}: obs has no column '{col}'")
    except RaycellError:
        f.close()
        raise
    return f


def plate_shape(f: h5py.File) -> tuple[int, int]:
    n_obs, n_vars = (int(v) for v in f["X"].attrs["shape"])
    return n_obs, n_vars


def read_obs_column(f: h5py.File, column: str, n_rows: int) -> pd.Categorical:
    """The first ``n_rows`` values of a categorical (or string) obs column."""
    import anndata  # here, not at the top: Ray Data read tasks import this module

    values = anndata.io.read_elem(f["obs"][column])
    if not isinstance(values, pd.Categorical):
        values = pd.Categorical(np.asarray(values).astype(str))
    return values[:n_rows]


def find_drug_table(h5ad_dir: str | Path, configured: str | None) -> Path:
    if configured is not None:
        path = Path(configured)
        if not path.is_file():
            raise RaycellError(f"drug table {path} does not exist")
        return path.resolve()
    for name in DRUG_TABLE_NAMES:
        path = Path(h5ad_dir) / name
        if path.is_file():
            return path.resolve()
    raise RaycellError(
        f"no drug table in {h5ad_dir} ({' or '.join(DRUG_TABLE_NAMES)}); "
        "set data.drug_table"
    )


def read_drug_table(path: Path) -> pd.DataFrame:
    """Drug metadata (drug, moa-broad, moa-fine, ...), names stripped of stray spaces."""
    try:
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # pyarrow and pandas raise many types for a corrupt file
        raise RaycellError(f"drug table {path} cannot be read: {type(exc).__name__}") from None
    return check_drug_table(table, path)


def check_drug_table(table: pd.DataFrame, path: Path | str) -> pd.DataFrame:
    """The table's drug and MoA columns, present, stripped and each drug listed once."""
    missing = [c for c in DRUG_TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise RaycellError(f"drug table {path} has no column '{missing[0]}'")
    table = table.copy()
    for col in DRUG_TABLE_COLUMNS:
        table[col] = table[col].astype(str).str.strip()
    dupes = table["drug"][table["drug"].duplicated()].tolist()
    if dupes:
        raise RaycellError(f"drug table {path} lists drug {dupes[0]!r} twice")
    return table.reset_index(drop=True)


@dataclass(frozen=True)
class PlateRows:
    """The leading ``n_rows`` rows of one plate file, with their CSR row pointers."""

    path: str
    n_rows: int
    indptr: np.ndarray  # int64, n_rows + 1 entries, absolute offsets into X/data


@dataclass(frozen=True)
class TahoeSplit:
    """Rows of a train or test split: plates in order, and (cell_line, drug) label codes.

    From h5ad plates, ``plates`` holds PlateRows; from the Hugging Face parquet layout,
    ShardRows (``hf_rows.py``) and ``token_columns``, the token id -> model column map."""

    plates: tuple[PlateRows, ...] | tuple[ShardRows, ...]
    n_vars: int
    codes: np.ndarray  # (n_cells, 2) int32: cell line and drug, in the LabelSpace's order
    token_columns: np.ndarray | None = None
    filesystem: Any = None  # the shards' pyarrow filesystem (pickled into read tasks)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @property
    def parquet(self) -> bool:
        return self.token_columns is not None


def _rows_per_plate(sizes: list[int], limit: int | None) -> list[int]:
    """Take the first ``limit`` cells of the plates in order (the reference's pilot rule)."""
    if limit is None:
        return sizes
    taken, left = [], limit
    for size in sizes:
        take = min(size, left)
        taken.append(take)
        left -= take
    return taken


def read_split(
    paths: list[Path], labels: LabelSpace, max_cells: int | None, drug_table: Path
) -> TahoeSplit:
    """Read the row pointers and label codes of the selected plates."""
    opened = [open_plate(p) for p in paths]
    try:
        shapes = [plate_shape(f) for f in opened]
        n_vars = {s[1] for s in shapes}
        if len(n_vars) > 1:
            raise RaycellError(f"plates disagree on the number of genes: {sorted(n_vars)}")
        counts = _rows_per_plate([s[0] for s in shapes], max_cells)
        plates, codes = [], []
        for path, f, n in zip(paths, opened, counts, strict=True):
            if n == 0:
                continue
            indptr = f["X"]["indptr"][: n + 1].astype(np.int64)
            cell_line = read_obs_column(f, "cell_line", n)
            drug = read_obs_column(f, "drug", n)
            codes.append(labels.encode(cell_line, drug, source=f"{path}", drug_table=drug_table))
            plates.append(PlateRows(str(path), n, indptr))
        if not plates:
            raise RaycellError(f"no cells in {', '.join(str(p) for p in paths)}")
        return TahoeSplit(tuple(plates), n_vars.pop(), np.concatenate(codes))
    finally:
        for f in opened:
            f.close()


def plate_cell_lines(paths: list[Path]) -> set[str]:
    """Every cell-line category of the plates: the label space, independent of row limits."""
    found: set[str] = set()
    for path in paths:
        with open_plate(path) as f:
            found.update(obs_categories(f, "cell_line"))
    return found


def obs_categories(f: h5py.File, column: str) -> list[str]:
    """A categorical column's categories, without reading its per-cell codes."""
    import anndata

    element = f["obs"][column]
    if isinstance(element, h5py.Group) and "categories" in element:
        return [str(c) for c in anndata.io.read_elem(element["categories"])]
    return sorted({str(v) for v in anndata.io.read_elem(element)})
