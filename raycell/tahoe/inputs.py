"""Everything a Tahoe run reads, resolved to absolute paths and validated up front.

Validation happens in the launching process before Ray starts, so a bad path,
file, column or drug fails in seconds with one line, and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from raycell.core.errors import RaycellError
from raycell.tahoe.config import TahoeConfig
from raycell.tahoe.data.labels import LabelSpace
from raycell.tahoe.data.plates import (
    CONTROL_DRUG,
    TahoeSplit,
    check_drug_table,
    find_drug_table,
    find_plates,
    plate_cell_lines,
    read_drug_table,
    read_split,
    select_plates,
)
from raycell.tahoe.data.synthetic import ensure_tahoe


@dataclass(frozen=True)
class TahoeInputs:
    data_dir: Path | str  # h5ad plates, or a parquet snapshot (a folder or a URI)
    labels: LabelSpace
    train: TahoeSplit
    test: TahoeSplit


def resolve_h5ad_dir(cfg: TahoeConfig) -> Path:
    data = cfg.data
    if data.h5ad_dir is not None:
        return Path(data.h5ad_dir).expanduser().resolve()
    if data.synthetic is None:
        raise RaycellError("data.h5ad_dir is not set: pass --h5ad_dir DIR (or use --config demo)")
    spec = data.synthetic
    if max(data.train_plates + data.test_plates) > spec.plates:
        raise RaycellError(f"data.synthetic.plates is {spec.plates}: too few for the plates asked")
    return ensure_tahoe(spec.out_dir, spec)


def build_labels(plate_paths: list[Path], table_path: Path) -> LabelSpace:
    """Label spaces from the (stripped) drug table and every plate's cell-line categories."""
    return LabelSpace.build(read_drug_table(table_path), plate_cell_lines(plate_paths),
                            CONTROL_DRUG)


def load_tahoe_inputs(cfg: TahoeConfig) -> TahoeInputs:
    if cfg.data.parquet_dir is not None:
        return load_parquet_inputs(cfg)
    h5ad_dir = resolve_h5ad_dir(cfg)
    plates = find_plates(h5ad_dir)
    train_paths = select_plates(plates, cfg.data.train_plates, "train")
    test_paths = select_plates(plates, cfg.data.test_plates, "test")
    table_path = find_drug_table(h5ad_dir, cfg.data.drug_table)
    labels = build_labels(train_paths + test_paths, table_path)
    train = read_split(train_paths, labels, cfg.data.max_train_cells, table_path)
    test = read_split(test_paths, labels, cfg.data.max_test_cells, table_path)
    if train.n_vars != test.n_vars:
        raise RaycellError(f"train plates have {train.n_vars} genes, test plates {test.n_vars}")
    return TahoeInputs(h5ad_dir, labels, train, test)


def open_snapshot(parquet_dir: str, drug_table: str | None):
    """A snapshot of the Hugging Face layout, on local disk or object storage, checked: its
    root (a path or URI), filesystem, shard index, token -> column map, drug table (path
    and rows)."""
    from raycell.core.filesystems import check_bucket, filesystem, is_url, join
    from raycell.tahoe.data.hf_layout import DRUG_TABLE
    from raycell.tahoe.data.hf_rows import gene_columns, read_table, shard_index

    root = parquet_dir.rstrip("/")
    if is_url(root):
        check_bucket(root, "data.parquet_dir")  # one line within seconds, not a hang
    else:
        root = str(Path(root).expanduser().resolve())
    fs = filesystem(root)
    index = shard_index(root, fs)
    columns = gene_columns(root, fs)
    if drug_table is not None:
        table_path = str(find_drug_table(root, drug_table))
        drugs = read_drug_table(Path(table_path))
    else:
        table_path = join(root, DRUG_TABLE)
        drugs = check_drug_table(read_table(table_path, fs, "drug table").to_pandas(),
                                 table_path)
    return root, fs, index, columns, table_path, drugs


def load_parquet_inputs(cfg: TahoeConfig) -> TahoeInputs:
    """The same inputs from the Hugging Face layout, on local disk or object storage: the
    same label spaces and, for the same cells, the same model inputs as from their h5ad
    plates (hf_layout.py)."""
    from raycell.tahoe.data.hf_rows import cell_lines, read_parquet_split

    data = cfg.data
    root, fs, index, columns, table_path, drugs = open_snapshot(data.parquet_dir,
                                                                data.drug_table)
    labels = LabelSpace.build(drugs, cell_lines(index, data.train_plates + data.test_plates),
                              CONTROL_DRUG)
    train = read_parquet_split(index, data.train_plates, labels, data.max_train_cells,
                               table_path, columns, "train", fs)
    test = read_parquet_split(index, data.test_plates, labels, data.max_test_cells,
                              table_path, columns, "test", fs)
    return TahoeInputs(root, labels, train, test)
