"""One `ray start --head` for the service tests that do not kill it (jobs, dashboards),
stopped with its process group when the session ends."""

from __future__ import annotations

import pytest

from tests.service.processes import group_alive, ray_head


@pytest.fixture(scope="session")
def head(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("head")
    # Ray reports metrics every 10 s by default; once a second here, so that Prometheus
    # sees a short job (tests/service/test_dashboards.py).
    with ray_head(tmp, env={"RAY_metrics_report_interval_ms": "1000"}) as started:
        yield started
    assert started.proc.poll() is not None
    assert group_alive(started.proc.pid) == []  # the whole cluster is gone
