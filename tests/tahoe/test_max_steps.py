"""`--max_steps N` stops every epoch after N batches, and the first batch is timed."""

import pandas as pd
import pytest

from tests.conftest import run_cli
from tests.tahoe.test_cli_errors import PLATES

pytestmark = pytest.mark.ray


@pytest.mark.parametrize("strategy", ["block_shuffling", "ray_streaming"])
def test_an_epoch_stops_after_max_steps_batches(tahoe_dir, tmp_path, strategy):
    save = tmp_path / "out"
    done = run_cli("tahoe", "--h5ad_dir", str(tahoe_dir), *PLATES, "--strategy", strategy,
                   "--epochs", "2", "--max_steps", "3", "--batch_size", "16",
                   "--fetch_factor", "4", "--num_workers", "0", "--save_dir", str(save),
                   timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    epochs = pd.read_csv(next(save.glob("runs/*/epochs.csv")))
    assert list(epochs["train_cells"]) == [48, 48]  # 3 batches of 16, each epoch
    assert (epochs["first_batch_seconds"] > 0).all()
    assert (epochs["first_batch_at"] > 1.7e9).all()  # a wall-clock time, for start-up figures
