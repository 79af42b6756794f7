"""The Tahoe reader against anndata's own reading of the same generated plates."""

import anndata
import numpy as np
import pandas as pd
import pytest

from raycell.tahoe.data.labels import CONTROL_LABEL
from raycell.tahoe.data.plates import CONTROL_DRUG, PLATE_FILENAME, find_plates
from raycell.tahoe.data.sparse import TahoeRows
from raycell.tahoe.inputs import load_tahoe_inputs
from tests.conftest import TINY, tiny_config


@pytest.fixture(scope="module")
def inputs(tahoe_dir, tmp_path_factory):
    return load_tahoe_inputs(tiny_config(tahoe_dir, tmp_path_factory.mktemp("out")))


def _reference(tahoe_dir, plates):
    adatas = [anndata.read_h5ad(tahoe_dir / PLATE_FILENAME.format(n=p)) for p in plates]
    return anndata.concat(adatas)


def test_generated_plates_have_the_real_layout(tahoe_dir):
    assert sorted(find_plates(tahoe_dir)) == [1, 2, 3]
    a = anndata.read_h5ad(tahoe_dir / PLATE_FILENAME.format(n=1))
    assert a.obs.index.name == "BARCODE_SUB_LIB_ID"
    for col in ("plate", "sample", "drug", "drugname_drugconc", "cell_line", "cell_name",
                "sublibrary", "gene_count", "tscp_count", "phase", "pass_filter"):
        assert col in a.obs
    assert a.X.format == "csr" and a.X.dtype == np.float32
    assert a.obs["cell_line"].str.match(r"^CVCL_\d{4}$").all()
    assert CONTROL_DRUG in set(a.obs["drug"])
    # Row order: sublibrary, then sample (one drug each); cell lines mixed inside a sample.
    runs = (a.obs["sample"] != a.obs["sample"].shift()).sum()
    assert runs == TINY.sublibraries * (TINY.drugs + 1)
    assert a.obs.groupby("sample", observed=True)["drug"].nunique().max() == 1
    assert a.obs.groupby("sample", observed=True)["cell_line"].nunique().min() > 1
    table = pd.read_parquet(tahoe_dir / "drug_metadata.parquet")
    assert {"drug", "canonical_smiles", "moa-broad", "moa-fine"} <= set(table.columns)
    assert table["drug"].str.endswith(" ").any()  # stray spaces, as in the real table


def test_rows_match_anndata_including_repeats(inputs, tahoe_dir):
    ref = _reference(tahoe_dir, [1, 2])
    rows = TahoeRows(inputs.train, inputs.labels)
    assert len(rows) == ref.n_obs
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(rows), 400))  # with repeats, as weighted sampling draws
    idx = np.concatenate([idx, np.arange(895, 905)])  # a run across the plate boundary
    idx.sort()
    batch = rows[idx]
    np.testing.assert_array_equal(batch.x.toarray(), ref.X[idx].toarray())


def test_labels_come_from_obs_and_the_stripped_drug_table(inputs, tahoe_dir):
    ref = _reference(tahoe_dir, [1, 2])
    table = pd.read_parquet(tahoe_dir / "drug_metadata.parquet")
    table["drug"] = table["drug"].str.strip()
    moa = table.set_index("drug")
    space = inputs.labels
    labels = space.expand(inputs.train.codes)
    for i in np.random.default_rng(1).choice(ref.n_obs, 200, replace=False):
        drug = ref.obs["drug"].iloc[i]
        assert space.cell_line[labels[i, 0]] == ref.obs["cell_line"].iloc[i]
        assert space.drug[labels[i, 1]] == drug
        broad = CONTROL_LABEL if drug == CONTROL_DRUG else moa.at[drug, "moa-broad"]
        fine = CONTROL_LABEL if drug == CONTROL_DRUG else moa.at[drug, "moa-fine"]
        assert space.moa_broad[labels[i, 2]] == broad
        assert space.moa_fine[labels[i, 3]] == fine


def test_label_spaces_are_fixed_by_metadata_not_by_loaded_cells(tahoe_dir, tmp_path):
    # The first 50 cells hold one or two drugs, yet every head keeps every class.
    small = load_tahoe_inputs(tiny_config(tahoe_dir, tmp_path, **{"data.max_train_cells": 50}))
    assert len(small.train) == 50
    assert len(np.unique(small.train.codes[:, 1])) <= 2
    assert small.labels.sizes()["drug"] == TINY.drugs + 1
    assert small.labels.sizes()["cell_line"] == TINY.cell_lines


def test_max_cells_takes_the_first_cells_across_plates(tahoe_dir, tmp_path):
    cfg = tiny_config(tahoe_dir, tmp_path, **{"data.max_train_cells": 1000,
                                              "data.max_test_cells": 10})
    got = load_tahoe_inputs(cfg)
    assert [p.n_rows for p in got.train.plates] == [900, 100]
    assert len(got.test) == 10


@pytest.mark.parametrize("fill", ["dense_by_scipy", "dense_by_scatter"])
def test_batches_made_dense_equal_the_reference(inputs, tahoe_dir, fill):
    import torch

    from raycell.tahoe.data import sparse

    ref = _reference(tahoe_dir, [1, 2])
    idx = np.arange(100, 164)
    batch = TahoeRows(inputs.train, inputs.labels)[idx]
    expected = np.log1p(ref.X[idx].toarray())
    dense = getattr(sparse, fill)(batch.x, torch.device("cpu"))
    np.testing.assert_array_equal(dense.numpy(), ref.X[idx].toarray())
    x, y = batch.dense_on(torch.device("cpu"), log1p=True)
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(y.numpy(), batch.labels)
    np.testing.assert_array_equal(batch.rows, idx)
