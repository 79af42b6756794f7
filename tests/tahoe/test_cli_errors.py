"""Bad input: one line naming the culprit, exit code 2, no traceback, nothing written."""

import shutil

import anndata
import pandas as pd
import pytest

from raycell.tahoe.data.plates import PLATE_FILENAME
from tests.conftest import assert_clean_error, run_main

PLATES = ["--train_plates", "1", "2", "--test_plates", "3"]


def copy_plates(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.json", ".lock"))
    return dst


def plate(root, n):
    return root / PLATE_FILENAME.format(n=n)


def _not_hdf5(root):
    plate(root, 2).write_bytes(b"this is not an HDF5 file\n" * 10)
    return plate(root, 2).name


def _no_drug_column(root):
    a = anndata.read_h5ad(plate(root, 1))
    del a.obs["drug"]
    a.write_h5ad(plate(root, 1))
    return "no column 'drug'"


def _drug_not_in_table(root):
    table = pd.read_parquet(root / "drug_metadata.parquet")
    table[~table["drug"].str.startswith("Synthetic-002")].to_parquet(
        root / "drug_metadata.parquet"
    )
    return "drug 'Synthetic-002' is not in the drug table"


def _empty_test_plate(root):
    a = anndata.read_h5ad(plate(root, 3))
    a[:0].copy().write_h5ad(plate(root, 3))
    return f"no cells in {plate(root, 3)}"


@pytest.mark.parametrize("damage", [_not_hdf5, _no_drug_column, _drug_not_in_table,
                                    _empty_test_plate])
def test_bad_data_files(tahoe_dir, tmp_path, damage):
    root = copy_plates(tahoe_dir, tmp_path / "plates")
    culprit = damage(root)
    save = tmp_path / "out"
    r = run_main("tahoe", "--h5ad_dir", str(root), *PLATES, "--strategy", "random",
                "--save_dir", str(save))
    assert_clean_error(r, culprit, save)


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--h5ad_dir", "/no/such/dir", "--strategy", "random"], "/no/such/dir"),
        (["--strategy", "shuffle_everything"], "unknown strategy 'shuffle_everything'"),
        (["--strategy", "random", "--batch_size", "0"], "training.batch_size"),
        (["--strategy", "random", "--max_steps", "0"], "training.max_steps"),
        (["--strategy", "random", "--input", "csr"], "training.input"),
        (["--strategy", "random", "--seed", "0", "-3"],
         "training.seeds.1: Input should be greater than or equal to 0"),
        (["--all", "--epochs", "many"], "--epochs"),
        (["--config", "default", "--all"], "data.h5ad_dir is not set"),
    ],
)
def test_bad_arguments(tahoe_dir, tmp_path, args, culprit):
    save = tmp_path / "out"
    base = ["--h5ad_dir", str(tahoe_dir), *PLATES] if "--h5ad_dir" not in args else PLATES
    if culprit == "data.h5ad_dir is not set":
        base = []
    r = run_main("tahoe", *base, *args, "--save_dir", str(save))
    assert_clean_error(r, culprit, save)


def test_unknown_config_key(tahoe_dir, tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("training:\n  learning_rat: 0.1\n")
    save = tmp_path / "out"
    r = run_main("tahoe", "--config", str(cfg), "--h5ad_dir", str(tahoe_dir), *PLATES, "--all",
                "--save_dir", str(save))
    assert_clean_error(r, "unknown config key 'training.learning_rat'", save)


def test_a_save_dir_that_is_a_file(tahoe_dir, tmp_path):
    taken = tmp_path / "results.csv"
    taken.write_text("strategy,seed\n")
    for save in (taken, taken / "sub"):
        r = run_main("tahoe", "--h5ad_dir", str(tahoe_dir), *PLATES, "--strategy", "random",
                    "--save_dir", str(save))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"{taken} exists and is not a folder" in r.stderr
    assert taken.read_text() == "strategy,seed\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_generator_profile_values_out_of_range_are_one_line(tmp_path):
    done = run_main("data", "tahoe", "--out", str(tmp_path / "d"), "--profile", "tahoe_shaped",
                   "--genes", "1000")
    assert done.returncode == 2
    assert "nnz_per_cell 1400 must be at most genes / 2" in done.stderr
    assert not (tmp_path / "d").exists()
