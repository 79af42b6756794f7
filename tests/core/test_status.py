"""``raycell status`` on one folder holding a finished, a failed, a running and then an
interrupted run, each made for real: a grid that ends, a grid whose plates vanish
after they were validated, and a CLI run killed with SIGKILL after its first checkpoint.
Slow: three grids, one of them its own CLI process and Ray cluster."""

import shutil

import pytest

from raycell.core.errors import RunsFailed
from raycell.core.status import first_error_line
from raycell.tahoe.grid import tahoe_grid
from raycell.tahoe.inputs import load_tahoe_inputs
from tests.conftest import (
    kill_after,
    latest_checkpoint_epoch,
    run_main,
    start_cli,
    tahoe_yaml,
    tiny_config,
)


def _status(save) -> dict[str, list[str]]:
    """run name -> the fields of its status line."""
    result = run_main("status", str(save))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{save}: tahoe, ") and lines[1].split()[:2] == ["state", "run"]
    return {line.split()[1]: line.split(maxsplit=4) for line in lines[2:]}


@pytest.mark.ray
@pytest.mark.slow
def test_status_names_finished_failed_running_and_interrupted_runs(tahoe_dir, tmp_path,
                                                                   ray_address):
    save = tmp_path / "out"
    tahoe_grid(cfg := tiny_config(tahoe_dir, save, **{"training.num_epochs": 1}),
               load_tahoe_inputs(cfg), ["streaming"])
    vanishing = shutil.copytree(tahoe_dir, tmp_path / "plates")
    cfg = tiny_config(vanishing, save, **{"training.num_epochs": 1})
    inputs = load_tahoe_inputs(cfg)  # validated, then gone: the worker cannot open them
    for plate in vanishing.glob("*.h5ad"):
        plate.unlink()
    with pytest.raises(RunsFailed, match=r"1 of 1 runs failed; block_shuffling-seed0: "
                                         r"FileNotFoundError: .*raycell status"):
        tahoe_grid(cfg, inputs, ["block_shuffling"])

    # Epochs enough to be killed long before the end (a tiny epoch takes a fraction of a second).
    config = tahoe_yaml(tmp_path / "c.yaml", tahoe_dir, save, 200)
    proc = start_cli("tahoe", "--config", str(config), "--strategy", "random",
                     log=tmp_path / "killed.log")
    seen_running = []

    def checkpointed() -> bool:
        if latest_checkpoint_epoch(save, "random-seed0-") is None:
            return False
        seen_running.append(_status(save)["random-seed0"][0])  # while the grid runs
        return True

    kill_after(proc, checkpointed)
    assert seen_running == ["running"]
    runs = _status(save)
    assert sorted(runs) == ["block_shuffling-seed0", "random-seed0", "streaming-seed0"]
    state, _, key, mlflow_id, detail = runs["streaming-seed0"]
    assert state == "finished" and len(mlflow_id) == 32 and detail == "1 epoch"
    state, _, _, mlflow_id, detail = runs["block_shuffling-seed0"]
    assert state == "failed" and len(mlflow_id) == 32
    assert detail.startswith("FileNotFoundError: ") and "plate1" in detail
    state, _, _, mlflow_id, detail = runs["random-seed0"]
    assert state == "interrupted" and len(mlflow_id) == 32
    assert "resumes after the epoch" in detail and "checkpoint" in detail


def test_the_error_line_is_the_innermost_named_error():
    text = ("Failure # 1\nTraceback (most recent call last):\n  File 'x', line 1\n"
            "ray.train.WorkerGroupError: Training failed due to worker errors:\n"
            "  File 'h5py/h5f.pyx', line 106\nFileNotFoundError: [Errno 2] no such file\n")
    assert first_error_line(text) == "FileNotFoundError: [Errno 2] no such file"
    assert first_error_line("something odd\nhappened") == "something odd"
