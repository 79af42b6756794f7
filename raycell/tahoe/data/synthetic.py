"""In-format synthetic Tahoe-100M: plates and a drug table the real reader reads.

The layout copies the real files: CSR float32 counts, the real obs columns and
index, rows ordered by plate, sublibrary and sample (one drug per sample, cell
lines mixed inside a sample), the DMSO_TF control, and a drug metadata table with
two names carrying trailing spaces, as in the real sources.

The signal is shaped like the real problem: cell lines move many genes strongly
(easy from any batch), drugs move few genes weakly and share part of the effect
with their fine MoA. A contiguous block of rows is one drug, so a model only sees
drugs contrasted when its batches mix samples.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from raycell.core.generated import ensure_generated
from raycell.tahoe.config import TahoeSpec
from raycell.tahoe.data.plates import CONTROL_DRUG, PLATE_FILENAME

MOA_BROAD = ("inhibitor/antagonist", "activator/agonist", "unclear")
MOA_FINE = (
    "Kinase inhibitor",
    "HDAC inhibitor",
    "Proteasome inhibitor",
    "Topoisomerase inhibitor",
    "Microtubule destabilizer",
    "Receptor agonist",
    "Ion channel modulator",
    "DNA synthesis inhibitor",
    "Unclear",
)
PHASES = ("G1", "S", "G2M")
DOSES_UM = (0.05, 0.5, 5.0)
GENERATOR_VERSION = 2  # bump when the biology changes: ensure_tahoe then regenerates
DEPTH_SIGMA = 0.35  # log-normal spread of sequencing depth between cells


@dataclass(frozen=True)
class _Biology:
    base: np.ndarray  # (genes,) log rate
    line_effect: np.ndarray  # (lines, genes)
    drug_effect: np.ndarray  # (drugs + control, genes); control row is zero
    line_share: np.ndarray  # (lines,) abundance of each line in a well


def _biology(spec: TahoeSpec, rng: np.random.Generator) -> _Biology:
    g = spec.genes
    base = rng.normal(-1.6, 1.0, g)
    line_effect = np.where(rng.random((spec.cell_lines, g)) < 0.08,
                           rng.normal(0, 1.2, (spec.cell_lines, g)), 0.0)
    n_fine = min(len(MOA_FINE), max(2, spec.drugs // 4))
    fine_effect = np.where(rng.random((n_fine, g)) < 0.03, rng.normal(0, 0.5, (n_fine, g)), 0.0)
    fine_of_drug = np.arange(spec.drugs) % n_fine
    own = np.where(rng.random((spec.drugs, g)) < 0.02, rng.normal(0, 0.5, (spec.drugs, g)), 0.0)
    drug_effect = np.vstack([fine_effect[fine_of_drug] + own, np.zeros((1, g))])
    line_share = rng.dirichlet(np.full(spec.cell_lines, 8.0))
    return _Biology(base, line_effect, drug_effect, line_share)


def _draws_for_nnz(base: np.ndarray, nnz: int) -> int:
    """UMIs to draw per cell so that about ``nnz`` distinct genes come out.

    Expected distinct genes after m draws from p: sum over genes of 1 - (1 - p)^m.
    """
    p = np.exp(base) / np.exp(base).sum()
    lo, hi = nnz, 1000 * nnz
    while hi - lo > 1:
        mid = (lo + hi) // 2
        distinct = np.sum(-np.expm1(mid * np.log1p(-p)))
        lo, hi = (mid, hi) if distinct < nnz else (lo, mid)
    return hi


def _poisson_counts(bio: _Biology, well: int, lines: np.ndarray, depth: np.ndarray,
                    rng: np.random.Generator) -> sp.csr_matrix:
    """Dense Poisson counts: exact, for small gene panels."""
    rate = np.exp(bio.base + bio.line_effect[lines] + bio.drug_effect[well]) * depth[:, None]
    return sp.csr_matrix(rng.poisson(rate).astype(np.float32))


def _sparse_counts(bio: _Biology, line_rate: np.ndarray, well: int, lines: np.ndarray,
                   depth: np.ndarray, draws: int, rng: np.random.Generator) -> sp.csr_matrix:
    """Counts as multinomial UMI draws over genes: work scales with non-zeros, not genes.

    ``line_rate`` is exp(base + line effect), (lines, genes), computed once per plate.
    """
    genes = bio.base.size
    drug_rate = np.exp(bio.drug_effect[well])
    per_cell = np.maximum(1, np.round(draws * depth)).astype(np.int64)
    cell_of_draw = np.repeat(np.arange(lines.size), per_cell)
    gene = np.empty(cell_of_draw.size, np.int64)
    line_of_draw = lines[cell_of_draw]
    for line in np.unique(lines):
        at = np.flatnonzero(line_of_draw == line)
        cdf = np.cumsum(line_rate[line] * drug_rate)
        gene[at] = np.searchsorted(cdf, rng.random(at.size) * cdf[-1], side="right")
    np.minimum(gene, genes - 1, out=gene)  # guards the float edge u * total == total
    keys, counts = np.unique(cell_of_draw * genes + gene, return_counts=True)
    cells = keys // genes
    indptr = np.r_[0, np.cumsum(np.bincount(cells, minlength=lines.size))]
    return sp.csr_matrix((counts.astype(np.float32), (keys % genes).astype(np.int32), indptr),
                         shape=(lines.size, genes))


def count_rows(genes: int, nnz_per_cell: int, n_cells: int, seed: int) -> sp.csr_array:
    """``n_cells`` Tahoe-shaped cells (50 lines, no drug) drawn as the plates' counts are:
    for benchmarks that need batches, not plates."""
    spec = TahoeSpec(genes=genes, nnz_per_cell=nnz_per_cell, cell_lines=50, seed=seed)
    rng = np.random.default_rng(seed)
    bio = _biology(spec, rng)
    lines = rng.choice(spec.cell_lines, n_cells, p=bio.line_share)
    depth = rng.lognormal(0.0, DEPTH_SIGMA, n_cells)
    control = bio.drug_effect.shape[0] - 1
    x = _sparse_counts(bio, np.exp(bio.base + bio.line_effect), control, lines, depth,
                       _draws_for_nnz(bio.base, nnz_per_cell), rng)
    return sp.csr_array(x)


def drug_table(spec: TahoeSpec) -> pd.DataFrame:
    """Tahoe's drug metadata layout; MoA fine follows the drug index, broad the fine MoA."""
    n_fine = min(len(MOA_FINE), max(2, spec.drugs // 4))
    names = [f"Synthetic-{i:03d}" for i in range(spec.drugs)]
    # Two names carry a trailing space, like the real table: readers must strip them.
    for i in (1, 3):
        if i < spec.drugs:
            names[i] += " "
    fine = [MOA_FINE[i % n_fine] for i in range(spec.drugs)]
    return pd.DataFrame(
        {
            "drug": names,
            "targets": [f"GENE{i % 97}" for i in range(spec.drugs)],
            "moa-broad": [MOA_BROAD[MOA_FINE.index(f) % len(MOA_BROAD)] for f in fine],
            "moa-fine": fine,
            "canonical_smiles": [
                "C" * (i % 12 + 1) + "O" + "N" * (i // 12) for i in range(spec.drugs)
            ],
            "pubchem_cid": np.arange(spec.drugs) + 100_000,
        }
    )


def _plate(spec: TahoeSpec, plate: int, bio: _Biology, drugs: list[str],
           rng: np.random.Generator) -> anndata.AnnData:
    n_samples = spec.drugs + 1  # every drug once per plate, plus a DMSO well
    wells = rng.permutation(n_samples)  # well order differs between plates
    doses = rng.choice(DOSES_UM, n_samples)
    per_sub = np.full(spec.sublibraries, spec.cells_per_plate // spec.sublibraries)
    per_sub[: spec.cells_per_plate % spec.sublibraries] += 1
    draws = _draws_for_nnz(bio.base, spec.nnz_per_cell) if spec.nnz_per_cell else None
    line_rate = np.exp(bio.base + bio.line_effect) if draws else None
    blocks, obs = [], []
    for sub, n_sub in enumerate(per_sub):
        sizes = rng.multinomial(n_sub, rng.dirichlet(np.full(n_samples, 20.0)))
        for well, n in zip(wells, sizes, strict=True):
            if n == 0:
                continue
            lines = rng.choice(spec.cell_lines, n, p=bio.line_share)
            depth = rng.lognormal(0.0, DEPTH_SIGMA, n)
            blocks.append(
                _sparse_counts(bio, line_rate, well, lines, depth, draws, rng) if draws
                else _poisson_counts(bio, well, lines, depth, rng)
            )
            drug = drugs[well]
            obs.append(pd.DataFrame({
                "sample": f"smp_{plate * 1000 + well}",
                "drug": drug,
                "drugname_drugconc": f"[('{drug}', {doses[well]}, 'uM')]",
                "cell_line_idx": lines,
                "sublibrary": f"lib_{plate * 10 + sub}",
            }))
    x = sp.vstack(blocks, format="csr")
    x.sort_indices()
    o = pd.concat(obs, ignore_index=True)
    n = x.shape[0]
    gene_count = np.diff(x.indptr)
    tscp = np.asarray(x.sum(axis=1)).ravel().astype(np.int64)
    barcode = [
        f"{i // 9216 % 96 + 1:02d}_{i // 96 % 96 + 1:03d}_{i % 96 + 1:03d}" for i in range(n)
    ]
    frame = pd.DataFrame({
        "plate": f"plate{plate}",
        "sample": o["sample"],
        "gene_count": gene_count,
        "tscp_count": tscp,
        "mread_count": tscp + rng.poisson(tscp * 0.3),
        "drugname_drugconc": o["drugname_drugconc"],
        "drug": o["drug"],
        "cell_line": [f"CVCL_{1000 + i:04d}" for i in o["cell_line_idx"]],
        "sublibrary": o["sublibrary"],
        "BARCODE": barcode,
        "pcnt_mito": rng.uniform(0, 8, n).astype(np.float32),
        "S_score": rng.normal(0, 0.1, n).astype(np.float32),
        "G2M_score": rng.normal(0, 0.1, n).astype(np.float32),
        "phase": rng.choice(PHASES, n),
        "pass_filter": "full",
        "cell_name": [f"SYN-{i:02d}" for i in o["cell_line_idx"]],
    })
    frame.index = pd.Index(frame["BARCODE"] + "-" + frame["sublibrary"], name="BARCODE_SUB_LIB_ID")
    for col in ("plate", "sample", "drugname_drugconc", "drug", "cell_line", "sublibrary",
                "phase", "pass_filter", "cell_name"):
        frame[col] = frame[col].astype("category")
    var = pd.DataFrame(index=pd.Index(gene_names(spec.genes), name="gene_name"))
    return anndata.AnnData(X=x, obs=frame, var=var)


def generate_plates(spec: TahoeSpec) -> tuple[pd.DataFrame, Iterator[tuple[int, anndata.AnnData]]]:
    """The drug table, and the plates one by one (number, AnnData): what both formats hold."""
    rng = np.random.default_rng(spec.seed)
    bio = _biology(spec, rng)
    table = drug_table(spec)
    # obs carries clean names; the table's stray spaces are the reader's problem.
    drugs = [d.strip() for d in table["drug"]] + [CONTROL_DRUG]
    plates = ((plate, _plate(spec, plate, bio, drugs, rng)) for plate in range(1, spec.plates + 1))
    return table, plates


def write_tahoe(out_dir: str | Path, spec: TahoeSpec) -> Path:
    """Write ``spec.plates`` real-named plate files and ``drug_metadata.parquet``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table, plates = generate_plates(spec)
    table.to_parquet(out / "drug_metadata.parquet", index=False)
    for plate, adata in plates:
        final = out / PLATE_FILENAME.format(n=plate)
        tmp = final.with_suffix(".h5ad.tmp")
        adata.write_h5ad(tmp)
        os.replace(tmp, final)  # a crash never leaves a half-written plate under the real name
    return out


def write_tahoe_parquet(out_dir: str | Path, spec: TahoeSpec, **layout) -> Path:
    """The same cells as ``write_tahoe`` (same spec, same seed), in the Hugging Face layout."""
    from raycell.tahoe.data.hf_layout import plate_cells, write_layout

    table, plates = generate_plates(spec)
    return write_layout(Path(out_dir), (plate_cells(n, a) for n, a in plates),
                        gene_names(spec.genes), table, **layout)


def gene_names(n: int) -> list[str]:
    return [f"GENE{g:05d}" for g in range(n)]


def ensure_tahoe(out_dir: str | Path, spec: TahoeSpec) -> Path:
    """Generate once and reuse (``core/generated.ensure_generated``)."""
    return ensure_generated(out_dir, spec, set(TahoeSpec.model_fields), GENERATOR_VERSION,
                            write_tahoe)
