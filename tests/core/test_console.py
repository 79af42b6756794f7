"""The driver's progress lines: what a user reads while a grid runs."""

from types import SimpleNamespace

from raycell.core.console import ProgressLines, clock


def test_a_run_reads_as_epochs_with_throughput_and_time_left(capsys):
    lines = ProgressLines()
    trial = SimpleNamespace(config={"run": {"name": "block_shuffling-seed0", "epochs": 3}})
    lines.on_trial_start(0, [], trial)
    lines.on_trial_result(0, [], trial, {"epoch": 2, "cells_per_s": 41234.4, "resumed_from": 1,
                                         "epoch_seconds": 60.0, "eval_seconds": 15.0})
    lines.on_trial_result(0, [], trial, {"epoch": 3, "cells_per_s": 40000.0, "resumed_from": 0})
    lines.on_trial_complete(0, [], trial)
    out = capsys.readouterr().out.splitlines()  # not a terminal: one plain line each
    assert out[0] == "block_shuffling-seed0: resuming at epoch 2 of 3 from the epoch 1 checkpoint"
    assert out[1].startswith("block_shuffling-seed0  epoch 2/3  41,234 cells/s  0:00")
    assert out[1].endswith("~1:15 left")  # one more epoch of 60 s training + 15 s evaluation
    assert out[2].startswith("block_shuffling-seed0  epoch 3/3  40,000 cells/s")
    assert "left" not in out[2]
    assert out[3].startswith("block_shuffling-seed0: done in 0:0")
    assert len(out) == 4


def test_clock():
    assert [clock(s) for s in (0, 59.6, 61, 3600, 3725)] == ["0:00", "1:00", "1:01", "1:00:00",
                                                             "1:02:05"]
