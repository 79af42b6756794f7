"""The tahoe_scale data: real row counts, real layout, read by the real readers."""

import shutil

import anndata
import numpy as np
import pytest

from raycell.core.errors import RaycellError
from raycell.tahoe.config import load_tahoe_config
from raycell.tahoe.data.plates import PLATE_FILENAME
from raycell.tahoe.data.tahoe_scale import (
    OBS_BYTES_PER_CELL,
    TAHOE_CELLS,
    TAHOE_PLATE_1,
    TahoeScaleSpec,
    check_room,
    estimated_bytes,
    tahoe_plate_cells,
    write_tahoe_scale,
)
from raycell.tahoe.inputs import load_tahoe_inputs
from tests.conftest import run_main

SMALL = TahoeScaleSpec(plate_cells=[3000, 2500, 2000], genes=400, drugs=9, cell_lines=6,
                     sublibraries=2, nnz_per_cell=3)


def test_the_profile_has_tahoes_plates_and_cells():
    cells = tahoe_plate_cells()
    assert len(cells) == 14 and sum(cells) == TAHOE_CELLS and cells[0] == TAHOE_PLATE_1
    spec = TahoeScaleSpec()
    assert (spec.genes, spec.drugs + 1, spec.cell_lines) == (62_710, 380, 50)
    assert 8e9 < estimated_bytes(spec) < 16e9  # what the docs promise: it fits a laptop disk


@pytest.fixture(scope="module")
def scale_dir(tmp_path_factory):
    return write_tahoe_scale(tmp_path_factory.mktemp("tahoe_scale"), SMALL, progress=lambda _: None)


def test_plates_are_real_h5ad_with_the_obs_columns_and_a_unique_index(scale_dir):
    adata = anndata.read_h5ad(scale_dir / PLATE_FILENAME.format(n=2))
    assert adata.shape == (2500, 400)
    assert {"plate", "sample", "gene_count", "tscp_count", "drug", "cell_line", "sublibrary",
            "BARCODE", "pass_filter", "cell_name"} <= set(adata.obs.columns)
    assert adata.obs.index.name == "BARCODE_SUB_LIB_ID" and adata.obs.index.is_unique
    counts = np.diff(adata.X.indptr)
    assert (counts == 3).all() and (adata.obs["gene_count"] == 3).all()
    assert (np.diff(adata.X.indices.reshape(-1, 3), axis=1) > 0).all()  # sorted, distinct
    # Rows ordered by sublibrary, then sample: a sample is one contiguous run per sublibrary.
    runs = (adata.obs["sample"].astype(str) + adata.obs["sublibrary"].astype(str))
    changes = (runs.to_numpy()[1:] != runs.to_numpy()[:-1]).sum() + 1
    assert changes == 2 * (SMALL.drugs + 1)


def test_tahoe_scale_plates_convert_to_shards_that_read_the_same(scale_dir, tmp_path):
    """What `raycell data tahoe --profile tahoe_scale --format parquet` does after writing
    the plates (convert them), at a small size: the same labels, codes and rows."""
    from raycell.tahoe.data.hf_layout import convert_h5ad
    from raycell.tahoe.data.sparse import split_rows

    snapshot = convert_h5ad(scale_dir, tmp_path / "hf", rows_per_shard=1000)
    settings = {"data.train_plates": [1, 2], "data.test_plates": [3]}
    plates = load_tahoe_inputs(load_tahoe_config("default", {"data.h5ad_dir": str(scale_dir),
                                                             **settings}))
    shards = load_tahoe_inputs(load_tahoe_config("default", {"data.parquet_dir": str(snapshot),
                                                             **settings}))
    assert shards.labels.to_json() == plates.labels.to_json()
    np.testing.assert_array_equal(shards.train.codes, plates.train.codes)
    rows = np.arange(0, 5500, 11)
    want = split_rows(plates.train, plates.labels)[rows]
    got = split_rows(shards.train, shards.labels)[rows]
    assert (want.x != got.x).nnz == 0


def test_the_experiment_reads_tahoe_scale_data_with_every_drug_class(scale_dir):
    cfg = load_tahoe_config("default", {"data.h5ad_dir": str(scale_dir),
                                        "data.train_plates": [1, 2], "data.test_plates": [3]})
    inputs = load_tahoe_inputs(cfg)
    assert len(inputs.train) == 5500 and len(inputs.test) == 2000
    assert inputs.labels.sizes()["drug"] == SMALL.drugs + 1
    assert len(np.unique(inputs.train.codes[:, 1])) == SMALL.drugs + 1


def test_no_room_on_the_disk_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "tahoe_scale"
    done = run_main("data", "tahoe", "--profile", "tahoe_scale", "--nnz_per_cell", "30000",
                   "--out", str(out))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "the tahoe_scale data needs ~" in lines[0]
    assert "GB are free" in lines[0]
    assert not out.exists()


def test_parquet_needs_room_for_the_plates_and_their_shards(tmp_path):
    """`--format parquet` writes the plates, then converts them: both are on disk at once."""
    free = shutil.disk_usage(tmp_path).free
    cells = sum(TahoeScaleSpec().plate_cells)
    per_cell = 0.9 * free / 1.2 / cells  # plates alone fit, plates and shards do not
    spec = TahoeScaleSpec(nnz_per_cell=max(1, int((per_cell - 8 - OBS_BYTES_PER_CELL) / 8)))
    check_room(tmp_path / "plates", spec)
    with pytest.raises(RaycellError, match="needs ~"):
        check_room(tmp_path / "plates", spec, parquet=True)


def test_plate_counts_are_the_profiles_own(tmp_path):
    done = run_main("data", "tahoe", "--profile", "tahoe_scale", "--plates", "3",
                   "--out", str(tmp_path / "s"))
    assert done.returncode == 2
    assert "--plates does not apply to --profile tahoe_scale" in done.stderr
    assert not (tmp_path / "s").exists()
