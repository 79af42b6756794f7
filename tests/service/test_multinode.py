"""A multi-node cluster on one machine, as Ray tests itself: a head and three nodes, each
`ray start` with its own raylet, temp folder, ports and process group (token auth on,
loopback), two of them trainer nodes and one a CPU-only data node
(tests/service/processes.py: ray_head, ray_nodes). Every node has the AWS variables of
the session's S3-compatible server, as the machines of a cluster have their keys.

A 2-rank Ray Data run placed by config (`ray.worker_resources: {trainer: 1}`,
`ray.read_resources: {data: 1}`) trains its ranks on the two trainer nodes, reads only on
the data node, and gives the rows of the same run on the session's one-node cluster.
Then nodes are lost, with a spare trainer and a spare data node up: a trainer node killed
mid-run (checkpoints in S3), the data node killed while its reads run, and the driver of
a `ray job submit` grid killed and the job submitted again. Each ends with the one-node
run's numbers."""

from __future__ import annotations

import json
import os
import re
import signal
import time
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
    run_cli,
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
# The head checks its nodes every second (Ray's default: 3 s), so a lost node is marked
# dead after five failed checks in ~5 s instead of ~15 s.
HEALTH_CHECKS = {"RAY_health_check_period_ms": "1000"}
FIGURES: dict[str, float] = {}  # seconds, printed for docs/service.md


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3):
    tmp = tmp_path_factory.mktemp("mn")  # short: socket paths stay under 107 characters
    # The head keeps the runs' drivers (Tune trials: ray.driver_resources {driver: 1}).
    with ray_head(tmp, num_cpus=2, env=s3.env | HEALTH_CHECKS, resources=DRIVERS) as head, \
            ray_nodes(head, tmp, [TRAINER, TRAINER, DATA], env=s3.env) as nodes:
        yield head, nodes
    print("multi-node figures (s):", json.dumps({k: round(v, 1) for k, v in FIGURES.items()}))


@pytest.fixture(scope="module")
def spares(cluster, s3):
    """A spare trainer node and a spare data node, for the tests that lose one."""
    head, nodes = cluster
    with ray_nodes(head, head.temp_dir.parent, [TRAINER, DATA], first=len(nodes),
                   env=s3.env) as more:
        yield more


def placed_config(tahoe_grid_run, tmp: Path, **ray) -> tuple[Path, Path]:
    """The grid's settings (its run keys), placed on the cluster's node types; (config
    file, results folder)."""
    settings = tahoe_grid_run[0].model_dump()
    settings["output"]["save_dir"] = str(tmp / "out")
    settings["ray"] |= {"worker_resources": TRAINER, "read_resources": {"data": 1},
                        "driver_resources": {"driver": 1}, **ray}
    (tmp / "c.yaml").write_text(yaml.safe_dump(settings))
    return tmp / "c.yaml", tmp / "out"


@pytest.fixture
def s3_client(s3, monkeypatch):
    """This process reads the bucket as the cluster does: through the AWS variables."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return s3


def cluster_env(head, s3) -> dict[str, str]:
    return {**joined(head.gcs_address), **head.env, **s3.env}


@pytest.fixture(scope="module")
def placed_run(cluster, s3, tahoe_grid_run, tmp_path_factory):
    """The grid's ray_block_shuffle run again, placed on the multi-node cluster."""
    head, _ = cluster
    config, save = placed_config(tahoe_grid_run, tmp_path_factory.mktemp("placed"))
    started = time.monotonic()
    done = run_cli("tahoe", "--config", str(config), "--strategy", STRATEGY, timeout=600,
                   env=cluster_env(head, s3))
    FIGURES["placed run"] = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    return save


def twin(tahoe_grid_run, strategies: list[str]) -> pd.DataFrame:
    """The rows of the same runs on the session's one-node cluster."""
    one_node = tahoe_grid_run[3]
    return one_node[one_node["strategy"].isin(strategies)].sort_values("run_key") \
        .reset_index(drop=True)


def assert_same_rows(save: Path, tahoe_grid_run, strategies: list[str]) -> pd.DataFrame:
    rows = pd.read_csv(save / "summary.csv", dtype={"run_key": str}).sort_values("run_key") \
        .reset_index(drop=True)
    expected = twin(tahoe_grid_run, strategies)
    assert list(rows["run_key"]) == list(expected["run_key"].astype(str))  # the same runs, once
    pd.testing.assert_frame_equal(rows[METRICS], expected[METRICS], rtol=0, atol=1e-6)
    return rows


