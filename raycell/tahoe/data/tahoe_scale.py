"""Tahoe at its real size: 14 plates with Tahoe-100M's row counts, for start-up and memory checks.

What scales with cells is real: 100,648,790 rows over 14 plates (plate 1 with its
real 5,481,420; the others share the rest evenly, since docs/facts.md has no per-plate
counts), 62,710 genes, every obs column and the index, 380 drug classes (379 +
DMSO_TF), 50 cell lines, rows ordered by sublibrary and sample as on disk. What
does not is cut: a few non-zeros a cell (Tahoe has ~1.4k) so the files fit on
one machine's disk, and no biology: there is nothing to learn, only row pointers,
labels, weights and read plans to build and hold (``docs/benchmarks.md``).

Files are written as anndata writes them (``X`` a chunked CSR group, obs columns
through ``anndata.io.write_elem``) but column by column and plate by plate, so
writing needs memory for one plate's obs, not 100M cells. The index is stored as
fixed-width strings with gzip, the way a 100M-row index stays small.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from raycell.core.config import Strict
from raycell.core.errors import RaycellError
from raycell.tahoe.config import TahoeSpec
from raycell.tahoe.data.plates import CONTROL_DRUG, PLATE_FILENAME
from raycell.tahoe.data.synthetic import DOSES_UM, PHASES, drug_table

TAHOE_CELLS = 100_648_790
TAHOE_PLATE_1 = 5_481_420
TAHOE_PLATES = 14
CHUNK_CELLS = 1 << 20  # X is written a million cells at a time
OBS_BYTES_PER_CELL = 64  # codes, six numeric columns, compressed index: measured ~50
PLATE_BYTES = 50 << 20  # a plate's fixed part: the 96^3 BARCODE categories, var


@functools.cache
def _barcodes() -> list[str]:
    """Parse's three-round barcodes, as Tahoe writes them (``01_001_001``)."""
    return [f"{a:02d}_{b:03d}_{c:03d}" for a in range(1, 97) for b in range(1, 97)
            for c in range(1, 97)]


def tahoe_plate_cells() -> list[int]:
    rest, extra = divmod(TAHOE_CELLS - TAHOE_PLATE_1, TAHOE_PLATES - 1)
    return [TAHOE_PLATE_1] + [rest + (i < extra) for i in range(TAHOE_PLATES - 1)]


class TahoeScaleSpec(Strict):
    plate_cells: list[int] = Field(default_factory=tahoe_plate_cells, min_length=2)
    genes: int = Field(62_710, ge=50)
    drugs: int = Field(379, ge=4)  # + DMSO_TF: Tahoe's 380 drug classes
    cell_lines: int = Field(50, ge=2)
    sublibraries: int = Field(10, ge=1)  # Parse barcodes: at most 96^3 cells a sublibrary
    nnz_per_cell: int = Field(4, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _fits(self) -> TahoeScaleSpec:
        if min(self.plate_cells) < self.sublibraries * (self.drugs + 1):
            raise ValueError(f"every plate needs at least sublibraries x (drugs + 1) = "
                             f"{self.sublibraries * (self.drugs + 1)} cells")
        if max(self.plate_cells) > self.sublibraries * len(_barcodes()):
            raise ValueError(f"a sublibrary holds at most {len(_barcodes()):,} barcodes: "
                             "raise sublibraries")
        if self.nnz_per_cell > self.genes // 2:
            raise ValueError(f"nnz_per_cell {self.nnz_per_cell} must be at most genes / 2")
        return self


def estimated_bytes(spec: TahoeScaleSpec) -> int:
    """Bytes on disk: row pointers, counts and gene indices, obs."""
    cells = sum(spec.plate_cells)
    return (cells * (8 + 8 * spec.nnz_per_cell + OBS_BYTES_PER_CELL)
            + len(spec.plate_cells) * PLATE_BYTES)


# Parquet shards of these cells against their plates' bytes: 3.2 GB of shards from 9.5 GB
# of plates at the default profile (docs/benchmarks.md), with some margin.
SHARD_BYTES_PER_PLATE_BYTE = 0.4


def check_room(out: Path, spec: TahoeScaleSpec, parquet: bool = False) -> None:
    """Refuse before writing anything when the disk under ``out`` has no room for it: the
    plates, and with ``parquet`` their shards too (both are on disk while converting)."""
    existing = out
    while not existing.exists():
        existing = existing.parent
    need = estimated_bytes(spec) * (1 + SHARD_BYTES_PER_PLATE_BYTE * parquet)
    free = shutil.disk_usage(existing).free
    if need > 0.9 * free:  # leave the disk some air
        raise RaycellError(f"{out}: the tahoe_scale data needs ~{need / 1e9:,.1f} GB but only "
                           f"{free / 1e9:,.1f} GB are free there")


def _write_csr(f: h5py.File, n: int, spec: TahoeScaleSpec, rng: np.random.Generator) -> None:
    """X: ``nnz_per_cell`` distinct sorted genes a cell, small counts; written in chunks."""
    k, nnz = spec.nnz_per_cell, n * spec.nnz_per_cell
    x = f.create_group("X")
    x.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0",
                    "shape": (n, spec.genes)})
    data = x.create_dataset("data", (nnz,), np.float32, chunks=True, maxshape=(None,))
    indices = x.create_dataset("indices", (nnz,), np.int32, chunks=True, maxshape=(None,))
    x.create_dataset("indptr", data=np.arange(n + 1, dtype=np.int64) * k, chunks=True,
                     maxshape=(None,))
    stripe = spec.genes // k  # one gene from each of k stripes: distinct and sorted
    for start in range(0, n, CHUNK_CELLS):
        m = min(CHUNK_CELLS, n - start)
        genes = rng.integers(0, stripe, (m, k), dtype=np.int32) + np.arange(k, dtype=np.int32) \
            * stripe
        indices[start * k : (start + m) * k] = genes.ravel()
        data[start * k : (start + m) * k] = rng.integers(1, 6, m * k).astype(np.float32)


