"""In-format PDGrapher data: cell lines, drugs with real SMILES, a learnable response.

The biology is simple but has the shape a model must learn:
- diseased profiles in [0, 1] vary around a cell line's baseline along a few
  latent programmes (low rank, like real expression);
- a drug's target genes, target offsets and potency are functions of its Morgan
  fingerprint (similar molecules act alike), its potency scaled per cell line;
- treated = diseased pulled towards (cell line baseline + the drug's offset) on its
  target genes, so the change depends on the drug, the cell line *and* the sample's
  own state (a gene above the target level falls, one below rises): a per-drug mean
  shift explains part of it, a model that reads the basal profile more.
Splits follow PDGrapher: KFold(5, shuffle, seed 42), then 20% of each train part to
validation. The generator also writes ``kpgt_embeddings.npz``: stand-in 2304-d
vectors (a fixed projection of the fingerprint), since real KPGT cannot run here.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, train_test_split

from raycell.chemoe.config import PDGRAPHER_CELL_LINES, PdgrapherSpec
from raycell.chemoe.molecules import (
    KPGT_DIM,
    KPGT_FILE,
    MORGAN_BITS,
    canonical_smiles,
    morgan_fingerprint,
)
from raycell.chemoe.pdgrapher import DRUGS_FILE, CellLineData, write_cell_line, write_drugs
from raycell.core.generated import ensure_generated

GENERATOR_VERSION = 1  # bump when the biology changes: ensure_pdgrapher then regenerates
LATENT = 8  # programmes of basal variation
# Fragments joined end to end; every combination is valid SMILES (RDKit checks each).
_ENDS = ("C", "O", "N", "F", "Cl", "OC", "C(=O)O", "C#N", "C(F)(F)F", "S(C)(=O)=O")
_RINGS = ("c1ccccc1", "c1ccncc1", "c1ccsc1", "C1CCCCC1", "C1CCNCC1", "c1ccc2ccccc2c1",
          "C1CCOC1", "c1cnc2ccccc2n1", "C1CN(C)CCN1")
_LINKERS = ("", "C", "CC", "C(=O)N", "NC(=O)", "O", "S", "N", "C=C")


def drug_smiles(n: int, seed: int) -> list[str]:
    """``n`` distinct drug-like SMILES that RDKit parses."""
    rng = np.random.default_rng(seed)
    pool = list(itertools.product(_ENDS, _RINGS, _LINKERS, _RINGS, _ENDS))
    out, seen = [], set()
    for i in rng.permutation(len(pool)):
        smiles = "".join(pool[i])
        canonical = canonical_smiles(smiles)
        if canonical is not None and canonical not in seen:
            seen.add(canonical)
            out.append(smiles)
            if len(out) == n:
                return out
    raise ValueError(f"cannot make {n} distinct molecules from the fragment pool")


def pdgrapher_folds(n: int) -> dict[int, dict[str, np.ndarray]]:
    """PDGrapher's protocol: KFold(5, shuffle, 42), then a 20% validation cut."""
    folds = {}
    for fold, (train, test) in enumerate(KFold(5, shuffle=True, random_state=42).split(range(n))):
        train, val = train_test_split(train, test_size=0.2, random_state=42)
        folds[fold] = {"train": np.sort(train), "val": np.sort(val), "test": test}
    return folds


class _Drugs:
    """Drug effects as fixed functions of the fingerprint."""

    def __init__(self, fingerprints: np.ndarray, genes: int, rng: np.random.Generator):
        on = fingerprints.sum(1, keepdims=True).clip(1)
        score = fingerprints @ rng.normal(size=(MORGAN_BITS, genes)) / np.sqrt(on)
        n_targets = max(2, genes // 10)
        self.targets = np.zeros_like(score, dtype=bool)
        np.put_along_axis(self.targets, np.argsort(-np.abs(score), 1)[:, :n_targets], True, 1)
        self.offset = 0.2 * np.tanh(score)  # target level = the line's baseline + offset
        self.potency = fingerprints @ rng.normal(size=MORGAN_BITS) / np.sqrt(on[:, 0])


def _cell_line(spec: PdgrapherSpec, index: int, drugs: _Drugs, names: list[str],
               rng: np.random.Generator) -> CellLineData:
    n, genes = spec.samples, spec.genes
    baseline = rng.uniform(0.2, 0.7, genes)
    programmes = rng.normal(0, 0.08, (LATENT, genes))
    diseased = np.clip(baseline + rng.normal(size=(n, LATENT)) @ programmes
                       + rng.normal(0, 0.01, (n, genes)), 0, 1)
    drug = rng.integers(0, len(names), n)
    sensitivity = rng.normal(0, 0.7)  # the cell line's overall response to drugs
    strength = 1 / (1 + np.exp(-(drugs.potency[drug] + sensitivity)))  # (n,) in (0, 1)
    level = np.clip(baseline + drugs.offset[drug], 0, 1)
    pull = strength[:, None] * drugs.targets[drug] * (level - diseased)
    treated = np.clip(diseased + pull + rng.normal(0, 0.03, (n, genes)), 0, 1)
    return CellLineData(
        cell_line=spec.cell_lines[index], diseased=diseased.astype(np.float32),
        treated=treated.astype(np.float32), drug=np.asarray(names, object)[drug],
        genes=np.array([f"GENE{j}" for j in range(genes)], object),
    )


def write_pdgrapher(out_dir: str | Path, spec: PdgrapherSpec) -> Path:
    """Write every cell line of ``spec``, drugs.csv and the stand-in KPGT file."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    smiles = drug_smiles(spec.drugs, spec.seed)
    names = [f"SYN-{i:04d}" for i in range(spec.drugs)]
    fingerprints = np.stack([morgan_fingerprint(s) for s in smiles])
    drugs = _Drugs(fingerprints, spec.genes, rng)
    for index, line in enumerate(spec.cell_lines):
        line_rng = np.random.default_rng([spec.seed, PDGRAPHER_CELL_LINES.index(line)])
        write_cell_line(out, _cell_line(spec, index, drugs, names, line_rng),
                        pdgrapher_folds(spec.samples))
    (out / DRUGS_FILE).unlink(missing_ok=True)  # the table of an earlier spec
    write_drugs(out, pd.DataFrame({"name": names, "smiles": smiles}))
    projection = rng.normal(size=(MORGAN_BITS, KPGT_DIM)) / np.sqrt(MORGAN_BITS)
    np.savez(out / KPGT_FILE, smiles=np.array(smiles),
             embeddings=np.tanh(fingerprints @ projection).astype(np.float32))
    return out


def ensure_pdgrapher(out_dir: str | Path, spec: PdgrapherSpec) -> Path:
    """Generate once and reuse (``core/generated.ensure_generated``)."""
    return ensure_generated(out_dir, spec, set(PdgrapherSpec.model_fields), GENERATOR_VERSION,
                            write_pdgrapher)
