"""cluster.yaml, checked offline: Ray's own validation (as Ray's tests do it: prepare, then
validate against ray-schema.json), then what the schema cannot see."""

from __future__ import annotations

import copy
import re
import tomllib

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.service.processes import REPO

GPU_FAMILIES = ("g4dn", "g5", "g6", "g6e", "p3", "p4d", "p4de", "p5")


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def validated(config: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_ray_accepts_the_cluster_config(raw):
    prepared = validated(raw)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("where, typo", [
    ((), "max_worker"),                      # top level
    (("available_node_types", "gpu_worker"), "min_worker"),
    (("docker",), "imgae"),
])
def test_a_typo_in_a_key_is_refused(raw, where, typo):
    broken = copy.deepcopy(raw)
    node = broken
    for part in where:
        node = node[part]
    node[typo] = 1
    with pytest.raises(jsonschema.ValidationError, match=typo):
        validated(broken)


def _gpu_types(config: dict) -> dict[str, dict]:
    return {name: t for name, t in config["available_node_types"].items()
            if name != config["head_node_type"] and "GPU" in t["resources"]}


def test_the_worker_type_asks_for_gpus_and_scales_from_zero(raw):
    workers = _gpu_types(raw)
    assert workers, "no worker node type"
    for name, node in workers.items():
        assert node["resources"].get("GPU", 0) >= 1, name
        family = node["node_config"]["InstanceType"].split(".")[0]
        assert family in GPU_FAMILIES, f"{name}: {family} has no GPU"
        assert node["min_workers"] == 0 and 1 <= node["max_workers"] <= raw["max_workers"]
    head = raw["available_node_types"][raw["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert head["node_config"]["InstanceType"].split(".")[0] not in GPU_FAMILIES


def test_the_placement_keys_name_resources_of_one_node_type_each(raw):
    """ray.worker_resources {trainer: 1} lands on the GPU type, ray.read_resources {data: 1}
    on the CPU-only data type, ray.driver_resources {driver: 1} on the head, and each
    worker type can scale from zero within max_workers."""
    types = raw["available_node_types"]
    holding = {resource: [name for name, t in types.items() if resource in t["resources"]]
               for resource in ("trainer", "data", "driver")}
    assert holding == {"trainer": ["gpu_worker"], "data": ["data_worker"],
                       "driver": [raw["head_node_type"]]}
    data = types["data_worker"]
    assert "GPU" not in data["resources"]
    assert data["node_config"]["InstanceType"].split(".")[0] not in GPU_FAMILIES
    assert sum(t.get("max_workers", 0) for n, t in types.items()
               if n != raw["head_node_type"]) <= raw["max_workers"]


def test_every_ray_start_sets_the_auth_mode_and_exports_metrics(raw):
    starts = [c for c in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"]
              if "ray start" in c]
    assert len(starts) == 2
    for command in starts:
        assert "RAY_AUTH_MODE=token ray start" in command
        assert "--metrics-export-port=" in command
    # Nodes get the token the clients use (the launcher does not distribute it).
    assert any(dst.endswith(".ray/auth_token") for dst in raw["file_mounts"])


def test_the_head_runs_the_mlflow_server_with_its_store_on_shared_storage(raw):
    servers = [c for c in raw["head_start_ray_commands"] if "mlflow server" in c]
    assert len(servers) == 1 and not any("mlflow" in c for c in raw["worker_start_ray_commands"])
    server = servers[0]
    assert "--backend-store-uri sqlite:////shared/" in server
    assert "--artifacts-destination /shared/" in server
    runtime_env = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())
    port = re.search(r"--port (\d+)", server).group(1)
    assert runtime_env["env_vars"]["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{port}"


def test_results_and_ray_storage_are_on_the_shared_mount(raw):
    assert "-v /shared:/shared" in raw["docker"]["run_options"]
    assert any("/shared" in c and "mount" in c for c in raw["initialization_commands"])
    runtime_env = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())
    # Relative save_dirs go under the job root; Ray Train's storage_path is <save_dir>/ray.
    assert runtime_env["env_vars"]["RAYCELL_JOB_ROOT"].startswith("/shared/")


def test_the_image_and_setup_install_pyprojects_versions(raw):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    ray_pin = next(d for d in project["dependencies"] if d.startswith("ray["))
    ray_version = ray_pin.split("==")[1]
    python = re.search(r">=(\d+)\.(\d+)", project["requires-python"]).groups()
    image = raw["docker"]["image"]
    assert image == f"rayproject/ray:{ray_version}-py{''.join(python)}-gpu"
    torch_pin = re.search(r"torch==[\d.]+", (REPO / "Makefile").read_text()).group(0)
    setup = raw["setup_commands"]
    assert any(f"pip install -q {torch_pin}" == c for c in setup)
    # The synced checkout installed as a package: pyproject's pins decide the rest.
    mounted = next(dst for dst, src in raw["file_mounts"].items() if src == ".")
    assert f"pip install -q -e {mounted}" in setup
