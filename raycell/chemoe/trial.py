"""A CheMoE grid's Tune trial: a CheMoE TorchTrainer (resumed from its checkpoint if it
has one), or a baseline fitted in the trial itself. Its files end in ``run_dir``.

Apart from the training code (``raycell/chemoe/worker.py``), which only the Ray Train
workers and the baselines import (``raycell/core/trial.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ray import tune

from raycell.chemoe.config import configured
from raycell.core.layout import STATE_FILE
from raycell.core.trial import fit_trainer


def trial(config: dict[str, Any]) -> None:
    out = Path(config["run_dir"])
    out.mkdir(parents=True, exist_ok=True)
    if config["model"] != "chemoe":
        from raycell.chemoe.worker import run_baseline

        tune.report(run_baseline(config, out))
        return
    searched = {k: v for k, v in config.items() if "." in k}  # a search trial's settings
    cfg = configured(config["cfg"], searched)
    config = {**config, "cfg": cfg.model_dump()}
    result = fit_trainer("raycell.chemoe.worker:train_loop", config, cfg.ray,
                         cfg.output.checkpoints_to_keep)
    if result.checkpoint is None:
        raise RuntimeError("the CheMoE run ended without its final checkpoint")
    with result.checkpoint.as_directory() as d:
        for path in Path(d).iterdir():  # the final files; the training state stays in Ray's
            if path.name != STATE_FILE:
                shutil.copy2(path, out / path.name)
