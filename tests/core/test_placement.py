"""Placement as configuration: what Train workers and Ray Data read tasks ask of a node,
checked before anything is written; a request no node can meet ends on one line."""

from __future__ import annotations

import time

import pytest

from raycell.core.placement import node_count
from tests.conftest import assert_clean_error, run_main, tahoe_yaml

PLATES = ["--train_plates", "1", "2", "--test_plates", "3"]


@pytest.mark.parametrize(("resources", "culprit"), [
    ({"trainer": 0}, "ray.worker_resources.trainer: Input should be greater than 0"),
    ([1, 2], "ray.worker_resources: Input should be a valid dictionary"),
    ({"trainer": "many"}, "ray.worker_resources.trainer: Input should be a valid number"),
    ({"CPU": 2}, "'CPU' is not a custom resource"),
])
def test_worker_resources_that_are_not_names_to_positive_numbers(tahoe_dir, tmp_path, resources,
                                                                 culprit):
    save = tmp_path / "out"
    config = tahoe_yaml(tmp_path / "c.yaml", tahoe_dir, save, 1,
                        ray={"worker_resources": resources})
    assert_clean_error(run_main("tahoe", "--config", config, "--strategy", "random"), culprit,
                       save)


@pytest.mark.parametrize("key", ["read_resources", "driver_resources"])
def test_read_and_driver_resources_are_checked_alike(tahoe_dir, tmp_path, key):
    save = tmp_path / "out"
    config = tahoe_yaml(tmp_path / "c.yaml", tahoe_dir, save, 1, ray={key: {"data": -1}})
    assert_clean_error(run_main("tahoe", "--config", config, "--strategy", "ray_streaming"),
                       f"ray.{key}.data", save)


@pytest.mark.ray
def test_a_request_no_node_can_meet_ends_on_one_line_within_the_timeout(tahoe_dir, tmp_path,
                                                                       ray_address):
    save = tmp_path / "out"
    config = tahoe_yaml(tmp_path / "c.yaml", tahoe_dir, save, 1,
                        ray={"worker_resources": {"trainer": 1}, "num_workers": 2,
                             "schedule_timeout_s": 2})
    started = time.monotonic()
    result = run_main("tahoe", "--config", config, "--strategy", "random")
    assert time.monotonic() - started < 15
    assert_clean_error(result, "cannot place 2 Ray Train worker(s) of {CPU: 1, trainer: 1}",
                       save)
    assert "its nodes have: {CPU: 8" in result.stderr  # what the cluster has
    assert "trainer" not in result.stderr.split("its nodes have:")[1]


def test_the_node_count_is_the_last_attempts():
    entries = [{"attempt": 1, "rank": 0, "node_id": "a"}, {"attempt": 1, "rank": 1, "node_id": "b"},
               {"attempt": 2, "rank": 0, "node_id": "c"}, {"attempt": 2, "rank": 1, "node_id": "c"}]
    assert node_count(entries) == 1
    assert node_count(entries[:2]) == 2
    assert node_count([]) == 0


def test_placement_settings_are_not_in_the_run_key(tahoe_dir, tmp_path):
    """Where a run trains changes no number: the same run key wherever it is placed."""
    from raycell.core.config import config_key
    from raycell.tahoe.config import load_tahoe_config
    from raycell.tahoe.grid import run_settings

    keys = set()
    for ray in ({}, {"worker_resources": {"trainer": 1}, "read_resources": {"data": 1},
                     "schedule_timeout_s": 5}):
        config = tahoe_yaml(tmp_path / "c.yaml", tahoe_dir, tmp_path / "out", 1, ray=ray)
        keys.add(config_key(run_settings(load_tahoe_config(str(config)), "ray_streaming", 0)))
    assert len(keys) == 1


def test_a_ray_address_where_nothing_answers_is_one_line_within_seconds(tahoe_dir, tmp_path):
    """A fresh interpreter (this one may be connected already): RAY_ADDRESS names a loopback
    port nobody listens on. Ray alone retries for ~20 s and ends in a traceback."""
    import os

    from tests.conftest import run_cli
    from tests.service.processes import free_port

    save = tmp_path / "out"
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    refused = run_cli("tahoe", "--h5ad_dir", str(tahoe_dir), *PLATES, "--strategy", "random",
                      "--save_dir", str(save), env={**os.environ, "RAY_ADDRESS": address})
    assert time.monotonic() - started < 15
    assert_clean_error(refused, f"RAY_ADDRESS={address}: no Ray cluster answers there", save)