def _categorical(codes: np.ndarray, categories: list[str]) -> pd.Categorical:
    dtype = np.int8 if len(categories) < 128 else np.int16 if len(categories) < 32768 else np.int32
    return pd.Categorical.from_codes(codes.astype(dtype), categories=categories)


def _write_obs(f: h5py.File, plate: int, n: int, spec: TahoeScaleSpec, drugs: list[str],
               rng: np.random.Generator) -> None:
    wells = spec.drugs + 1
    order = rng.permutation(wells)  # well order differs between plates
    per_sub = np.full(spec.sublibraries, n // spec.sublibraries)
    per_sub[: n % spec.sublibraries] += 1
    # Every well gets at least one cell in every sublibrary; the rest spread at random.
    sizes = np.stack([1 + rng.multinomial(m - wells, np.full(wells, 1 / wells)) for m in per_sub])
    well = np.concatenate([np.repeat(order, s) for s in sizes])
    sub = np.repeat(np.arange(spec.sublibraries), per_sub)
    line_share = rng.dirichlet(np.full(spec.cell_lines, 8.0))
    line = rng.choice(spec.cell_lines, n, p=line_share)
    k = spec.nnz_per_cell
    tscp = rng.integers(k, 6 * k, n).astype(np.int64)
    dose = rng.choice(len(DOSES_UM), wells)
    sample_names = [f"smp_{plate * 1000 + w}" for w in range(wells)]
    dose_names = [f"[('{drugs[w]}', {DOSES_UM[dose[w]]}, 'uM')]" for w in range(wells)]
    sub_names = [f"lib_{plate * 10 + s}" for s in range(spec.sublibraries)]
    barcodes = _barcodes()
    barcode = np.arange(n) - np.repeat(np.cumsum(per_sub) - per_sub, per_sub)  # unique in a sub
    lines = [f"CVCL_{1000 + i:04d}" for i in range(spec.cell_lines)]
    columns = {
        "plate": _categorical(np.zeros(n), [f"plate{plate}"]),
        "sample": _categorical(well, sample_names),
        "gene_count": np.full(n, k, np.int64),
        "tscp_count": tscp,
        "mread_count": tscp + rng.integers(0, k, n),
        "drugname_drugconc": _categorical(well, dose_names),
        "drug": _categorical(well, drugs),
        "cell_line": _categorical(line, lines),
        "sublibrary": _categorical(sub, sub_names),
        "BARCODE": _categorical(barcode, barcodes),
        "pcnt_mito": rng.uniform(0, 8, n).astype(np.float32),
        "S_score": rng.normal(0, 0.1, n).astype(np.float32),
        "G2M_score": rng.normal(0, 0.1, n).astype(np.float32),
        "phase": _categorical(rng.integers(0, len(PHASES), n), list(PHASES)),
        "pass_filter": _categorical(np.zeros(n), ["full"]),
        "cell_name": _categorical(line, [f"SYN-{i:02d}" for i in range(spec.cell_lines)]),
    }
    obs = f.create_group("obs")
    obs.attrs.update({"encoding-type": "dataframe", "encoding-version": "0.2.0",
                      "_index": "BARCODE_SUB_LIB_ID", "column-order": list(columns)})
    for name, values in columns.items():
        anndata.io.write_elem(obs, name, values)
    index = np.char.add(np.char.add(np.array(barcodes, "S10")[barcode], b"-"),
                        np.array(sub_names, "S")[sub])
    ds = obs.create_dataset("BARCODE_SUB_LIB_ID", data=index, chunks=(min(n, 1 << 18),),
                            compression="gzip", compression_opts=1)
    ds.attrs.update({"encoding-type": "string-array", "encoding-version": "0.2.0"})


def _write_plate(path: Path, plate: int, n: int, spec: TahoeScaleSpec, drugs: list[str],
                 genes: pd.DataFrame) -> None:
    rng = np.random.default_rng([spec.seed, plate])
    tmp = path.with_suffix(".h5ad.tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
        _write_csr(f, n, spec, rng)
        _write_obs(f, plate, n, spec, drugs, rng)
        anndata.io.write_elem(f, "var", genes)
        for empty in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            anndata.io.write_elem(f, empty, {})
    os.replace(tmp, path)  # a crash never leaves a half-written plate under the real name


def write_tahoe_scale(out_dir: str | Path, spec: TahoeScaleSpec, progress=print) -> Path:
    """Write the plates and ``drug_metadata.parquet``, after checking the disk has room."""
    out = Path(out_dir).resolve()
    check_room(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    table = drug_table(TahoeSpec(drugs=spec.drugs))
    drugs = [d.strip() for d in table["drug"]] + [CONTROL_DRUG]
    genes = pd.DataFrame(index=pd.Index([f"GENE{g:05d}" for g in range(spec.genes)],
                                        name="gene_name"))
    for plate, n in enumerate(spec.plate_cells, start=1):
        _write_plate(out / PLATE_FILENAME.format(n=plate), plate, n, spec, drugs, genes)
        progress(f"  plate {plate}: {n:,} cells")
    table.to_parquet(out / "drug_metadata.parquet", index=False)
    return out