def placement(save: Path) -> list[dict]:
    (path,) = (save / "runs").glob("*/placement.json")
    return json.loads(path.read_text())


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


def kill_node(head, node) -> float:
    """SIGKILL to every process of ``node`` (a machine lost); seconds until the head
    marks it dead."""
    killed = time.monotonic()
    os.killpg(node.proc.pid, signal.SIGKILL)
    wait_for(lambda: node_dead(head, node), 60, "the head to mark the node dead")
    return time.monotonic() - killed


def one_mlflow_run_each_epoch_once(save: Path, epochs: int) -> None:
    client = mlflow.MlflowClient(f"sqlite:///{save}/mlflow.db")
    experiment = client.get_experiment_by_name("raycell-tahoe").experiment_id
    (child,) = [r for r in client.search_runs([experiment]) if "run_key" in r.data.tags]
    assert child.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "drug_macro_f1")]
    assert sorted(steps) == list(range(1, epochs + 1))


def test_the_two_ranks_train_on_the_two_trainer_nodes(cluster, placed_run):
    _, nodes = cluster
    summary = pd.read_csv(placed_run / "summary.csv", dtype={"run_key": str})
    entries = json.loads((placed_run / "runs" / summary.at[0, "run_key"] /
                          "placement.json").read_text())
    assert [(e["attempt"], e["rank"]) for e in entries] == [(1, 0), (1, 1)]
    trainers = {n.node_id for n in nodes if n.resources == TRAINER}
    assert {e["node_id"] for e in entries} == trainers  # one rank on each


def test_read_tasks_run_only_on_the_data_node(cluster, placed_run):
    head, nodes = cluster
    tasks = head.api("/api/v0/tasks?limit=10000&detail=true")["data"]["result"]["result"]
    reads = [t for t in tasks if "ReadTahoeH5ad" in t["name"]]
    assert reads, sorted({t["name"] for t in tasks})
    data_node = next(n.node_id for n in nodes if n.resources == DATA)
    assert {t["node_id"] for t in reads} == {data_node}


def test_the_rows_equal_the_same_run_on_one_node(tahoe_grid_run, placed_run):
    assert_same_rows(placed_run, tahoe_grid_run, [STRATEGY])


def test_a_trainer_node_lost_mid_run_fails_over_to_the_spare_from_its_s3_checkpoint(
        cluster, spares, s3_client, tahoe_grid_run, tmp_path):
    """Ray Train's restart (ray.max_failures 1) after a node with a rank on it is lost in
    the second of three epochs: the ranks start again on the trainer nodes left (the
    spare among them) from the epoch 1 checkpoint, which is in object storage."""
    head, nodes = cluster
    storage = s3_client.bucket("node-loss") + "/checkpoints"
    config, save = placed_config(tahoe_grid_run, tmp_path, max_failures=1,
                                 storage_path=storage)
    started = time.monotonic()
    proc = start_cli("tahoe", "--config", str(config), "--strategy", STRATEGY,
                     log=tmp_path / "run.log", env=cluster_env(head, s3_client))
    wait_for(lambda: list((save / "runs").glob("*/placement.json")), 300, "the ranks", proc)
    ranks = {e["node_id"] for e in placement(save)}
    assert drivers_on_the_head(head)
    victim = next(n for n in nodes if n.node_id in ranks)
    when(lambda: latest_checkpoint_epoch(save, storage=storage), proc)
    FIGURES["trainer node: marked dead"] = kill_node(head, victim)
    killed = time.monotonic()
    wait_for(lambda: {e["attempt"] for e in placement(save)} == {1, 2}, 300,
             "the ranks to start again", proc)
    FIGURES["trainer node: ranks back"] = time.monotonic() - killed
    assert proc.wait(timeout=600) == 0, (tmp_path / "run.log").read_text()[-3000:]
    FIGURES["trainer node lost: whole run"] = time.monotonic() - started
    log = (tmp_path / "run.log").read_text()
    assert re.search(rf"resuming at epoch 2 of {EPOCHS} from the epoch 1 checkpoint", log), \
        log[-3000:]

    entries = placement(save)
    again = {e["node_id"] for e in entries if e["attempt"] == 2}
    trainers = {n.node_id for n in [*nodes, *spares] if n.resources == TRAINER}
    assert len(again) == 2 and again <= trainers - {victim.node_id}
    assert spares[0].node_id in again  # the spare took the lost node's place
    assert_same_rows(save, tahoe_grid_run, [STRATEGY])
    one_mlflow_run_each_epoch_once(save, EPOCHS)
    # The checkpoints are in the bucket, none beside the results.
    store = open_store(storage)
    (train_name,) = store.run_names()
    assert store.checkpoints(train_name) and not (save / "ray").exists()
    assert all(c.startswith(f"{storage}/{train_name}/checkpoint_")
               for c in store.checkpoints(train_name))
    (run,) = [fields for name, fields in status_of(save).items() if name != "header"]
    assert run[0] == "finished"


