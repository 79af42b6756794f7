"""The service tests' shared job: the session's reference grid as a `ray job submit` to
the head, scraped by Prometheus while it trains (tests/service/test_jobs.py compares its
rows, tests/service/test_dashboards.py queries its metrics)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REFERENCE_STRATEGIES
from tests.service.processes import REPO, prometheus, submit, wait_job


@dataclass
class TahoeJob:
    status: str
    logs: str
    save: Path
    prometheus: str  # its URL
    started: float  # the job's time window, seconds since the epoch
    ended: float


def tahoe_entrypoint(config: Path, save: Path) -> list[str]:
    return ["jobs/tahoe_grid.py", "--config", str(config), "--strategy", *REFERENCE_STRATEGIES,
            "--save_dir", str(save)]


@pytest.fixture(scope="session")
def tahoe_job(head, tahoe_reference, tmp_path_factory):
    """The session's reference grid (the same config file), as a job on the head."""
    tmp = tmp_path_factory.mktemp("tahoe-job")
    save = tmp / "results"
    with prometheus(head, tmp / "prometheus", REPO / "dashboards" / "prometheus.yml") as url:
        started = time.time()
        submit(head, "tahoe-tiny", tahoe_entrypoint(tahoe_reference[2], save),
               {"MLFLOW_TRACKING_URI": f"sqlite:///{save}/mlflow.db"})
        status, logs = wait_job(head, "tahoe-tiny")
        time.sleep(5)  # the last scrape after the job's last report
        yield TahoeJob(status, logs, save, url, started, time.time())
