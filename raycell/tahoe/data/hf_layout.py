"""Tahoe-100M as its Hugging Face release lays it out (``tahoebio/Tahoe-100M``).

    ROOT/data/train-00000-of-03388.parquet   expression_data: one row per cell
    ROOT/metadata/gene_metadata.parquet       token_id -> ensembl_id, gene_symbol
    ROOT/metadata/drug_metadata.parquet       drug -> moa-broad, moa-fine, ...

A cell is ``genes`` (token ids) and ``expressions`` (their counts, same length), with
``drug``, ``sample``, ``cell_line_id``, ``plate``, ``BARCODE_SUB_LIB_ID``, ``moa-fine``,
``canonical_smiles`` and ``pubchem_cid``. A row may start with a CLS entry whose
expression is negative (the release: token 1, -2); readers drop it. Token ids 0-2 are
reserved, so gene_metadata lists the genes only (docs/facts.md).

A gene's model column is the rank of its token among gene_metadata's token ids; for
data converted from h5ad plates that is the plates' var order, so both formats give a
model the same inputs. The cell line is ``cell_line_id`` here and ``cell_line`` in the
plates (the same Cellosaurus ids); ``plate`` ("plate3") names the plate a cell came from,
which is how a run picks its train and test plates.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raycell.core.errors import RaycellError

SHARDS = "data"
GENE_TABLE = "metadata/gene_metadata.parquet"
DRUG_TABLE = "metadata/drug_metadata.parquet"
SHARD_NAME = "train-{i:05d}-of-{n:05d}.parquet"
FIRST_GENE_TOKEN = 3  # 0-2 are reserved: pad, CLS, mask
CLS_TOKEN, CLS_EXPRESSION = 1, -2.0  # as the release starts its rows
CELL_COLUMNS = ("drug", "sample", "cell_line_id", "plate", "BARCODE_SUB_LIB_ID")
DRUG_COLUMNS = ("moa-fine", "canonical_smiles", "pubchem_cid")  # copied onto each cell
# Rows a shard and a row group hold when raycell writes the layout. The release's shards
# hold ~29.5k cells (3,388 for 100M); the row group is what a reader fetches at once.
ROWS_PER_SHARD = 30_000
ROWS_PER_GROUP = 1_024


@dataclass(frozen=True)
class PlateCells:
    """One plate's cells as the writer takes them: CSR counts (genes in var order) and the
    obs columns the layout keeps."""

    number: int
    x: object  # scipy.sparse CSR, float32 counts
    obs: dict[str, np.ndarray]  # drug, sample, cell_line, BARCODE_SUB_LIB_ID


def write_layout(out: Path, plates: Iterable[PlateCells], genes: list[str], drug_table,
                 rows_per_shard: int = ROWS_PER_SHARD, rows_per_group: int = ROWS_PER_GROUP,
                 cls: bool = True) -> Path:
    """Write plates, in order, as the release's shards and metadata under ``out``.

    Shards fill up to ``rows_per_shard`` cells across plate boundaries, as the release's
    do. Everything goes to a sibling folder first and is renamed into place at the end,
    so a crash never leaves a half-written snapshot under ``out``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise RaycellError(f"{out} is not empty: write the snapshot into a new folder")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _write_partial(partial, plates, genes, drug_table, rows_per_shard, rows_per_group, cls)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    os.replace(partial, out)
    return out


def _write_partial(partial: Path, plates: Iterable[PlateCells], genes: list[str], drug_table,
                   rows_per_shard: int, rows_per_group: int, cls: bool) -> None:
    (partial / SHARDS).mkdir(parents=True)
    (partial / "metadata").mkdir()
    tokens = FIRST_GENE_TOKEN + np.arange(len(genes), dtype=np.int64)
    pq.write_table(pa.table({"token_id": tokens, "ensembl_id": list(genes),
                             "gene_symbol": list(genes)}), partial / GENE_TABLE)
    drugs = pa.Table.from_pandas(drug_table, preserve_index=False)
    pq.write_table(drugs, partial / DRUG_TABLE)
    by_drug = drug_table.assign(drug=drug_table["drug"].astype(str).str.strip()) \
        .drop_duplicates("drug").set_index("drug")
    # The table's types, so that a chunk of control cells only (no drug values) writes
    # the same schema as the rest.
    types = {c: drugs.schema.field(c).type if c in drugs.schema.names else pa.string()
             for c in DRUG_COLUMNS}
    writer, written, shard = None, 0, 0
    names = []
    for plate in plates:
        cells = _cell_table(plate, by_drug, types, cls)
        start = 0
        while start < cells.num_rows:
            if writer is None or written == rows_per_shard:
                if writer is not None:
                    writer.close()
                names.append(partial / SHARDS / f"shard-{shard:05d}.parquet")
                writer = pq.ParquetWriter(names[-1], cells.schema)
                shard, written = shard + 1, 0
            take = min(rows_per_shard - written, cells.num_rows - start)
            writer.write_table(cells.slice(start, take), row_group_size=rows_per_group)
            start, written = start + take, written + take
    if writer is not None:
        writer.close()
    for i, name in enumerate(names):  # the release's names, now that the count is known
        name.rename(name.with_name(SHARD_NAME.format(i=i, n=len(names))))


