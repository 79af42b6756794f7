"""Tahoe in the Hugging Face release's parquet layout: the same cells give the same label
spaces, model inputs and scores as from their h5ad plates; bad shards and tables are one
line naming the file (and the row, where a read finds it)."""

import re
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raycell.core.errors import BadData
from raycell.tahoe.data.hf_layout import CLS_TOKEN, DRUG_TABLE, convert_h5ad
from raycell.tahoe.data.sparse import split_rows
from raycell.tahoe.data.synthetic import write_tahoe_parquet
from raycell.tahoe.inputs import load_tahoe_inputs
from tests.conftest import TINY, assert_clean_error, grid_config, run_main, tiny_config

METRICS = [f"{task}_macro_f1" for task in ("cell_line", "drug", "moa_broad", "moa_fine")]
# Small shards and row groups, so that shards cross plate boundaries and a fetch spans
# several row groups.
LAYOUT = {"rows_per_shard": 700, "rows_per_group": 128}


@pytest.fixture(scope="module")
def converted(tahoe_dir, tmp_path_factory):
    return convert_h5ad(tahoe_dir, tmp_path_factory.mktemp("hf") / "snapshot", **LAYOUT)


def _parquet_config(root, out, **overrides):
    return tiny_config(None, out, **{"data.h5ad_dir": None, "data.parquet_dir": str(root),
                                     **overrides})


def test_converted_and_generated_snapshots_give_the_plates_inputs(tahoe_dir, converted,
                                                                   tmp_path):
    plates = load_tahoe_inputs(tiny_config(tahoe_dir, tmp_path / "a"))
    generated = write_tahoe_parquet(tmp_path / "generated", TINY, **LAYOUT)
    shards = sorted((converted / "data").glob("*.parquet"))
    assert [p.name for p in shards][:2] == ["train-00000-of-00004.parquet",
                                            "train-00001-of-00004.parquet"]
    first = pq.read_table(shards[0], columns=["genes", "expressions"]).slice(0, 1)
    assert first.column("genes")[0].values[0].as_py() == CLS_TOKEN  # a CLS entry, as released
    for root in (converted, generated):
        parquet = load_tahoe_inputs(_parquet_config(root, tmp_path / "b"))
        assert parquet.labels.to_json() == plates.labels.to_json()
        for split in ("train", "test"):
            a, b = getattr(plates, split), getattr(parquet, split)
            assert (a.n_vars, len(a)) == (b.n_vars, len(b))
            np.testing.assert_array_equal(a.codes, b.codes)
            rows = np.random.default_rng(0).choice(len(a), 400)  # unsorted, repeats
            want, got = split_rows(a, plates.labels)[rows], split_rows(b, parquet.labels)[rows]
            assert (want.x != got.x).nnz == 0
            np.testing.assert_array_equal(want.labels, got.labels)
            np.testing.assert_array_equal(want.rows, got.rows)


def test_max_cells_takes_the_first_cells_of_the_plates_asked(tahoe_dir, converted, tmp_path):
    limits = {"data.max_train_cells": 1000, "data.max_test_cells": 50}
    plates = load_tahoe_inputs(tiny_config(tahoe_dir, tmp_path / "a", **limits))
    parquet = load_tahoe_inputs(_parquet_config(converted, tmp_path / "b", **limits))
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(plates, split).codes, getattr(parquet, split).codes)
    assert len(parquet.train) == 1000 and len(parquet.test) == 50


@pytest.mark.ray
@pytest.mark.slow
def test_a_grid_over_the_snapshot_scores_like_the_grid_over_the_plates(converted, tahoe_grid_run,
                                                                       tmp_path):
    """Streaming with the session grid's settings (two ranks, four epochs): the same macro
    F1 to 1e-6 as the grid's run over the plates. (Every other strategy, Ray Data's
    included, reads its rows through the same reader: the inputs test above.)"""
    from raycell.tahoe.grid import tahoe_grid

    strategies = ["streaming"]
    cfg = grid_config(None, tmp_path / "out", **{"data.h5ad_dir": None,
                                                 "data.parquet_dir": str(converted)})
    got = tahoe_grid(cfg, load_tahoe_inputs(cfg), strategies).set_index("strategy")
    want = tahoe_grid_run[3].set_index("strategy").loc[strategies]
    for column in METRICS:
        np.testing.assert_allclose(got.loc[strategies, column], want[column], atol=1e-6,
                                   err_msg=column)


def _rewrite(path, change):
    table = pq.read_table(path)
    pq.write_table(change(table), path, row_group_size=LAYOUT["rows_per_group"])


def _with_row(table, column, row, fix):
    """``table`` with ``column``'s entry ``row`` replaced by ``fix(entry)``."""
    values = table.column(column).to_pylist()
    values[row] = fix(values[row])
    return table.set_column(table.schema.get_field_index(column), column,
                            pa.array(values, table.schema.field(column).type))


def _assert_refused(root, tmp_path, culprit: str) -> None:
    """A run over the snapshot ends on one line naming ``culprit``, nothing written."""
    save = tmp_path / "out"
    refused = run_main("tahoe", "--parquet_dir", root, "--train_plates", "1", "2",
                       "--test_plates", "3", "--strategy", "streaming", "--save_dir", save)
    assert_clean_error(refused, culprit, save)


@pytest.fixture
def spoilt(converted, tmp_path):
    import shutil

    root = tmp_path / "snapshot"
    shutil.copytree(converted, root)
    # The second shard: the last 200 cells of plate 1, then plate 2's first 500.
    return root, sorted((root / "data").glob("*.parquet"))[1]


