"""Molecule features: Morgan bits as RDKit's older API computes them; KPGT files."""

import pickle

import numpy as np
import pandas as pd
import pytest

from raycell.chemoe.molecules import KPGT_DIM, drug_features, load_kpgt, morgan_fingerprint
from raycell.core.errors import RaycellError

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
ASPIRIN_OTHER_WAY = "OC(=O)c1ccccc1OC(C)=O"
CAFFEINE = "Cn1cnc2c1c(=O)n(C)c(=O)n2C"


def test_morgan_matches_rdkit_bit_vector_reference():
    from rdkit import Chem, DataStructs
    from rdkit.Chem import AllChem

    for smiles in (ASPIRIN, CAFFEINE):
        reference = AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles(smiles), 2,
                                                          nBits=1024)
        expected = np.zeros(1024)
        DataStructs.ConvertToNumpyArray(reference, expected)
        bits = morgan_fingerprint(smiles)
        assert bits.dtype == np.float32 and bits.shape == (1024,)
        np.testing.assert_array_equal(bits, expected)


def test_morgan_is_cached_per_smiles():
    assert morgan_fingerprint(ASPIRIN) is morgan_fingerprint(ASPIRIN)


def table(**drugs):
    return pd.DataFrame({"name": list(drugs), "smiles": list(drugs.values())})


def kpgt_npz(path, smiles, dim=KPGT_DIM):
    vectors = np.arange(len(smiles) * dim, dtype=np.float32).reshape(len(smiles), dim)
    np.savez(path, smiles=np.array(smiles), embeddings=vectors)
    return vectors


def test_kpgt_lookup_meets_a_differently_written_smiles(tmp_path):
    vectors = kpgt_npz(tmp_path / "k.npz", [ASPIRIN_OTHER_WAY, CAFFEINE])
    features, zeroed = drug_features(table(aspirin=ASPIRIN, caffeine=CAFFEINE), "kpgt",
                                     load_kpgt(tmp_path / "k.npz"))
    np.testing.assert_array_equal(features, vectors)
    assert zeroed == 0


def test_kpgt_parquet_and_pickle_behind_the_flag(tmp_path):
    vec = np.linspace(0, 1, KPGT_DIM, dtype=np.float32)
    pd.DataFrame({"smiles": [ASPIRIN], "embedding": [vec]}).to_parquet(tmp_path / "k.parquet")
    np.testing.assert_array_equal(next(iter(load_kpgt(tmp_path / "k.parquet").values())), vec)
    (tmp_path / "k.pkl").write_bytes(pickle.dumps({ASPIRIN: vec}))
    with pytest.raises(RaycellError, match="is a pickle.*--allow_pickle"):
        load_kpgt(tmp_path / "k.pkl")
    np.testing.assert_array_equal(
        next(iter(load_kpgt(tmp_path / "k.pkl", allow_pickle=True).values())), vec)


def test_kpgt_vector_of_the_wrong_length_is_an_error(tmp_path):
    kpgt_npz(tmp_path / "k.npz", [ASPIRIN], dim=768)
    with pytest.raises(RaycellError, match=r"shape \(1, 768\), expected \(n, 2304\)"):
        load_kpgt(tmp_path / "k.npz")
    pd.DataFrame({"smiles": [ASPIRIN], "embedding": [np.zeros(10)]}).to_parquet(
        tmp_path / "k.parquet")
    with pytest.raises(RaycellError, match="has 10 values, expected 2304"):
        load_kpgt(tmp_path / "k.parquet")


def test_missing_embeddings_are_listed_or_zeroed(tmp_path):
    kpgt_npz(tmp_path / "k.npz", [ASPIRIN])
    kpgt = load_kpgt(tmp_path / "k.npz")
    drugs = table(aspirin=ASPIRIN, caffeine=CAFFEINE, mystery="")
    with pytest.raises(RaycellError, match="2 drug.*no structure or KPGT vector: caffeine, "
                                           "mystery"):
        drug_features(drugs, "kpgt", kpgt)
    features, zeroed = drug_features(drugs, "kpgt", kpgt, missing="zero")
    assert zeroed == 2 and not features[1:].any() and features[0].any()
    with pytest.raises(RaycellError, match="1 drug.*no structure \\(SMILES\\): mystery"):
        drug_features(drugs, "morgan")


def test_invalid_smiles_is_an_error_even_with_zero_fill():
    with pytest.raises(RaycellError, match=r"invalid SMILES for 1 drug\(s\): broken \('C1CC\(N'\)"):
        drug_features(table(aspirin=ASPIRIN, broken="C1CC(N"), "morgan", missing="zero")


def test_kpgt_files_of_an_unknown_kind_or_without_their_arrays(tmp_path):
    (tmp_path / "k.txt").write_text("x")
    with pytest.raises(RaycellError, match="use .npz, .parquet"):
        load_kpgt(tmp_path / "k.txt")
    np.savez(tmp_path / "k.npz", smiles=np.array([ASPIRIN]))
    with pytest.raises(RaycellError, match="needs arrays 'smiles' and 'embeddings'"):
        load_kpgt(tmp_path / "k.npz")
