"""``raycell status`` on one folder holding finished runs and a failed one, each made for
real: the session's reference grid (a copy of its folder), and a run whose training loss
stops being finite. Running and interrupted runs are read while a grid runs and after
Ctrl-C stopped it (Tahoe, tests/core/test_resume.py) and after SIGKILL (CheMoE, the same
module)."""

import shutil

import pytest

from raycell.core.errors import RunsFailed
from raycell.core.status import first_error_line
from raycell.tahoe.grid import tahoe_grid
from raycell.tahoe.inputs import load_tahoe_inputs
from tests.conftest import REFERENCE_EPOCHS, REFERENCE_STRATEGIES, status_of, tiny_config


@pytest.mark.ray
@pytest.mark.slow
def test_status_names_finished_and_failed_runs_and_a_non_finite_loss_its_epoch(
        tahoe_reference, tahoe_dir, tmp_path, ray_address):
    save = tmp_path / "out"  # the reference's results; its MLflow store stays behind
    shutil.copytree(tahoe_reference[1], save,
                    ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
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
    finished = [f"{s}-seed0" for s in REFERENCE_STRATEGIES]
    assert sorted(runs) == sorted([*finished, "random-seed0"])
    for name in finished:
        state, _, key, mlflow_id, detail = runs[name]
        assert state == "finished" and len(mlflow_id) == 32
        assert detail == f"{REFERENCE_EPOCHS} epochs"
    state, _, _, mlflow_id, detail = runs["random-seed0"]
    assert state == "failed" and len(mlflow_id) == 32
    assert detail.startswith("FloatingPointError: training loss is nan in epoch 1")
    # The failed run has no row: the finished ones' are all there is.
    summary = (save / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + len(finished) and not any(
        line.startswith("random,") for line in summary)


def test_the_error_line_is_the_innermost_named_error():
    text = ("Failure # 1\nTraceback (most recent call last):\n  File 'x', line 1\n"
            "ray.train.WorkerGroupError: Training failed due to worker errors:\n"
            "  File 'h5py/h5f.pyx', line 106\nFileNotFoundError: [Errno 2] no such file\n")
    assert first_error_line(text) == "FileNotFoundError: [Errno 2] no such file"
    assert first_error_line("something odd\nhappened") == "something odd"
