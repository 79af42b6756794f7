"""A Tahoe grid's Tune trial: fit (or resume) one TorchTrainer for one (strategy, seed).

Apart from the training code (``raycell/tahoe/worker.py``), which only the Ray Train
workers import (``raycell/core/trial.py``)."""

from __future__ import annotations

from typing import Any

from raycell.core.trial import fit_trainer
from raycell.tahoe.config import LOADER_KEYS, configured


def trial(config: dict[str, Any]) -> None:
    # A loader search's run: its loader settings by short name, other keys dotted.
    searched = {k: v for k, v in config.items() if "." in k} | {
        key: config[name] for name, key in LOADER_KEYS.items() if name in config}
    cfg = configured(config["cfg"], config["strategy"], searched)
    fit_trainer("raycell.tahoe.worker:train_loop", {**config, "cfg": cfg.model_dump()}, cfg.ray,
                cfg.output.checkpoints_to_keep)
