"""The session's `raycell tahoe` grid, recorded on a real `mlflow server`
(tests/conftest.py), read back through its REST API, and its UI's compare view rendered
once in headless Chromium (Debian's package)."""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import CLI_EPOCHS, CLI_SEEDS, CLI_STRATEGIES
from tests.service.processes import chromium, http_json

pytestmark = [pytest.mark.service, pytest.mark.slow]

STRATEGIES = CLI_STRATEGIES
EPOCHS = CLI_EPOCHS


@pytest.fixture
def recorded(tahoe_cli_run):
    """The session's `raycell tahoe` run, recorded on its `mlflow server`."""
    done, save, server, tmp = tahoe_cli_run
    assert done.returncode == 0, done.stderr[:3000] + "\n...\n" + done.stderr[-3000:]
    return server, save, tmp


def api(server, path: str, body: dict | None = None):
    return http_json(f"{server.uri}/api/2.0/mlflow/{path}", body)


def runs_of(server) -> tuple[dict, list[dict]]:
    experiment = api(server, "experiments/get-by-name?experiment_name=raycell-tahoe")
    found = api(server, "runs/search", {"experiment_ids": [experiment["experiment"]
                                                           ["experiment_id"]]})["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in found]
    parents = [r for r, t in zip(found, tags, strict=True) if "run_key" not in t]
    assert len(parents) == 1
    return parents[0], [r for r, t in zip(found, tags, strict=True) if "run_key" in t]


def artifacts(server, run_id: str, path: str = "") -> set[str]:
    query = urllib.parse.urlencode({"run_id": run_id, "path": path})
    listed = http_json(f"{server.uri}/api/2.0/mlflow/artifacts/list?{query}")
    return {f["path"] for f in listed.get("files", [])}


def test_parent_and_children_are_on_the_server(recorded):
    server, save, _ = recorded
    parent, children = runs_of(server)
    parent_id = parent["info"]["run_id"]
    assert len(children) == len(STRATEGIES) * len(CLI_SEEDS)
    for child in children:
        tags = {t["key"]: t["value"] for t in child["data"]["tags"]}
        assert tags["mlflow.parentRunId"] == parent_id
        assert child["info"]["status"] == "FINISHED"
    # The CSV names each run's MLflow run on the server.
    summary = pd.read_csv(save / "summary.csv")
    assert sorted(summary["mlflow_run_id"]) == sorted(c["info"]["run_id"] for c in children)


def test_compare_view_has_strategy_and_seed_as_params_and_the_same_metrics(recorded):
    server, _, _ = recorded
    _, children = runs_of(server)
    params = [{p["key"]: p["value"] for p in c["data"]["params"]} for c in children]
    assert sorted((p["strategy"], p["seed"]) for p in params) == sorted(
        (s, str(seed)) for s in STRATEGIES for seed in CLI_SEEDS)
    names = [{m["key"] for m in c["data"]["metrics"]} for c in children]
    assert all(n == names[0] for n in names)  # strategies side by side: one set of metric names
    assert {"drug_macro_f1", "cells_per_s", "train_seconds", "epoch"} <= names[0]


def test_per_epoch_metrics_are_logged_at_the_runs_own_epochs(recorded):
    server, _, _ = recorded
    _, children = runs_of(server)
    for child in children:
        query = urllib.parse.urlencode({"run_id": child["info"]["run_id"],
                                        "metric_key": "drug_macro_f1"})
        history = http_json(f"{server.uri}/api/2.0/mlflow/metrics/get-history?{query}")
        assert sorted(m["step"] for m in history["metrics"]) == list(range(1, EPOCHS + 1))


def test_artifacts_summary_figures_and_checkpoint_list(recorded):
    server, save, tmp = recorded
    parent, children = runs_of(server)
    assert "figures" in artifacts(server, parent["info"]["run_id"])
    figures = artifacts(server, parent["info"]["run_id"], "figures")
    assert {"figures/comparison.png", "figures/time.png"} <= figures
    for child in children:
        run_id = child["info"]["run_id"]
        assert {"summary.json", "checkpoints.json", "epochs.csv"} <= artifacts(server, run_id)
        # Artifacts go through the server, into its artifact store, not beside the results.
        assert child["info"]["artifact_uri"].startswith("mlflow-artifacts:")
    stored = list((tmp / "server" / "artifacts").rglob("checkpoints.json"))
    assert len(stored) == len(children)
    listed = json.loads(stored[0].read_text())
    assert len(listed["checkpoints"]) == EPOCHS  # one per epoch, kept on (shared) disk
    assert all(Path(p).is_dir() and str(save) in p for p in listed["checkpoints"])
    assert not (save / "mlartifacts").exists()


def compare_url(server) -> str:
    parent, children = runs_of(server)
    ids = json.dumps(sorted(c["info"]["run_id"] for c in children))
    experiments = json.dumps([parent["info"]["experiment_id"]])
    query = urllib.parse.urlencode({"runs": ids, "experiments": experiments})
    return f"{server.uri}/#/compare-runs?{query}"


def test_the_ui_compare_view_shows_the_runs_in_a_real_browser(recorded, tmp_path):
    server, _, _ = recorded
    url = compare_url(server)
    dom = chromium(f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url).stdout
    for strategy in STRATEGIES:
        assert all(f"{strategy}-seed{seed}" in dom for seed in CLI_SEEDS)
    assert "drug_macro_f1" in dom
    shot = tmp_path / "mlflow-compare.png"
    # Tall enough for the run details: params and metrics of the runs side by side.
    chromium(f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}", url,
             size="1600,2000")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("RAYCELL_DOCS_OUT"):  # `make docs-service`: the screenshot in docs/
        shutil.copy(shot, Path(os.environ["RAYCELL_DOCS_OUT"]) / shot.name)
