"""A local cluster beside another Ray on the same host: its processes still reach their own
cluster through Ray's State API, which Ray Train's placement group cleaner asks whether a
stopped run's controller lives (without it, a run ASHA stopped keeps its CPUs for ever)."""

import os

import pytest
import ray

pytestmark = pytest.mark.ray


def test_the_state_api_in_a_worker_finds_its_own_cluster_beside_another(ray_address, head):
    @ray.remote(num_cpus=0)
    def actors_seen_from_a_worker() -> int:
        from ray.util.state import list_actors

        # with no address: found as the cleaner finds it ("multiple active Ray instances")
        return len(list_actors(filters=[("state", "=", "ALIVE")]))

    @ray.remote(num_cpus=0)
    class Marker:
        def ready(self) -> bool:
            return True

    marker = Marker.remote()
    ray.get(marker.ready.remote())
    assert ray.get(actors_seen_from_a_worker.remote()) >= 1  # this cluster's, not the head's
    assert "RAY_API_SERVER_ADDRESS" not in os.environ  # the driver's own is left alone
