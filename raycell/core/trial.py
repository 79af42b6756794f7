"""What a Tune trial of a grid runs: one TorchTrainer fit, named by its run key.

Light on purpose: every trial actor imports this module and its slice's ``trial``
(the slice's ``trial.py``), and every TrainController this module alone, not the
grid runner with MLflow, plots and reports nor the training code with its data
libraries (about 1 CPU-s of imports saved in each of those processes on 2 cores).
The training function is handed over by name for that reason: Ray pickles a function
by reference, so its module would be imported wherever the trainer goes.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

import ray
from ray import tune
from ray.train import CheckpointConfig, FailureConfig, RunConfig
from ray.train.torch import TorchTrainer
from ray.train.v2.api.callback import UserCallback
from ray.util.queue import Empty, Queue
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raycell.core import runtime
from raycell.core.config import RaySettings


class _ForwardReports(UserCallback):
    """In the TrainController: rank 0's metrics of every report, onto a queue the trial
    reads (as Tune's TuneReportCallback does, without its checkpoint path)."""

    def __init__(self, queue: Queue):
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint) -> None:
        self.queue.put(dict(metrics[0]))


def _train_loop(config: dict[str, Any]) -> None:
    """Each Ray Train worker's function: the one ``config["train_loop"]`` names."""
    module, name = config["train_loop"].split(":")
    getattr(importlib.import_module(module), name)(config)


def fit_trainer(train_loop: str, config: dict[str, Any], settings: RaySettings,
                checkpoints_to_keep: int | None = None):
    """Fit a TorchTrainer for one run, named by its run key, so that fitting it again
    after an interruption resumes it from its last checkpoint. ``train_loop`` names
    the workers' function, as ``"package.module:function"``.

    The trainer fits in a thread while this one hands its reports to Tune. Tune's own
    bridge (TuneReportCallback) hands them over from the trial actor's main thread, and
    that thread blocks for ever when the run's last report and the end of the training
    function race (Ray 2.60: a grid trial hung after its last epoch, docs/facts.md)."""
    # The queue lives on this trial's node, as Train pins its controller there: placed
    # anywhere else (0 CPUs fit on any node), losing that node would fail the run
    # (docs/service.md, nodes lost).
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    reports = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={**config, "train_loop": train_loop},
        scaling_config=runtime.scaling_config(settings),
        run_config=RunConfig(
            name=config["train_name"],
            storage_path=config["storage"],
            callbacks=[_ForwardReports(reports)],
            checkpoint_config=CheckpointConfig(num_to_keep=checkpoints_to_keep),
            failure_config=FailureConfig(max_failures=settings.max_failures),
        ),
    )
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as error:  # raised again in the trial's thread
            outcome["error"] = error

    fitting = threading.Thread(target=fit, name="fit", daemon=True)
    fitting.start()
    while True:
        alive = fitting.is_alive()
        try:
            tune.report(reports.get(timeout=0.2))
            continue
        except Empty:
            if not alive:  # fit() had ended before the queue was found empty: all reported
                break
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def flat(trial: Callable[[dict], None]) -> Callable[[dict], None]:
    """Tune nests the grid entry under 'run'; the trial sees it flat."""

    def flat_trial(config: dict[str, Any]) -> None:
        trial({**{k: v for k, v in config.items() if k != "run"}, **config["run"]})

    flat_trial.__name__ = getattr(trial, "__name__", "trial")
    return flat_trial
