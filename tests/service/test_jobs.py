"""`ray job submit` of raycell's jobs/ entry points to a real local head.

The head is `ray start --head` on loopback ports with token auth, in its own temp dir
and process group, shared by the session (tests/conftest.py), which stops that
cluster, and only that one, at the end. Jobs go through the `ray job` CLI with a
working_dir or the shipped runtime_env.yaml, as a user submits them.
"""

from __future__ import annotations

import re
import time

import mlflow
import pandas as pd
import pytest
import yaml

from raycell.tahoe.data.labels import TASKS
from raycell.tahoe.outputs.results import TASK_METRICS
from tests.conftest import REFERENCE_EPOCHS, REFERENCE_STRATEGIES
from tests.service.processes import REPO, submit, wait_job

pytestmark = [pytest.mark.service, pytest.mark.slow]

# Every score of the summary: the job and the in-process run must agree on all of them.
METRICS = [f"{t}_{m}" for t in TASKS for m in TASK_METRICS]


def test_a_tahoe_job_succeeds_and_writes_its_rows_and_mlflow_runs(tahoe_job):
    status, logs, save = tahoe_job.status, tahoe_job.logs, tahoe_job.save
    assert status == "SUCCEEDED", logs[-3000:]
    summary = pd.read_csv(save / "summary.csv")
    assert sorted(summary["run_name"]) == sorted(f"{s}-seed0" for s in REFERENCE_STRATEGIES)
    assert (summary["epochs"] == REFERENCE_EPOCHS).all()
    assert "macro F1 per task" in logs  # the job's log ends with raycell's table
    assert "ray: joined the cluster at" in logs  # the head's, not one of its own
    client = mlflow.MlflowClient(f"sqlite:///{save}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("raycell-tahoe").experiment_id])
    children = [r for r in runs if "run_key" in r.data.tags]
    assert sorted(r.info.run_id for r in children) == sorted(summary["mlflow_run_id"])
    assert all(r.info.status == "FINISHED" for r in runs) and len(runs) == 3


def test_the_job_gives_the_rows_of_the_same_grid_run_on_another_cluster(tahoe_job,
                                                                        tahoe_reference):
    """The head's job and the session's in-process run of the same config: another
    cluster, another driver, the same numbers (Ray Data's block order included)."""
    job = pd.read_csv(tahoe_job.save / "summary.csv").set_index("strategy").sort_index()
    here = tahoe_reference[0].set_index("strategy").sort_index()
    assert list(job["run_key"]) == list(here["run_key"])  # the same settings
    for column in METRICS:
        assert job[column].to_numpy() == pytest.approx(here[column].to_numpy(), abs=1e-6)


def test_a_chemoe_job_under_the_job_root_scores_its_baseline_beside_it(head, pdgrapher_dir,
                                                                       tmp_path):
    """The shipped jobs/runtime_env.yaml (working_dir "."), with this test's root and no
    MLflow server: the config's relative save_dir goes under the root, and the default
    MLflow store beside the results."""
    runtime_env = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())
    assert set(runtime_env["env_vars"]) >= {"RAYCELL_JOB_ROOT", "MLFLOW_TRACKING_URI"}
    root = tmp_path / "shared"
    runtime_env["env_vars"]["RAYCELL_JOB_ROOT"] = str(root)
    del runtime_env["env_vars"]["MLFLOW_TRACKING_URI"]
    (tmp_path / "runtime_env.yaml").write_text(yaml.safe_dump(runtime_env))
    submit(head, "chemoe-tiny",
           ["jobs/chemoe_grid.py", "--data", str(pdgrapher_dir), "--cell_line", "A549",
            "--fold", "0", "--model", "chemoe", "mean_shift", "--epochs", "2", "--eval_every",
            "1", "--embed_dim", "8", "--batch_size", "16"],
           {}, runtime_env=tmp_path / "runtime_env.yaml")
    status, logs = wait_job(head, "chemoe-tiny")
    assert status == "SUCCEEDED", logs[-3000:]
    save = root / "results" / "chemoe"  # the default config's save_dir, under the root
    rows = pd.read_csv(save / "results.csv")
    assert sorted(rows["model"]) == ["chemoe", "mean_shift"]
    assert rows["r2_top20"].between(0, 1).all()
    client = mlflow.MlflowClient(f"sqlite:///{save}/mlflow.db")
    experiment = client.get_experiment_by_name("raycell-chemoe").experiment_id
    assert len(client.search_runs([experiment], "tags.run_key != ''")) == 2


BAD_JOBS = [
    (["--config", "nonexistent"], "config 'nonexistent' is neither a file"),
    (["--save_dir", "results/relative"], "--save_dir results/relative is relative"),
    (["--h5ad_dir", "/nonexistent/tahoe"], "--h5ad_dir /nonexistent/tahoe does not exist"),
    (["--config", "demo"], "output.save_dir results/tahoe-demo is relative and "
                           "RAYCELL_JOB_ROOT is not set"),
]


def test_a_bad_job_fails_at_once_with_one_clear_line(head):
    """Each bad submission, all submitted at once (the head runs them side by side)."""
    started = time.monotonic()
    ids = ["bad-" + re.sub(r"\W+", "-", " ".join(args)).strip("-") for args, _ in BAD_JOBS]
    for job_id, (args, _) in zip(ids, BAD_JOBS, strict=True):
        submit(head, job_id, ["jobs/tahoe_grid.py", *args], {})
    for job_id, (args, culprit) in zip(ids, BAD_JOBS, strict=True):
        status, logs = wait_job(head, job_id, timeout=120)
        assert status == "FAILED", (args, logs)
        errors = [line for line in logs.splitlines() if line.startswith("raycell: error:")]
        assert len(errors) == 1 and culprit in errors[0], logs
        assert "Traceback" not in logs
    assert time.monotonic() - started < 60  # before Ray, data or MLflow start
