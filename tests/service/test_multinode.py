"""A multi-node cluster on one machine, as Ray tests itself: a head and five nodes, each
`ray start` with its own raylet, temp folder, ports and process group (token auth on,
loopback; tests/service/processes.py: ray_head, ray_nodes): three trainer nodes (one of
them a spare) and two CPU-only data nodes (one a spare). Every node has the AWS
variables of the session's S3-compatible server, as the machines of a cluster have
their keys, and the head keeps the runs' drivers (`ray.driver_resources`).

Runs are the Tahoe grid's (tests/conftest.py: the same settings, so the same run keys),
placed by config (`ray.worker_resources: {trainer: 1}`, `ray.read_resources: {data: 1}`),
and each must end with the numbers of its one-node run:

- a 2-rank ray_block_shuffle run of four epochs, checkpoints in S3, loses a data node
  while it reads its second epoch and a trainer node with a rank on it in its third
  (SIGKILL to every process of the node), and fails over to the spare trainer node;
- a `ray job submit` grid continuing that run's folder has its driver killed, and the
  job submitted again finishes it without training again what had finished.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from raycell.core.storage import open_store
from raycell.tahoe.data.labels import TASKS
from raycell.tahoe.outputs.results import TASK_METRICS
from tests.conftest import (
    GRID_EPOCHS,
    joined,
    latest_checkpoint_epoch,
    start_cli,
    status_of,
)
from tests.service.processes import (
    node_dead,
    ray_head,
    ray_nodes,
    submit,
    wait_for,
    wait_job,
)

pytestmark = [pytest.mark.service, pytest.mark.slow]

STRATEGY = "ray_block_shuffle"  # a Ray Data strategy: read tasks to place, DDP ranks to spread
TRAINER, DATA, DRIVERS = {"trainer": 1}, {"data": 2}, {"driver": 4}
METRICS = [f"{t}_{m}" for t in TASKS for m in TASK_METRICS]
EPOCHS = GRID_EPOCHS  # the grid's settings: its one-node runs are the uninterrupted twins
# The head checks its nodes every half second (Ray's default: every 3 s), so a lost node
# is marked dead after five failed checks in ~2.5 s instead of ~15 s.
HEALTH_CHECKS = {"RAY_health_check_period_ms": "500"}
FIGURES: dict[str, float] = {}  # seconds, printed for docs/service.md


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3):
    tmp = tmp_path_factory.mktemp("mn")  # short: socket paths stay under 107 characters
    with ray_head(tmp, num_cpus=2, env=s3.env | HEALTH_CHECKS, resources=DRIVERS) as head, \
            ray_nodes(head, tmp, [TRAINER, TRAINER, TRAINER, DATA, DATA],
                      env=s3.env) as nodes:
        yield head, nodes
    print("multi-node figures (s):", json.dumps({k: round(v, 1) for k, v in FIGURES.items()}))


@pytest.fixture
def s3_client(s3, monkeypatch):
    """This process reads the bucket as the cluster does: through the AWS variables."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return s3


def placed_config(tahoe_grid_run, path: Path, save: Path, **ray) -> Path:
    """The grid's settings (its run keys), placed on the cluster's node types."""
    settings = tahoe_grid_run[0].model_dump()
    settings["output"]["save_dir"] = str(save)
    settings["ray"] |= {"worker_resources": TRAINER, "read_resources": {"data": 1},
                        "driver_resources": {"driver": 1}, **ray}
    path.write_text(yaml.safe_dump(settings))
    return path


def cluster_env(head, s3) -> dict[str, str]:
    return {**joined(head.gcs_address), **head.env, **s3.env}


def twin(tahoe_grid_run, strategies: list[str]) -> pd.DataFrame:
    """The rows of the same runs on the session's one-node cluster."""
    one_node = tahoe_grid_run[3]
    return one_node[one_node["strategy"].isin(strategies)].sort_values("run_key") \
        .reset_index(drop=True)


def key_of(tahoe_grid_run, strategy: str) -> str:
    return str(twin(tahoe_grid_run, [strategy])["run_key"].iloc[0])


def assert_same_rows(save: Path, tahoe_grid_run, strategies: list[str]) -> None:
    rows = pd.read_csv(save / "summary.csv", dtype={"run_key": str}).sort_values("run_key") \
        .reset_index(drop=True)
    expected = twin(tahoe_grid_run, strategies)
    assert list(rows["run_key"]) == list(expected["run_key"].astype(str))  # the same runs, once
    pd.testing.assert_frame_equal(rows[METRICS], expected[METRICS], rtol=0, atol=1e-6)


def placement(save: Path, key: str) -> list[dict]:
    path = save / "runs" / key / "placement.json"
    return json.loads(path.read_text()) if path.is_file() else []


