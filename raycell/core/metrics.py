"""raycell's live training figures as Ray metrics, from every Ray Train worker.

Ray exports them with its own (``ray_`` prefix) on every node's metrics port, where
Prometheus scrapes them beside Ray's Train, Data and node metrics; the Grafana
dashboard in ``dashboards/`` draws them per run and strategy. Updates are throttled
to one every ``INTERVAL`` seconds, so the training loop pays a clock read per batch.
"""

from __future__ import annotations

import math
import time

from ray.util.metrics import Counter, Gauge

INTERVAL = 2.0  # seconds between updates; Ray reports to Prometheus every few seconds anyway
TAGS = ("workload", "run", "strategy", "rank")


class Progress:
    """One worker's throughput, loss and epoch; ``step`` after every training batch. It
    sees every step's loss, so it also ends a run whose loss is no longer finite."""

    def __init__(self, workload: str, run: str, strategy: str, rank: int, unit: str):
        tags = {"workload": workload, "run": run, "strategy": strategy, "rank": str(rank)}
        self.rate = Gauge("raycell_train_items_per_s",
                          f"training {unit} per second of this worker, over the last seconds",
                          tag_keys=TAGS)
        self.items_total = Counter("raycell_train_items", f"training {unit} seen",
                                   tag_keys=TAGS)
        self.loss = Gauge("raycell_train_loss", "mean training loss over the last seconds",
                          tag_keys=TAGS)
        self.epoch_now = Gauge("raycell_epoch", "epoch being trained (from 1)", tag_keys=TAGS)
        for metric in (self.rate, self.items_total, self.loss, self.epoch_now):
            metric.set_default_tags(tags)
        self.epoch_number, self.steps = 1, 0
        self._reset(time.perf_counter())

    def _reset(self, now: float) -> None:
        self.since, self.items, self.loss_sum = now, 0, 0.0

    def epoch(self, epoch: int) -> None:
        """An epoch starts: the window restarts (evaluation time is not training time)."""
        self.epoch_now.set(epoch)
        self.epoch_number, self.steps = epoch, 0
        self._reset(time.perf_counter())

    def step(self, items: int, loss: float) -> None:
        if not math.isfinite(loss):  # every later step would be as bad: stop the run now
            raise FloatingPointError(f"training loss is {loss} in epoch {self.epoch_number}, "
                                     f"after {self.steps} steps of it")
        self.steps += 1
        self.items += items
        self.loss_sum += loss * items
        if time.perf_counter() - self.since >= INTERVAL:
            self.flush()

    def flush(self) -> None:
        """Publish the window so far; the skeleton calls it at the end of every epoch, so
        epochs shorter than ``INTERVAL`` are seen too."""
        now = time.perf_counter()
        if self.items and now > self.since:
            self.rate.set(self.items / (now - self.since))
            self.loss.set(self.loss_sum / self.items)
            self.items_total.inc(self.items)
        self._reset(now)
