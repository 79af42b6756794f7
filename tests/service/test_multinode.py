"""A multi-node cluster on one machine, as Ray tests itself: a head and three nodes, each
`ray start` with its own raylet, temp folder, ports and process group (token auth on,
loopback), two of them trainer nodes and one a CPU-only data node
(tests/service/processes.py: ray_head, ray_nodes).

A 2-rank Ray Data run placed by config (`ray.worker_resources: {trainer: 1}`,
`ray.read_resources: {data: 1}`) trains its ranks on the two trainer nodes, reads only on
the data node, and gives the rows of the same run on the session's one-node cluster."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from raycell.tahoe.data.labels import TASKS
from raycell.tahoe.outputs.results import TASK_METRICS
from tests.conftest import joined, run_cli
from tests.service.processes import ray_head, ray_nodes

pytestmark = [pytest.mark.service, pytest.mark.slow]

STRATEGY = "ray_block_shuffle"  # a Ray Data strategy: read tasks to place, DDP ranks to spread
TRAINER, DATA = {"trainer": 1}, {"data": 2}
METRICS = [f"{t}_{m}" for t in TASKS for m in TASK_METRICS]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mn")  # short: socket paths stay under 107 characters
    # The head keeps the Tune driver; it has no trainer or data resource.
    with ray_head(tmp, num_cpus=2) as head, \
            ray_nodes(head, tmp, [TRAINER, TRAINER, DATA]) as nodes:
        yield head, nodes


@pytest.fixture(scope="module")
def placed_run(cluster, tahoe_grid_run, tmp_path_factory):
    """The grid's ray_block_shuffle run again, placed on the multi-node cluster."""
    head, _ = cluster
    cfg, _, _, _ = tahoe_grid_run
    tmp = tmp_path_factory.mktemp("placed")
    settings = cfg.model_dump()
    settings["output"]["save_dir"] = str(tmp / "out")
    settings["ray"] |= {"worker_resources": TRAINER, "read_resources": {"data": 1}}
    (tmp / "c.yaml").write_text(yaml.safe_dump(settings))
    done = run_cli("tahoe", "--config", str(tmp / "c.yaml"), "--strategy", STRATEGY,
                   timeout=600, env={**joined(head.gcs_address), **head.env})
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "out"


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
    _, _, _, one_node = tahoe_grid_run
    placed = pd.read_csv(placed_run / "summary.csv", dtype={"run_key": str})
    twin = one_node[one_node["strategy"] == STRATEGY].reset_index(drop=True)
    assert list(placed["run_key"]) == list(twin["run_key"].astype(str))  # the same run
    pd.testing.assert_frame_equal(placed[METRICS], twin[METRICS], rtol=0, atol=1e-6)