def reads_by_node(head) -> Counter:
    """How many of Ray Data's read tasks (ours: ReadTahoe) each node has run (a task
    cancelled before it was scheduled has no node)."""
    tasks = head.api("/api/v0/tasks?limit=10000&detail=true")["data"]["result"]["result"]
    return Counter(t["node_id"] for t in tasks if "ReadTahoe" in t["name"] and t["node_id"])


def drivers_on_the_head(head) -> bool:
    """Whether the live Ray Train controller (on the node of the Tune trial that started
    it) runs on the head: losing its node would lose the run's driver, which Train does
    not survive, so ray.driver_resources keeps it on a node that stays."""
    api = "/api/v0/{}?limit=1000&detail=true"
    actors = head.api(api.format("actors"))["data"]["result"]["result"]
    nodes = head.api(api.format("nodes"))["data"]["result"]["result"]
    controllers = {a["node_id"] for a in actors
                   if a["class_name"] == "TrainController" and a["state"] == "ALIVE"}
    return controllers == {n["node_id"] for n in nodes if n["is_head_node"]}


def when(ready, proc=None, timeout: float = 300) -> None:
    """Return as soon as ``ready()`` (polled every 50 ms: a kill must land mid-run, and
    an epoch of these runs takes about a second)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc is None or proc.poll() is None, "the run ended before the kill"
        assert time.monotonic() < deadline, "not ready in time"
        time.sleep(0.05)


def mlflow_epochs(save: Path, strategy: str) -> list[int]:
    """The epochs the run's one MLflow run logged (it must be FINISHED)."""
    client = mlflow.MlflowClient(f"sqlite:///{save}/mlflow.db")
    experiment = client.get_experiment_by_name("raycell-tahoe").experiment_id
    (child,) = [r for r in client.search_runs([experiment])
                if r.data.tags.get("strategy") == strategy]
    assert child.info.status == "FINISHED"
    return sorted(m.step for m in client.get_metric_history(child.info.run_id, "drug_macro_f1"))


@pytest.fixture(scope="module")
def nodes_lost(cluster, s3, tahoe_grid_run, tmp_path_factory):
    """The grid's ray_block_shuffle run, placed, checkpoints in S3, `ray.max_failures: 2`:
    a data node killed once the epoch 1 checkpoint is in the bucket (epoch 2 reads), then
    the trainer node of one of its ranks once the epoch 2 checkpoint is (epoch 3 trains).
    Returns the folder, the storage URI, the killed nodes, the log and the reads each node
    ran."""
    head, nodes = cluster
    tmp = tmp_path_factory.mktemp("lost")
    save, storage = tmp / "out", s3.bucket("node-loss") + "/checkpoints"
    config = placed_config(tahoe_grid_run, tmp / "c.yaml", save, max_failures=2,
                           storage_path=storage)
    key = key_of(tahoe_grid_run, STRATEGY)
    started = time.monotonic()
    proc = start_cli("tahoe", "--config", str(config), "--strategy", STRATEGY,
                     log=tmp / "run.log", env=cluster_env(head, s3))
    wait_for(lambda: placement(save, key), 300, "the ranks", proc)
    assert drivers_on_the_head(head)
    ranks = {e["node_id"] for e in placement(save, key)}
    trainer = next(n for n in nodes if n.node_id in ranks)
    data = next(n for n in nodes if n.resources == DATA)
    killed: dict[str, float] = {}
    with pytest.MonkeyPatch.context() as env:  # this process reads the bucket too
        for name, value in s3.env.items():
            env.setenv(name, value)
        for node, epoch in ((data, 1), (trainer, 2)):
            when(lambda e=epoch: (latest_checkpoint_epoch(save, storage=storage) or 0) >= e,
                 proc)
            os.killpg(node.proc.pid, signal.SIGKILL)  # every process of the node: a lost machine
            killed[node.node_id] = time.monotonic()
    since = killed[trainer.node_id]
    wait_for(lambda: node_dead(head, trainer), 60, "the head to mark the node dead")
    FIGURES["trainer node: marked dead"] = time.monotonic() - since
    # Epoch 3 may still end (its checkpoint registered) before Train sees the rank gone:
    # then the ranks start again at epoch 4.
    wait_for(lambda: any(e["first_epoch"] >= 3 for e in placement(save, key)), 300,
             "the ranks to start again", proc)
    FIGURES["trainer node: ranks back"] = time.monotonic() - since
    assert node_dead(head, data)
    assert proc.wait(timeout=600) == 0, (tmp / "run.log").read_text()[-3000:]
    FIGURES["nodes lost: whole run"] = time.monotonic() - started
    return save, storage, (data, trainer), (tmp / "run.log").read_text(), reads_by_node(head)


def last_attempt(entries: list[dict]) -> set[str]:
    last = max(e["attempt"] for e in entries)
    return {e["node_id"] for e in entries if e["attempt"] == last}


