"""What a Tune trial of a grid runs: one TorchTrainer fit, named by its run key.

Light on purpose: every trial actor imports this module and its slice's ``trial``
(in the slice's ``worker.py``), not the grid runner with MLflow, plots and reports
(about 1.6 s of imports a trial on 2 cores).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.train import CheckpointConfig, FailureConfig, RunConfig
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from raycell.core import runtime
from raycell.core.config import RaySettings


def fit_trainer(train_loop: Callable[[dict], None], config: dict[str, Any],
                settings: RaySettings, checkpoints_to_keep: int | None = None):
    """Fit a TorchTrainer for one run, named by its run key, so that fitting it again
    after an interruption resumes it from its last checkpoint."""
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=config,
        scaling_config=runtime.scaling_config(settings),
        run_config=RunConfig(
            name=config["train_name"],
            storage_path=config["storage"],
            callbacks=[TuneReportCallback()],
            checkpoint_config=CheckpointConfig(num_to_keep=checkpoints_to_keep),
            failure_config=FailureConfig(max_failures=settings.max_failures),
        ),
    )
    return trainer.fit()


def flat(trial: Callable[[dict], None]) -> Callable[[dict], None]:
    """Tune nests the grid entry under 'run'; the trial sees it flat."""

    def flat_trial(config: dict[str, Any]) -> None:
        trial({**{k: v for k, v in config.items() if k != "run"}, **config["run"]})

    flat_trial.__name__ = getattr(trial, "__name__", "trial")
    return flat_trial
