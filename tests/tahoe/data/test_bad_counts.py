"""Counts that cannot be trained on (NaN, infinite, negative) are refused where a fetch
reads them, naming the plate and the row: scDataset strategies, Ray Data strategies and the
command line (one line, exit code 2)."""

import h5py
import numpy as np
import pytest

from raycell.core.errors import BadData
from raycell.tahoe.data.plates import PLATE_FILENAME
from raycell.tahoe.data.sparse import TahoeRows
from raycell.tahoe.inputs import load_tahoe_inputs
from raycell.tahoe.loaders.strategies import STRATEGIES, LoaderSettings
from tests.conftest import joined, run_cli, tiny_config
from tests.tahoe.test_cli_errors import PLATES, copy_plates

ROW = 37  # of plate 2, the second training plate


def _spoil(root, value, plate=2, row=ROW):
    """Set the first stored count of ``row`` to ``value``."""
    with h5py.File(root / PLATE_FILENAME.format(n=plate), "r+") as f:
        first = int(f["X/indptr"][row])
        f["X/data"][first] = value
    return root / PLATE_FILENAME.format(n=plate)


@pytest.fixture(scope="module")
def nan_plates(tahoe_dir, tmp_path_factory):
    root = copy_plates(tahoe_dir, tmp_path_factory.mktemp("nan") / "plates")
    return root, _spoil(root, np.nan)


def _train_rows(root, out):
    inputs = load_tahoe_inputs(tiny_config(root, out))
    return inputs, TahoeRows(inputs.train, inputs.labels), inputs.train.plates[0].n_rows


@pytest.mark.parametrize("value", [np.nan, np.inf, -1.0])
def test_a_fetch_holding_a_bad_count_names_its_plate_and_row(tahoe_dir, tmp_path, value):
    root = copy_plates(tahoe_dir, tmp_path / "plates")
    path = _spoil(root, value)
    _, rows, first_plate_rows = _train_rows(root, tmp_path / "out")
    at = first_plate_rows + ROW  # the row's position in the training split
    with pytest.raises(BadData, match=rf"{path} row {ROW}: count {value} in X/data"):
        rows[np.array([0, at - 1, at, at + 5])]
    fine = rows[np.array([0, at - 1, at + 1])]  # fetches without it read as before
    assert np.isfinite(fine.x.data).all() and len(fine) == 3


def test_a_ray_data_read_task_refuses_the_row_too(nan_plates, tmp_path, ray_address):
    root, path = nan_plates
    inputs = load_tahoe_inputs(tiny_config(root, tmp_path / "out"))
    s = LoaderSettings(batch_size=16, fetch_factor=4, num_workers=0, read_rows=100,
                       buffer_rows=64, block_size=1, min_count_baseline=1000, seed=0,
                       rank=0, world=1)
    with pytest.raises(Exception, match=rf"BadData: {path} row {ROW}: count nan"):
        for _ in STRATEGIES["ray_streaming"].epochs(inputs.train, inputs.labels, s)(0):
            pass


@pytest.mark.ray
def test_the_command_ends_on_one_line_naming_plate_and_row(nan_plates, tmp_path, ray_address):
    root, path = nan_plates
    save = tmp_path / "out"
    done = run_cli("tahoe", "--h5ad_dir", str(root), *PLATES, "--strategy", "random",
                   "--batch_size", "16", "--fetch_factor", "4", "--num_workers", "0",
                   "--save_dir", str(save), timeout=300, env=joined(ray_address))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0] == (f"raycell: error: {path} row {ROW}: count nan in X/data (counts must "
                        "be finite and non-negative)")
    assert not (save / "summary.csv").exists() and not (save / "report.html").exists()
