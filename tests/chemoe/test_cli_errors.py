"""raycell chemoe on bad input: one line naming the culprit, exit code 2, nothing written."""

import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from tests.conftest import assert_clean_error, run_main


def copy_data(src, dst):
    return shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.lock", "complete.json"))


def _invalid_smiles(root):
    drugs = pd.read_csv(root / "drugs.csv")
    drugs.loc[2, "smiles"] = "C1CC(N"
    drugs.to_csv(root / "drugs.csv", index=False)
    return [], f"invalid SMILES for 1 drug(s): {drugs.loc[2, 'name']} ('C1CC(N')"


def _missing_embedding(root):
    with np.load(root / "kpgt_embeddings.npz") as npz:
        smiles, vectors = npz["smiles"], npz["embeddings"]
    np.savez(root / "kpgt_embeddings.npz", smiles=smiles[1:], embeddings=vectors[1:])
    name = pd.read_csv(root / "drugs.csv")["name"][0]
    return [], f"1 drug(s) have no structure or KPGT vector: {name}"


def _kpgt_wrong_length(root):
    with np.load(root / "kpgt_embeddings.npz") as npz:
        smiles = npz["smiles"]
    np.savez(root / "k.npz", smiles=smiles, embeddings=np.zeros((len(smiles), 300)))
    return ["--kpgt_file", str(root / "k.npz")], "expected (n, 2304)"


def _empty_split(root):
    with h5py.File(root / "A549.h5", "a") as f:
        del f["splits/fold0/test"]
        f.create_dataset("splits/fold0/test", data=np.zeros(0, np.int64))
    return [], "A549 fold 0: the test split is empty"


def _no_file_for_line(root):
    return ["--cell_line", "HELA"], "HELA.h5 does not exist"


def _drug_not_in_table(root):
    drugs = pd.read_csv(root / "drugs.csv")
    drugs.iloc[1:].to_csv(root / "drugs.csv", index=False)
    return [], f"1 drug(s) are not in {root / 'drugs.csv'}: {drugs['name'][0]}"


@pytest.mark.parametrize("damage", [_invalid_smiles, _missing_embedding, _kpgt_wrong_length,
                                    _empty_split, _no_file_for_line, _drug_not_in_table])
def test_bad_data(pdgrapher_dir, tmp_path, damage):
    root = copy_data(pdgrapher_dir, tmp_path / "data")
    args, culprit = damage(root)
    save = tmp_path / "out"
    base = ["--data", str(root), "--save_dir", str(save), "--model", "chemoe", "ridge"]
    r = run_main("chemoe", *base, "--cell_line", "A549", *args)  # args may name another line
    assert_clean_error(r, culprit, save)


@pytest.mark.parametrize(("args", "culprit"), [
    (["--cell_line", "K562"], "unknown cell line 'K562'"),
    (["--cell_line", "A549", "--fold", "5"], "fold 5 is out of range 0..4"),
    (["--cell_line", "A549", "--model", "transformer"], "grid.models"),
    (["--cell_line", "A549", "--top_k", "5"], "top_k 5 exceeds num_experts 4"),
    (["--cell_line", "A549", "--epochs", "0"], "training.epochs"),
    (["--cell_line", "A549", "--seed", "-3"],
     "training.seed: Input should be greater than or equal to 0"),
    (["--fold", "0"], "choose one or more cell lines"),
    (["--cell_line", "A549", "--kpgt_file", "/no/such.npz"], "/no/such.npz does not exist"),
])
def test_bad_arguments(pdgrapher_dir, tmp_path, args, culprit):
    save = tmp_path / "out"
    r = run_main("chemoe", "--data", str(pdgrapher_dir), "--save_dir", str(save), *args)
    assert_clean_error(r, culprit, save)


def test_generator_rejects_an_unknown_cell_line(tmp_path):
    r = run_main("data", "pdgrapher", "--out", str(tmp_path / "d"), "--cell_lines", "K562")
    assert_clean_error(r, "unknown cell line 'K562'", tmp_path / "d")


@pytest.mark.parametrize(("args", "culprit"), [
    (["--top_k", "5"], "--top_k 5 exceeds --num_experts 4"),
    (["--genes", "0"], "--genes must be positive"),
    (["--device", "tpu"], "--device 'tpu'"),
])
def test_bench_chemoe_flag_errors(tmp_path, capsys, args, culprit):
    from raycell.cli import main

    assert main(["bench", "chemoe", "--out", str(tmp_path / "b"), *args]) == 2
    assert culprit in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
