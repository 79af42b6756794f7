"""What a results folder says about its runs: ``raycell status DIR``.

The grid runner (``core/grid.py``) lays a folder out so that every state can be read
from files alone, also while a grid is writing them (each is written whole):

- finished: the run key has a row in the results file;
- stopped: a search's trial that ASHA stopped early (its row says so, ``status``);
- failed: its folder holds ``error.txt`` from its last attempt;
- running: a live grid on this host lists it in ``running.json``;
- interrupted: anything else with an epoch log or a Ray Train checkpoint; rerunning
  the command resumes it from that checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from raycell.core.errors import RaycellError
from raycell.core.layout import (
    EPOCH_LOG,
    ERROR_FILE,
    MARKER_FILE,
    RUNNING_FILE,
    RUNS_DIR,
    run_dir,
)
from raycell.core.storage import CheckpointStore, check_reachable, checkpoint_store

KEY = re.compile(r"^(?P<name>.+)-(?P<key>[0-9a-f]{12})$")  # a Ray Train folder: name-key


@dataclass
class RunStatus:
    key: str
    name: str
    state: str  # finished | stopped | running | interrupted | failed
    detail: str = ""  # the last epoch, or the first line of the error
    mlflow_run_id: str = ""


def first_error_line(text: str) -> str:
    """The line that names the error ("FileNotFoundError: ...") of a Ray traceback."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line)]
    return (named[-1] if named else lines[0] if lines else "no message")[:200]


def read_marker(save_dir: Path) -> dict[str, str | None]:
    marker = save_dir / MARKER_FILE
    if not marker.is_file():
        raise RaycellError(f"{save_dir} holds no raycell grid ({MARKER_FILE} is missing)")
    try:
        found = json.loads(marker.read_text())
        return {"workload": found["workload"], "results_file": found["results_file"],
                "checkpoints": found.get("checkpoints")}  # None: an older folder, ray/
    except (ValueError, KeyError, TypeError):
        raise RaycellError(f"{marker} is corrupt or from an older raycell: rerun the grid "
                           "once to rewrite it") from None


def _running_keys(save_dir: Path) -> set[str]:
    try:
        running = json.loads((save_dir / RUNNING_FILE).read_text())
    except (OSError, ValueError):
        return set()
    if running.get("host") != socket.gethostname():
        return set(running.get("keys", []))  # another host's grid: trusted as running
    try:
        os.kill(int(running["pid"]), 0)
    except (ProcessLookupError, KeyError, ValueError, TypeError):
        return set()  # its grid was killed: the runs are interrupted
    except PermissionError:
        pass  # alive, someone else's process
    return set(running.get("keys", []))


def _last_epoch(save_dir: Path, key: str, store: CheckpointStore, train_name: str | None
                ) -> str:
    import pandas as pd

    log = run_dir(save_dir, key) / EPOCH_LOG
    parts = []
    if log.is_file():
        try:
            parts.append(f"epoch {int(pd.read_csv(log)['epoch'].max())} logged")
        except (ValueError, KeyError, pd.errors.EmptyDataError):
            pass  # being written
    try:
        latest = store.latest_checkpoint(train_name) if train_name else None
    except (ValueError, KeyError, TypeError):
        latest = None
    if latest:
        parts.append(f"resumes after the epoch {int(latest['metrics']['epoch'])} checkpoint")
    return ", ".join(parts) or "no epoch yet"


def grid_status(save_dir: str | Path) -> tuple[str, list[RunStatus]]:
    """(workload, every run key the folder knows, finished first)."""
    import pandas as pd

    save_dir = Path(save_dir).expanduser().resolve()
    if not save_dir.is_dir():
        raise RaycellError(f"{save_dir} is not a folder")
    marker = read_marker(save_dir)
    runs: dict[str, RunStatus] = {}
    results = save_dir / marker["results_file"]
    if results.is_file():
        for row in pd.read_csv(results, dtype={"run_key": str}).to_dict("records"):
            epochs = row.get("epochs")
            done = f"{int(epochs)} epoch{'s' * (epochs != 1)}" if pd.notna(epochs) else ""
            state = "finished"
            if row.get("status") == "stopped":  # a search's trial ASHA stopped early
                state, done = "stopped", f"{done} of {int(row['max_epochs'])} (ASHA)"
            runs[row["run_key"]] = RunStatus(row["run_key"], row.get("run_name", ""), state,
                                             done, str(row.get("mlflow_run_id", "")))
    store = checkpoint_store(save_dir, marker["checkpoints"])
    check_reachable(store)
    train_names = {}
    for name in store.run_names():
        if match := KEY.match(name):
            train_names[match["key"]] = name
            if match["key"] in runs:
                runs[match["key"]].name = runs[match["key"]].name or match["name"]
            else:
                runs[match["key"]] = RunStatus(match["key"], match["name"], "interrupted")
    for folder in sorted((save_dir / RUNS_DIR).glob("*/")):
        runs.setdefault(folder.name, RunStatus(folder.name, "", "interrupted"))
    running = _running_keys(save_dir)
    for run in runs.values():
        if run.state in ("finished", "stopped"):
            continue
        error = run_dir(save_dir, run.key) / ERROR_FILE
        if error.is_file() and run.key not in running:
            run.state, run.detail = "failed", first_error_line(error.read_text())
        else:
            run.state = "running" if run.key in running else "interrupted"
            run.detail = _last_epoch(save_dir, run.key, store, train_names.get(run.key))
    _fill_mlflow_ids(save_dir, [r for r in runs.values() if not r.mlflow_run_id])
    order = {"finished": 0, "stopped": 1, "running": 2, "interrupted": 3, "failed": 4}
    return marker["workload"], sorted(runs.values(), key=lambda r: (order[r.state], r.name))


def _fill_mlflow_ids(save_dir: Path, runs: list[RunStatus]) -> None:
    """Unfinished runs' MLflow runs, found by their run_key tag (read only: a local store
    that does not exist yet is not created)."""
    store = os.environ.get("MLFLOW_TRACKING_URI") or (save_dir / "mlflow.db").is_file()
    if not runs or not store:
        return
    from mlflow.tracking import MlflowClient

    from raycell.core.runtime import tracking_uri
    from raycell.core.tracking import runs_with_keys

    client = MlflowClient(tracking_uri(save_dir))
    for run in runs:
        found = runs_with_keys(client, [run.key])
        if found:
            run.mlflow_run_id = found[0].info.run_id


def format_status(save_dir: Path, workload: str, runs: list[RunStatus]) -> str:
    counts = {s: sum(r.state == s for r in runs)
              for s in ("finished", "stopped", "running", "interrupted", "failed")}
    head = f"{save_dir}: {workload}, {len(runs)} runs: " + ", ".join(
        f"{n} {state}" for state, n in counts.items() if n)
    width = max([len(r.name) for r in runs] + [4])
    lines = [head, f"  {'state':<12}{'run':<{width + 2}}{'run key':<14}{'mlflow run':<34}detail"]
    for r in runs:
        lines.append(f"  {r.state:<12}{r.name or '?':<{width + 2}}{r.key:<14}"
                     f"{r.mlflow_run_id or '-':<34}{r.detail or '-'}")
    return "\n".join(lines)
