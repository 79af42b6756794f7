"""A Tahoe grid's Tune trial: fit (or resume) one TorchTrainer for one (strategy, seed).

Apart from the training code (``raycell/tahoe/worker.py``), which only the Ray Train
workers import (``raycell/core/trial.py``)."""

from __future__ import annotations

from typing import Any

from raycell.core.trial import fit_trainer
from raycell.tahoe.config import configured


def trial(config: dict[str, Any]) -> None:
    searched = {k: v for k, v in config.items() if "." in k}  # a loader search's settings
    cfg = configured(config["cfg"], config["strategy"], searched)
    fit_trainer("raycell.tahoe.worker:train_loop", {**config, "cfg": cfg.model_dump()}, cfg.ray,
                cfg.output.checkpoints_to_keep)