def test_the_data_node_lost_while_it_reads(cluster, spares, s3, tahoe_grid_run, tmp_path):
    """The data node killed once the run has a checkpoint and reads its second epoch: the
    reads go on on the spare data node (Ray retries the read tasks, or Train restarts
    the ranks from the checkpoint), and the numbers do not change."""
    head, nodes = cluster
    config, save = placed_config(tahoe_grid_run, tmp_path, max_failures=1)
    started = time.monotonic()
    proc = start_cli("tahoe", "--config", str(config), "--strategy", STRATEGY,
                     log=tmp_path / "run.log", env=cluster_env(head, s3))
    (data_node,) = [n for n in nodes if n.resources == DATA]
    when(lambda: latest_checkpoint_epoch(save), proc)
    FIGURES["data node: marked dead"] = kill_node(head, data_node)
    assert proc.wait(timeout=600) == 0, (tmp_path / "run.log").read_text()[-3000:]
    FIGURES["data node lost: whole run"] = time.monotonic() - started
    FIGURES["data node lost: failed over"] = float(
        "resuming at epoch" in (tmp_path / "run.log").read_text())
    assert_same_rows(save, tahoe_grid_run, [STRATEGY])
    one_mlflow_run_each_epoch_once(save, EPOCHS)
    tasks = head.api("/api/v0/tasks?limit=10000&detail=true")["data"]["result"]["result"]
    spare_data = next(n.node_id for n in spares if n.resources == DATA)
    assert any("ReadTahoeH5ad" in t["name"] and t["node_id"] == spare_data for t in tasks)


def test_a_job_whose_driver_is_killed_continues_when_submitted_again(
        cluster, s3_client, tahoe_grid_run, tmp_path):
    """A `ray job submit` grid of two runs, checkpoints in S3: its driver killed once the
    first run has its row and the second a checkpoint; the same job submitted again
    skips the first, resumes the second from S3, and ends with the one-node rows."""
    head, _ = cluster
    strategies = ["streaming", STRATEGY]  # one scDataset, one Ray Data; this order
    storage = s3_client.bucket("job") + "/checkpoints"
    config, save = placed_config(tahoe_grid_run, tmp_path, storage_path=storage,
                                 max_concurrent_trials=1)
    entrypoint = ["jobs/tahoe_grid.py", "--config", str(config), "--strategy", *strategies]
    env_vars = {"MLFLOW_TRACKING_URI": f"sqlite:///{save}/mlflow.db"}
    submit(head, "mn-grid", entrypoint, env_vars)

    def second_checkpointed() -> bool:
        return (save / "summary.csv").is_file() and \
            latest_checkpoint_epoch(save, STRATEGY, storage) is not None

    wait_for(lambda: (head.api("/api/jobs/mn-grid").get("driver_info") or {}).get("pid"), 120,
             "the job's driver")
    driver = int(head.api("/api/jobs/mn-grid")["driver_info"]["pid"])
    when(second_checkpointed)
    os.kill(driver, signal.SIGKILL)
    killed = time.monotonic()
    status, logs = wait_job(head, "mn-grid", timeout=120)
    assert status == "FAILED", logs[-3000:]
    before = pd.read_csv(save / "summary.csv")
    assert list(before["strategy"]) == ["streaming"]

    submit(head, "mn-grid-again", entrypoint, env_vars)
    status, logs = wait_job(head, "mn-grid-again")
    FIGURES["job driver killed: resubmitted to done"] = time.monotonic() - killed
    assert status == "SUCCEEDED", logs[-3000:]
    skipped = [line.split()[1] for line in logs.splitlines() if line.startswith("skipped ")]
    assert skipped == ["streaming-seed0"]
    assert re.search(rf"{STRATEGY}-seed0: resuming at epoch 2 of {EPOCHS}", logs), logs[-3000:]
    assert_same_rows(save, tahoe_grid_run, strategies)
