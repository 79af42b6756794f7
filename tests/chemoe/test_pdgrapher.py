"""PDGrapher data: the importer on PDGrapher's own layout, the reader, the generator."""

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from raycell.chemoe.config import PdgrapherSpec
from raycell.chemoe.molecules import canonical_smiles
from raycell.chemoe.pdgrapher import (
    import_pdgrapher,
    read_cell_line,
    read_drug_table,
    read_info,
    read_split,
)
from raycell.chemoe.synthetic import pdgrapher_folds, write_pdgrapher
from raycell.core.errors import RaycellError

FIXTURE = Path(__file__).parent / "fixtures" / "pdgrapher"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported")
    import_pdgrapher(FIXTURE / "data_backward_A549.pt", FIXTURE / "splits.pt",
                     FIXTURE / "drugs.csv", out)
    return out


def test_import_keeps_every_sample_field_and_split(imported):
    samples = torch.load(FIXTURE / "data_backward_A549.pt", weights_only=False)
    splits = torch.load(FIXTURE / "splits.pt", weights_only=False)
    data = read_cell_line(imported, "A549")
    assert len(data) == len(samples)
    for i, s in enumerate(samples):
        np.testing.assert_array_equal(data.diseased[i], s.diseased.numpy())
        np.testing.assert_array_equal(data.treated[i], s.treated.numpy())
        assert data.drug[i] == s.perturbagen_name
    assert list(data.genes) == samples[0].gene_symbols
    for fold in range(5):  # CLI fold K is PDGrapher's split key K + 1
        split = read_split(imported, "A549", fold)
        for part in ("train", "val", "test"):
            np.testing.assert_array_equal(split[part],
                                          splits[fold + 1][f"{part}_index_backward"].numpy())


def test_import_writes_the_drug_table_of_the_drugs_seen(imported):
    drugs = pd.read_csv(imported / "drugs.csv", keep_default_na=False)
    assert sorted(drugs["name"]) == ["aspirin", "caffeine", "ibuprofen", "vorinostat"]
    assert drugs.set_index("name").loc["vorinostat", "smiles"] == ""  # not in the user's table


def test_generated_splits_follow_pdgrapher(tmp_path):
    folds = pdgrapher_folds(100)
    tests = np.concatenate([folds[k]["test"] for k in range(5)])
    assert sorted(tests) == list(range(100))  # KFold: every sample tested exactly once
    for parts in folds.values():
        assert len(parts["val"]) == 16 and len(parts["train"]) == 64  # 20% of the train part
        assert not set(parts["train"]) & set(parts["val"])
        assert not (set(parts["train"]) | set(parts["val"])) & set(parts["test"])


def test_generator_writes_nine_lines_with_parseable_smiles(tmp_path):
    out = write_pdgrapher(tmp_path, PdgrapherSpec(samples=60, genes=30, drugs=12))
    assert sorted(p.stem for p in out.glob("*.h5")) == sorted(PdgrapherSpec().cell_lines)
    table = read_drug_table(out / "drugs.csv")
    assert len(table) == 12 and all(canonical_smiles(s) for s in table["smiles"])
    info = read_info(out, "VCAP", 4)
    assert (info.n_samples, info.n_genes) == (60, 30)
    assert set(info.drugs) <= set(table["name"])
    data = read_cell_line(out, "VCAP")
    assert data.diseased.min() >= 0 and data.treated.max() <= 1
    assert not np.allclose(data.diseased, data.treated)


def test_generated_response_depends_on_the_drug(tmp_path):
    out = write_pdgrapher(tmp_path, PdgrapherSpec(cell_lines=["A549"], samples=400, genes=50,
                                                  drugs=4))
    data = read_cell_line(out, "A549")
    delta = data.treated - data.diseased
    means = np.stack([delta[data.drug == d].mean(0) for d in np.unique(data.drug)])
    # Drugs move different genes: their mean changes differ far beyond sampling noise.
    assert np.abs(means[0] - means[1]).max() > 0.05


@pytest.mark.parametrize(("line", "fold", "message"), [
    ("K562", 0, "unknown cell line 'K562'"),
    ("MCF7", 0, "MCF7.h5 does not exist"),
    ("A549", 5, "fold 5 is out of range 0..4"),
])
def test_reader_errors_name_the_culprit(imported, line, fold, message):
    with pytest.raises(RaycellError, match=message):
        read_split(imported, line, fold)


def test_an_empty_split_is_an_error(tmp_path, imported):
    path = tmp_path / "A549.h5"
    path.write_bytes((imported / "A549.h5").read_bytes())
    with h5py.File(path, "a") as f:
        del f["splits/fold2/val"]
        f.create_dataset("splits/fold2/val", data=np.zeros(0, np.int64))
    with pytest.raises(RaycellError, match="A549 fold 2: the val split is empty"):
        read_split(tmp_path, "A549", 2)


def test_a_file_that_is_not_hdf5_is_an_error(tmp_path):
    (tmp_path / "A549.h5").write_text("not hdf5")
    with pytest.raises(RaycellError, match="not a readable HDF5 file"):
        read_cell_line(tmp_path, "A549")


def test_importer_rejects_a_file_that_is_not_torch(tmp_path):
    bad = tmp_path / "data_backward_A549.pt"
    bad.write_text("garbage")
    with pytest.raises(RaycellError, match="not a readable torch file"):
        import_pdgrapher(bad, FIXTURE / "splits.pt", FIXTURE / "drugs.csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("name,structure\na,C\n", "has no column 'smiles'"),
    ("name,smiles\na,C\na,CC\n", "lists 'a' twice"),
])
def test_bad_drug_tables(tmp_path, text, message):
    (tmp_path / "drugs.csv").write_text(text)
    with pytest.raises(RaycellError, match=message):
        read_drug_table(tmp_path / "drugs.csv")


def test_an_hdf5_file_in_another_format_is_an_error(tmp_path):
    with h5py.File(tmp_path / "A549.h5", "w") as f:
        f["X"] = np.zeros(3)
    with pytest.raises(RaycellError, match="not in raycell's PDGrapher format"):
        read_cell_line(tmp_path, "A549")


def test_importer_names_a_missing_split_key_and_field(tmp_path):
    splits = torch.load(FIXTURE / "splits.pt", weights_only=False)
    del splits[5]
    torch.save(splits, tmp_path / "splits.pt")
    with pytest.raises(RaycellError, match=r"has no split key 5 \(fold 4\)"):
        import_pdgrapher(FIXTURE / "data_backward_A549.pt", tmp_path / "splits.pt",
                         FIXTURE / "drugs.csv", tmp_path / "out")
    samples = torch.load(FIXTURE / "data_backward_A549.pt", weights_only=False)
    del samples[3].treated
    torch.save(samples, tmp_path / "data_backward_A549.pt")
    with pytest.raises(RaycellError, match="sample 3 has no field 'treated'"):
        import_pdgrapher(tmp_path / "data_backward_A549.pt", FIXTURE / "splits.pt",
                         FIXTURE / "drugs.csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()
