"""What the terminal shows while a grid runs: one progress line per run.

Ray, Tune and MLflow each print their own account of a run (every worker report
twice, Tune's trial tables, migrations of the sqlite store). By default raycell
silences them and prints, from the driver, one line per run: its name, the epoch,
its throughput, the time so far and an estimate of the time left. On a terminal
the line is rewritten in place; piped to a file, each update is a plain line.
``--verbose`` (``RAYCELL_VERBOSE=1``) brings Ray's own output back.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings

from ray import tune

VERBOSE_ENV = "RAYCELL_VERBOSE"
QUIETED = ("ray", "ray.tune", "ray.train", "ray.data", "mlflow", "alembic")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_logs() -> None:
    """Unless verbose: Ray's, MLflow's and alembic's loggers and warnings off the terminal.
    raycell's own errors still end the command on one line."""
    if verbose():
        return
    # Tune's newer console output prints its experiment table even at verbose=0.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # With a tracking server, MLflow prints two links to stdout for every run it ends.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for name in QUIETED:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for module in ("ray", "mlflow", "pydantic"):
        warnings.filterwarnings("ignore", module=module)


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else \
        f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressLines(tune.Callback):
    """A Tune callback on the driver: one line per run, from the results it reports."""

    def __init__(self):
        # No stream kept: Tune pickles its callbacks, and sys.stdout is looked up per line.
        self.started: dict[str, float] = {}  # run name -> when its trial started (driver clock)
        self.first_epoch: dict[str, int] = {}  # the first epoch this invocation trained

    @staticmethod
    def _write(text: str, final: bool) -> None:
        stream = sys.stdout
        if stream.isatty():  # rewrite the current line; a final line stays
            stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            stream.write(text + "\n")
        stream.flush()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.config["run"]["name"]] = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run = trial.config["run"]
        name, total = run["name"], run.get("epochs")
        if result.get("resumed_from"):
            self._write(f"{name}: resuming at epoch {result['resumed_from'] + 1} of {total} "
                        f"from the epoch {result['resumed_from']} checkpoint", final=True)
        epoch = result.get("epoch")
        if epoch is None:
            return
        epoch = int(epoch)
        first = self.first_epoch.setdefault(name, epoch)
        elapsed = time.monotonic() - self.started.get(name, time.monotonic())
        rate = next((f"{v:,.0f} {k.removesuffix('_per_s')}/s" for k, v in result.items()
                     if k.endswith("_per_s") and isinstance(v, int | float)), "")
        left = ""
        if total and epoch < total:
            # An epoch's own time when reported (the start-up is behind us), else the mean.
            per_epoch = (result.get("epoch_seconds", 0) + result.get("eval_seconds", 0)
                         or elapsed / (epoch - first + 1))
            left = f"  ~{clock(per_epoch * (total - epoch))} left"
        self._write(f"{name}  epoch {epoch}/{total or '?'}  {rate}  {clock(elapsed)}{left}",
                    final=False)

    def on_trial_complete(self, iteration, trials, trial, **info):
        name = trial.config["run"]["name"]
        elapsed = time.monotonic() - self.started.get(name, time.monotonic())
        self._write(f"{name}: done in {clock(elapsed)}", final=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        name = trial.config["run"]["name"]
        self._write(f"{name}: failed (its error: raycell status)", final=True)
