"""A results folder, as every grid writes it: the one place for the names in it.

::

    <save_dir>/
      raycell.json          MARKER_FILE: which workload wrote the folder, its results file
                            and where its checkpoints are (ray/ or ray.storage_path)
      .raycell.lock         LOCK_FILE: taken while a table of the folder is rewritten
      running.json          RUNNING_FILE: while a grid runs, its pid, host and run keys
      report.html           REPORT_FILE: the grid's report
      <results file>        one row per finished run key (Tahoe: summary.csv, CheMoE:
                            results.csv), written last: a row means the rest is there
      runs/<key>/           RUNS_DIR: a run's own files
        epochs.csv          EPOCH_LOG: one row per epoch, by rank 0
        placement.json      PLACEMENT_FILE: the node of every rank, per attempt
        error.txt           ERROR_FILE: why its last attempt failed
      ray/<name>-<key>/     TRAIN_DIR: its Ray Train run (or under ray.storage_path,
                            core/storage.py)
        checkpoint_manager_snapshot.json   TRAIN_SNAPSHOT: Ray Train V2's checkpoint record
        checkpoint_*/state.pt              STATE_FILE: the worker skeleton's training state

Names come from run keys, never from the clock, so the same command finds its runs again
(``raycell/core/grid.py``).
"""

from __future__ import annotations

from pathlib import Path

MARKER_FILE = "raycell.json"
RUNNING_FILE = "running.json"
REPORT_FILE = "report.html"
RUNS_DIR = "runs"
EPOCH_LOG = "epochs.csv"
PLACEMENT_FILE = "placement.json"
ERROR_FILE = "error.txt"
TRAIN_DIR = "ray"
TRAIN_SNAPSHOT = "checkpoint_manager_snapshot.json"
STATE_FILE = "state.pt"
# Writers of a folder's tables take this lock (core/rows.py): one hidden file a folder.
# It stays: a lock file removed on release lets a waiter lock a file no longer there.
LOCK_FILE = ".raycell.lock"


def run_dir(save_dir: Path, key: str) -> Path:
    return save_dir / RUNS_DIR / key