def _cell_table(plate: PlateCells, by_drug, types: dict[str, pa.DataType], cls: bool
                ) -> pa.Table:
    """One plate's cells as rows of the release: token ids and counts per cell, in var
    order, behind a CLS entry if ``cls``."""
    x = plate.x
    counts = np.diff(x.indptr)
    lead = int(cls)
    offsets = np.concatenate([[0], np.cumsum(counts + lead)]).astype(np.int32)
    tokens = np.empty(offsets[-1], np.int32)
    values = np.empty(offsets[-1], np.float32)
    body = np.ones(offsets[-1], bool)
    if cls:
        body[offsets[:-1]] = False
        tokens[~body], values[~body] = CLS_TOKEN, CLS_EXPRESSION
    tokens[body] = FIRST_GENE_TOKEN + x.indices
    values[body] = x.data
    drugs = np.asarray(plate.obs["drug"]).astype(str)
    columns = {
        "genes": pa.ListArray.from_arrays(pa.array(offsets), pa.array(tokens)),
        "expressions": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
        "drug": pa.array(drugs),
        "sample": pa.array(np.asarray(plate.obs["sample"]).astype(str)),
        "cell_line_id": pa.array(np.asarray(plate.obs["cell_line"]).astype(str)),
        "plate": pa.array(np.full(len(drugs), f"plate{plate.number}")),
        "BARCODE_SUB_LIB_ID": pa.array(np.asarray(plate.obs["BARCODE_SUB_LIB_ID"]).astype(str)),
    }
    names, of_cell = np.unique(drugs, return_inverse=True)  # a drug's values once, not a cell's
    for column in DRUG_COLUMNS:  # a cell of the control has none
        known = by_drug[column] if column in by_drug else {}
        values = pa.array([_plain(known.get(d)) for d in names], types[column])
        columns[column] = values.take(pa.array(of_cell.ravel()))
    return pa.table(columns)


def _plain(value):
    """A drug table's value as Arrow takes it from a list: numpy scalars to Python, a
    missing value (NaN) to None."""
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def plate_cells(number: int, adata) -> PlateCells:
    """An in-memory plate (AnnData) as the writer takes it."""
    obs = adata.obs
    return PlateCells(number, adata.X, {"drug": obs["drug"].to_numpy(),
                                        "sample": obs["sample"].to_numpy(),
                                        "cell_line": obs["cell_line"].to_numpy(),
                                        "BARCODE_SUB_LIB_ID": obs.index.to_numpy()})


def h5ad_plates(plates: dict[int, Path], chunk_rows: int) -> Iterator[PlateCells]:
    """Plates on disk, ``chunk_rows`` cells at a time (a real plate is ~7M cells): CSR
    slices read with h5py, the obs columns once per plate."""
    import anndata
    import scipy.sparse as sp

    from raycell.tahoe.data.plates import open_plate, plate_shape, read_obs_column

    for number, path in plates.items():
        with open_plate(path) as f:
            n_rows, n_vars = plate_shape(f)
            obs = {c: np.asarray(read_obs_column(f, c, n_rows)) for c in ("drug", "cell_line")}
            obs["sample"] = np.asarray(read_obs_column(f, "sample", n_rows)) \
                if "sample" in f["obs"] else np.full(n_rows, "")
            index = f["obs"].attrs.get("_index", "_index")
            obs["BARCODE_SUB_LIB_ID"] = np.asarray(anndata.io.read_elem(f["obs"][index])) \
                .astype(str)
            x = f["X"]
            indptr = x["indptr"][:]
            for start in range(0, n_rows, chunk_rows):
                stop = min(start + chunk_rows, n_rows)
                lo, hi = int(indptr[start]), int(indptr[stop])
                chunk = sp.csr_array((x["data"][lo:hi].astype(np.float32), x["indices"][lo:hi],
                                      indptr[start : stop + 1] - lo), shape=(stop - start, n_vars))
                yield PlateCells(number, chunk, {k: v[start:stop] for k, v in obs.items()})


def convert_h5ad(h5ad_dir: Path, out: Path, rows_per_shard: int = ROWS_PER_SHARD,
                 rows_per_group: int = ROWS_PER_GROUP) -> Path:
    """``raycell data convert``: plates (in plate order, each in disk order) and their drug
    table as the Hugging Face layout; the gene table from the plates' var names."""
    import anndata
    import pandas as pd

    from raycell.tahoe.data.plates import find_drug_table, find_plates, read_drug_table

    plates = find_plates(h5ad_dir)
    path = find_drug_table(h5ad_dir, None)
    read_drug_table(path)  # checked; copied as it is (names with their stray spaces)
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    first = anndata.read_h5ad(next(iter(plates.values())), backed="r")
    genes = [str(g) for g in first.var_names]
    first.file.close()
    return write_layout(out, h5ad_plates(plates, rows_per_group * 16), genes, table,
                        rows_per_shard, rows_per_group)
