"""``raycell status`` on one folder holding a finished and a failed run, each made for
real: a grid that ends, and one whose training loss stops being finite. Running and
interrupted runs are read while a grid runs and after Ctrl-C stopped it (Tahoe,
tests/core/test_resume.py) and after SIGKILL (CheMoE, the same module)."""

import pytest

from raycell.core.errors import RunsFailed
from raycell.core.status import first_error_line
from raycell.tahoe.grid import tahoe_grid
from raycell.tahoe.inputs import load_tahoe_inputs
from tests.conftest import status_of, tiny_config


@pytest.mark.ray
@pytest.mark.slow
def test_status_names_finished_and_failed_runs_and_a_non_finite_loss_its_epoch(
        tahoe_dir, tmp_path, ray_address):
    save = tmp_path / "out"
    tahoe_grid(cfg := tiny_config(tahoe_dir, save, **{"training.num_epochs": 1}),
               load_tahoe_inputs(cfg), ["streaming"])
    # Adam's first steps move every weight by about the learning rate: logits overflow.
    cfg = tiny_config(tahoe_dir, save, **{"training.num_epochs": 1,
                                          "training.learning_rate": 1e38})
    with pytest.raises(RunsFailed, match=r"^1 of 1 runs failed; random-seed0: "
                                         r"FloatingPointError: training loss is nan in "
                                         r"epoch 1, after \d+ steps of it \(all: raycell "
                                         rf"status {save}\)$"):
        tahoe_grid(cfg, load_tahoe_inputs(cfg), ["random"])
    runs = status_of(save)
    assert runs.pop("header").startswith(f"{save}: tahoe, ")
    assert sorted(runs) == ["random-seed0", "streaming-seed0"]
    state, _, key, mlflow_id, detail = runs["streaming-seed0"]
    assert state == "finished" and len(mlflow_id) == 32 and detail == "1 epoch"
    state, _, _, mlflow_id, detail = runs["random-seed0"]
    assert state == "failed" and len(mlflow_id) == 32
    assert detail.startswith("FloatingPointError: training loss is nan in epoch 1")
    # The failed run has no row: the finished one's is all there is.
    summary = (save / "summary.csv").read_text().splitlines()
    assert len(summary) == 2 and summary[1].startswith("streaming,")


def test_the_error_line_is_the_innermost_named_error():
    text = ("Failure # 1\nTraceback (most recent call last):\n  File 'x', line 1\n"
            "ray.train.WorkerGroupError: Training failed due to worker errors:\n"
            "  File 'h5py/h5f.pyx', line 106\nFileNotFoundError: [Errno 2] no such file\n")
    assert first_error_line(text) == "FileNotFoundError: [Errno 2] no such file"
    assert first_error_line("something odd\nhappened") == "something odd"
