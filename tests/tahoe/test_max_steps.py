"""`--max_steps N` stops every epoch after N batches, the first batch is timed apart from
training, and the terminal shows a few lines of raycell's, none of Ray's."""

import pandas as pd
import pytest

from tests.conftest import joined, run_cli
from tests.tahoe.test_cli_errors import PLATES

pytestmark = pytest.mark.ray
STRATEGIES = ["block_shuffling", "ray_streaming"]  # an scDataset arm and a Ray Data arm


def test_an_epoch_stops_after_max_steps_batches(tahoe_dir, tmp_path, ray_address):
    save = tmp_path / "out"
    done = run_cli("tahoe", "--h5ad_dir", str(tahoe_dir), *PLATES, "--strategy", *STRATEGIES,
                   "--epochs", "2", "--max_steps", "3", "--batch_size", "16",
                   "--fetch_factor", "4", "--num_workers", "0", "--save_dir", str(save),
                   timeout=600, env=joined(ray_address))
    assert done.returncode == 0, done.stderr[-2000:]
    summary = pd.read_csv(save / "summary.csv", dtype={"run_key": str}).set_index("strategy")
    assert sorted(summary.index) == STRATEGIES
    for strategy in STRATEGIES:
        epochs = pd.read_csv(save / "runs" / summary.at[strategy, "run_key"] / "epochs.csv")
        assert list(epochs["train_cells"]) == [48, 48]  # 3 batches of 16, each epoch
        assert (epochs["startup_seconds"] > 0).all()
        assert (epochs["first_batch_at"] > 1.7e9).all()  # a wall-clock time, for start-up
        # The loaders' start-up, reported beside training time, over all epochs.
        assert summary.at[strategy, "startup_seconds"] == pytest.approx(
            epochs["startup_seconds"].sum())
    # Quiet by default: where it runs, progress lines, the table, the paths; no Ray, Tune
    # or MLflow logs.
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("ray: joined the cluster at")
    assert lines[1] == f"{STRATEGIES[0]}-seed0  epoch 1/2" + lines[1].split("epoch 1/2", 1)[1]
    assert lines[-1] == f"report: {save / 'report.html'}"
    assert len(lines) < 25 and len(done.stderr.strip().splitlines()) < 3, done.stderr
    for noise in ("INFO", "Trial status", "RayTrainWorker", "View detailed results"):
        assert noise not in done.stdout + done.stderr
