"""`--max_steps N` stops every epoch after N batches, the first batch is timed apart from
training, and the terminal shows a few lines of raycell's, none of Ray's."""

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
    assert (epochs["startup_seconds"] > 0).all()
    assert (epochs["first_batch_at"] > 1.7e9).all()  # a wall-clock time, for start-up figures
    # The loaders' start-up, reported beside training time, over all epochs.
    summary = pd.read_csv(save / "summary.csv")
    assert summary["startup_seconds"].iloc[0] == pytest.approx(epochs["startup_seconds"].sum())
    # Quiet by default: progress lines, the table, the paths; no Ray, Tune or MLflow logs.
    lines = done.stdout.strip().splitlines()
    assert lines[0] == f"{strategy}-seed0  epoch 1/2" + lines[0].split("epoch 1/2", 1)[1]
    assert lines[-1] == f"report: {save / 'report.html'}"
    assert len(lines) < 20 and len(done.stderr.strip().splitlines()) < 3, done.stderr
    for noise in ("INFO", "Trial status", "RayTrainWorker", "View detailed results"):
        assert noise not in done.stdout + done.stderr