def test_the_two_ranks_train_on_two_trainer_nodes_and_after_the_loss_on_two_others(
        cluster, nodes_lost, tahoe_grid_run):
    _, nodes = cluster
    save, _, (_, trainer), _, _ = nodes_lost
    entries = placement(save, key_of(tahoe_grid_run, STRATEGY))
    assert [e["rank"] for e in entries] == [0, 1] * (len(entries) // 2)  # both, each attempt
    trainers = {n.node_id for n in nodes if n.resources == TRAINER}
    first = {e["node_id"] for e in entries if e["attempt"] == 1}
    assert len(first) == 2 and first <= trainers  # one rank on each of two trainer nodes
    assert trainer.node_id in first
    assert last_attempt(entries) == trainers - {trainer.node_id}  # the survivor and the spare


def test_read_tasks_run_only_on_the_data_nodes_and_go_on_when_one_is_lost(cluster, nodes_lost):
    _, nodes = cluster
    (data, _), reads = nodes_lost[2], nodes_lost[4]
    data_nodes = {n.node_id for n in nodes if n.resources == DATA}
    assert reads and set(reads) <= data_nodes
    (kept,) = data_nodes - {data.node_id}
    assert reads[kept] > 0


def test_nodes_lost_mid_run_leave_the_numbers_of_the_uninterrupted_run(
        nodes_lost, s3_client, tahoe_grid_run):
    """Ray Train's restart after the trainer node is lost, from the last checkpoint before
    it, read from object storage: the one-node run's numbers, one row, one MLflow run,
    each epoch logged once."""
    save, storage, _, log, _ = nodes_lost
    resumed = re.findall(rf"resuming at epoch (\d) of {EPOCHS} from the epoch (\d) checkpoint",
                         log)
    # The trainer node's loss: from the epoch 2 checkpoint, or 3 if it was registered first.
    assert resumed and resumed[-1] in {("3", "2"), ("4", "3")}, log[-3000:]
    assert_same_rows(save, tahoe_grid_run, [STRATEGY])
    assert mlflow_epochs(save, STRATEGY) == list(range(1, EPOCHS + 1))
    # The checkpoints are in the bucket, none beside the results.
    store = open_store(storage)
    (train_name,) = store.run_names()
    checkpoints = store.checkpoints(train_name)
    assert checkpoints and not (save / "ray").exists()
    assert all(c.startswith(f"{storage}/{train_name}/checkpoint_") for c in checkpoints)
    (run,) = [fields for name, fields in status_of(save).items() if name != "header"]
    assert run[0] == "finished"


def test_a_job_whose_driver_is_killed_finishes_when_submitted_again(
        cluster, nodes_lost, s3_client, tahoe_grid_run, tmp_path):
    """A `ray job submit` grid on the node-loss run's folder (checkpoints in S3): its
    finished ray_block_shuffle run is skipped, ray_streaming trains; the job's driver
    killed once ray_streaming has a checkpoint, the same job submitted again skips the
    first, resumes the second from S3, and both have the one-node rows."""
    head, _ = cluster
    save, storage = nodes_lost[:2]
    strategies = [STRATEGY, "ray_streaming"]  # ray_streaming: the slowest epochs, ~1.3 s
    config = placed_config(tahoe_grid_run, tmp_path / "c.yaml", save, storage_path=storage)
    entrypoint = ["jobs/tahoe_grid.py", "--config", str(config), "--strategy", *strategies]
    env_vars = {"MLFLOW_TRACKING_URI": f"sqlite:///{save}/mlflow.db"}
    submit(head, "mn-grid", entrypoint, env_vars)
    wait_for(lambda: (head.api("/api/jobs/mn-grid").get("driver_info") or {}).get("pid"), 120,
             "the job's driver")
    driver = int(head.api("/api/jobs/mn-grid")["driver_info"]["pid"])
    when(lambda: latest_checkpoint_epoch(save, "ray_streaming", storage) is not None)
    os.kill(driver, signal.SIGKILL)
    killed = time.monotonic()
    status, logs = wait_job(head, "mn-grid", timeout=120)
    assert status == "FAILED", logs[-3000:]
    assert f"skipped {STRATEGY}-seed0" in logs
    assert list(pd.read_csv(save / "summary.csv")["strategy"]) == [STRATEGY]

    submit(head, "mn-grid-again", entrypoint, env_vars)
    status, logs = wait_job(head, "mn-grid-again")
    FIGURES["job driver killed: resubmitted to done"] = time.monotonic() - killed
    assert status == "SUCCEEDED", logs[-3000:]
    skipped = [line.split()[1] for line in logs.splitlines() if line.startswith("skipped ")]
    assert skipped == [f"{STRATEGY}-seed0"]
    assert re.search(rf"ray_streaming-seed0: resuming at epoch [23] of {EPOCHS}", logs), \
        logs[-3000:]
    assert_same_rows(save, tahoe_grid_run, strategies)
    assert mlflow_epochs(save, "ray_streaming") == list(range(1, EPOCHS + 1))
