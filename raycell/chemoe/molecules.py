"""Molecule features per drug: Morgan fingerprints (RDKit) or KPGT vectors from a file.

SMILES are canonicalised with RDKit before a KPGT lookup, so a table and an
embedding file that write the same molecule differently still meet.
"""

from __future__ import annotations

import logging
import pickle
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from raycell.core.errors import RaycellError

MORGAN_BITS = 1024
KPGT_DIM = 2304  # three 768-d readouts, concatenated
KPGT_FILE = "kpgt_embeddings.npz"  # looked for in the data folder when no file is named
log = logging.getLogger(__name__)


def _mol(smiles: str):
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # a bad SMILES is our error message, not RDKit's stderr
    return Chem.MolFromSmiles(smiles) if smiles else None


@cache
def canonical_smiles(smiles: str) -> str | None:
    from rdkit import Chem

    mol = _mol(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


@cache
def _morgan_generator():
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=MORGAN_BITS)


@lru_cache(maxsize=4096)
def morgan_fingerprint(smiles: str) -> np.ndarray:
    """Radius-2, 1024-bit Morgan fingerprint as float32 0/1 (cached per SMILES)."""
    mol = _mol(smiles)
    if mol is None:
        raise RaycellError(f"invalid SMILES {smiles!r}")
    bits = _morgan_generator().GetFingerprintAsNumPy(mol).astype(np.float32)
    bits.setflags(write=False)  # shared by the cache
    return bits


def load_kpgt(path: Path, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """canonical SMILES -> 2304 floats, from npz (``smiles``, ``embeddings``), parquet
    (``smiles``, ``embedding``) or, with ``allow_pickle``, a pickled dict SMILES -> vector."""
    path = Path(path)
    if not path.is_file():
        raise RaycellError(f"KPGT file {path} does not exist")
    if path.suffix == ".npz":
        smiles, vectors = _read_npz(path)
    elif path.suffix == ".parquet":
        table = _read_parquet(path)
        smiles, vectors = table["smiles"].astype(str).tolist(), table["embedding"].tolist()
    elif path.suffix in (".pkl", ".pickle"):
        if not allow_pickle:
            raise RaycellError(f"KPGT file {path} is a pickle, which runs code when loaded: "
                               "pass --allow_pickle if you trust it, or convert it to .npz")
        with path.open("rb") as f:
            mapping = pickle.load(f)  # noqa: S301 - the user opted in
        if not isinstance(mapping, dict):
            raise RaycellError(f"KPGT file {path} does not hold a dict SMILES -> vector")
        smiles, vectors = list(map(str, mapping)), list(mapping.values())
    else:
        raise RaycellError(f"KPGT file {path}: use .npz, .parquet or (with --allow_pickle) .pkl")
    out = {}
    for smi, vec in zip(smiles, vectors, strict=True):
        vec = np.asarray(vec, np.float32).reshape(-1)
        if vec.size != KPGT_DIM:
            raise RaycellError(f"KPGT file {path}: the vector for {smi!r} has {vec.size} values, "
                               f"expected {KPGT_DIM}")
        out[canonical_smiles(smi) or smi] = vec
    return out


def _read_npz(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "smiles" not in npz or "embeddings" not in npz:
                raise RaycellError(f"KPGT file {path} needs arrays 'smiles' and 'embeddings' "
                                   f"(has: {', '.join(npz.files)})")
            smiles, vectors = npz["smiles"].astype(str).tolist(), npz["embeddings"]
    except (OSError, ValueError) as exc:
        raise RaycellError(f"KPGT file {path} is not a readable npz ({exc})") from None
    if vectors.ndim != 2 or vectors.shape[1] != KPGT_DIM:
        raise RaycellError(f"KPGT file {path}: embeddings have shape {vectors.shape}, "
                           f"expected (n, {KPGT_DIM})")
    return smiles, vectors


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise RaycellError(f"KPGT file {path} is not a readable parquet ({exc})") from None
    missing = [c for c in ("smiles", "embedding") if c not in table.columns]
    if missing:
        raise RaycellError(f"KPGT file {path} has no column {missing[0]!r}")
    return table


def drug_features(drugs: pd.DataFrame, encoder: str, kpgt: dict[str, np.ndarray] | None = None,
                  missing: str = "error") -> tuple[np.ndarray, int]:
    """(n_drugs, dim) float32 features in the row order of ``drugs`` (columns name, smiles),
    and how many rows were zeroed.

    A drug with no SMILES (or, for KPGT, no vector) is an error listing every such
    drug, unless ``missing == "zero"``: then its row is zeros and the count is logged.
    An invalid SMILES is always an error.
    """
    bad = [f"{n} ({s!r})" for n, s in zip(drugs["name"], drugs["smiles"], strict=True)
           if s and canonical_smiles(s) is None]
    if bad:
        raise RaycellError(f"invalid SMILES for {len(bad)} drug(s): {', '.join(bad[:10])}")
    dim = MORGAN_BITS if encoder == "morgan" else KPGT_DIM
    out = np.zeros((len(drugs), dim), np.float32)
    absent = []
    for i, (name, smiles) in enumerate(zip(drugs["name"], drugs["smiles"], strict=True)):
        if not smiles:
            absent.append(name)
        elif encoder == "morgan":
            out[i] = morgan_fingerprint(smiles)
        elif (vec := kpgt.get(canonical_smiles(smiles))) is not None:
            out[i] = vec
        else:
            absent.append(name)
    if absent:
        what = "structure (SMILES)" if encoder == "morgan" else "structure or KPGT vector"
        if missing != "zero":
            shown = ", ".join(absent[:10]) + (" ..." if len(absent) > 10 else "")
            raise RaycellError(f"{len(absent)} drug(s) have no {what}: {shown} "
                               "(--missing_embedding zero uses zeros for them)")
        log.warning("%d of %d drugs have no %s: their features are zeros", len(absent),
                    len(drugs), what)
    return out, len(absent)