@pytest.mark.parametrize("column", ["genes", "expressions"])
def test_a_shard_without_a_needed_column_is_one_line(spoilt, tmp_path, column):
    root, shard = spoilt
    _rewrite(shard, lambda t: t.drop_columns([column]))
    _assert_refused(root, tmp_path, f"{shard} has no column '{column}'")


@pytest.mark.parametrize(("column", "fix", "culprit"), [
    ("expressions", lambda v: v[:-1], "genes and expressions differ in length"),
    ("genes", lambda v: [*v[:-1], 99_999], "token id 99999 is not in gene_metadata"),
    ("expressions", lambda v: [*v[:-1], float("nan")], "expression nan (counts must be "
                                                        "finite and non-negative)"),
])
def test_a_bad_row_is_refused_where_a_read_finds_it(spoilt, tmp_path, column, fix, culprit):
    root, shard = spoilt
    _rewrite(shard, lambda t: _with_row(t, column, 200, fix))
    inputs = load_tahoe_inputs(_parquet_config(root, tmp_path / "out"))
    rows = split_rows(inputs.train, inputs.labels)
    at = 700 + 200  # the shard's row 200 (plate 2's first cell) is the split's row 900
    with pytest.raises(BadData, match="^" + re.escape(f"{shard} row 200: {culprit}")):
        rows[np.array([0, at, at + 3])]
    assert len(rows[np.array([0, at - 200, at + 200])]) == 3  # rows of other groups read


@pytest.mark.parametrize("column", ["plate", "drug"])
def test_a_cell_without_a_plate_or_drug_is_one_line(spoilt, tmp_path, column):
    root, shard = spoilt
    _rewrite(shard, lambda t: _with_row(t, column, 200, lambda v: None))
    _assert_refused(root, tmp_path, f"{shard} row 200: no {column}")


def test_a_shard_that_is_not_parquet_is_one_line(spoilt, tmp_path):
    root, shard = spoilt
    shard.write_bytes(b"PAR1 not really")
    _assert_refused(root, tmp_path, f"{shard}: not a readable parquet file")


def test_a_drug_missing_from_the_drug_table_is_one_line(spoilt, tmp_path):
    root, shard = spoilt
    table = pq.read_table(root / DRUG_TABLE).to_pandas()
    gone = table["drug"].iloc[0].strip()
    pq.write_table(pa.Table.from_pandas(table.iloc[1:], preserve_index=False), root / DRUG_TABLE)
    _assert_refused(root, tmp_path, f"drug {gone!r} is not in the drug table")


def test_plates_and_shards_in_one_folder_are_one_line(tahoe_dir, spoilt, tmp_path):
    import shutil

    root, _ = spoilt
    plate = next(tahoe_dir.glob("plate1_*.h5ad"))
    shutil.copy(plate, root / plate.name)
    save = tmp_path / "out"
    refused = run_main("tahoe", "--parquet_dir", root, "--strategy", "streaming",
                       "--save_dir", save)
    assert_clean_error(refused, "holds h5ad plates and a parquet snapshot", save)


@pytest.mark.parametrize(("extra", "culprit"), [
    ((), "is not empty: write the snapshot into a new folder"),
    (("--rows_per_shard", "0"), "--rows_per_shard must be at least 1, not 0"),
])
def test_convert_refuses_a_folder_in_use_and_sizes_below_one(tahoe_dir, tmp_path, extra,
                                                              culprit):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = run_main("data", "convert", tahoe_dir, "--out", out, *extra)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1 and culprit in lines[0], refused.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]  # nothing written
    assert not (tmp_path / "out.partial").exists()


def test_a_snapshot_in_object_storage_reads_as_on_disk(converted, s3, monkeypatch, tmp_path):
    """The snapshot uploaded to an S3-compatible server on loopback (moto): the same labels
    and rows, read back through a split pickled into a process without the AWS variables
    (as a read task on another node gets it: the keys travel in the filesystem)."""
    import pickle

    from pyarrow import fs

    from raycell.core.filesystems import s3_filesystem

    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    uri = s3.bucket("tahoe") + "/hf/"
    fs.copy_files(str(converted), "tahoe/hf", destination_filesystem=s3_filesystem())
    local = load_tahoe_inputs(_parquet_config(converted, tmp_path / "a"))
    remote = load_tahoe_inputs(_parquet_config(uri, tmp_path / "b"))
    assert remote.data_dir == "s3://tahoe/hf"
    assert remote.train.plates[0].path == "s3://tahoe/hf/data/train-00000-of-00004.parquet"
    assert remote.labels.to_json() == local.labels.to_json()
    split = pickle.loads(pickle.dumps(remote.train))
    for name in s3.env:
        monkeypatch.delenv(name)
    rows = np.arange(0, len(split), 7)
    want, got = split_rows(local.train, local.labels)[rows], split_rows(split, remote.labels)[rows]
    assert (want.x != got.x).nnz == 0
    np.testing.assert_array_equal(want.labels, got.labels)


@pytest.mark.parametrize("where", ["no bucket", "silent"])
def test_object_storage_without_the_snapshot_is_one_line_within_seconds(
        s3, silent_endpoint, monkeypatch, tmp_path, where):
    env = s3.env | ({"AWS_ENDPOINT_URL": silent_endpoint} if where == "silent" else {})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    save = tmp_path / "out"
    started = time.monotonic()
    refused = run_main("tahoe", "--parquet_dir", "s3://no-such-bucket/hf", "--strategy",
                       "streaming", "--save_dir", save)
    assert time.monotonic() - started < 10
    culprit = (f"no bucket 'no-such-bucket' at {s3.endpoint}" if where == "no bucket" else
               f"object storage at {silent_endpoint} does not answer")
    assert_clean_error(refused, f"data.parquet_dir s3://no-such-bucket/hf: {culprit}", save)
