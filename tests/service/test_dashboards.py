"""dashboards/: a real Prometheus (Debian's package) scrapes a real local Ray cluster through
Ray's service discovery file while a Tahoe job trains; every query of the Grafana
dashboard must return data over the job's time (GPU panels: valid, empty without a GPU).
Then the analysis notebook runs on the job's results folder (nbclient)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from raycell.tahoe.config import TahoeSpec
from raycell.tahoe.synthetic import write_tahoe
from tests.service.processes import (
    REPO,
    free_port,
    http_json,
    stop_group,
    submit,
    wait_for,
    wait_job,
)

pytestmark = [pytest.mark.service, pytest.mark.slow]

DASHBOARD = REPO / "dashboards" / "raycell.json"
# Enough cells that training lasts long enough to be scraped a few times.
MEDIUM = TahoeSpec(plates=3, cells_per_plate=20_000, genes=200, drugs=8, cell_lines=4, seed=5)
STRATEGIES = ["block_shuffling", "ray_streaming"]


def dashboard_queries() -> list[tuple[str, str, bool]]:
    """(panel title, PromQL with Grafana's variables filled as Grafana would, GPU only)."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    out = []
    for panel in panels:
        for target in panel["targets"]:
            expr = target["expr"].replace('"$run"', '".*"').replace("$__rate_interval", "30s")
            out.append((panel["title"], expr, panel["description"].startswith("GPU nodes only")))
    return out


@pytest.fixture(scope="module")
def scraped(head, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash")
    data = write_tahoe(tmp / "plates", MEDIUM)
    save = tmp / "results"
    discovery = wait_for(lambda: next(head.temp_dir.glob(
        "session_*/prom_metrics_service_discovery.json"), None), 60, "discovery file")
    config = yaml.safe_load((REPO / "dashboards" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    scrape = config["scrape_configs"][0]
    scrape["file_sd_configs"][0]["files"] = [str(discovery)]
    # Ray lists this machine's interface address; a one-machine cluster is
    # scraped over loopback (same ports), so no traffic leaves 127.0.0.1.
    scrape["relabel_configs"] = [{"source_labels": ["__address__"],
                                  "regex": "[^:]+:(\\d+)", "target_label": "__address__",
                                  "replacement": "127.0.0.1:$1"}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (Debian package; make system-packages)"
    log = open(tmp / "prometheus.log", "w")  # noqa: SIM115 (closed below)
    prom = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{url}/-/ready").status == 200, 60,
                 "prometheus", prom)
        started = time.time()
        submit(head, "tahoe-metrics",
               ["jobs/tahoe_grid.py", "--config", "default", "--h5ad_dir", str(data),
                "--train_plates", "1", "2", "--test_plates", "3", "--epochs", "3",
                "--num_workers", "0", "--strategy", *STRATEGIES,
                "--save_dir", str(save)],
               {"MLFLOW_TRACKING_URI": f"sqlite:///{save}/mlflow.db"})
        status, logs = wait_job(head, "tahoe-metrics")
        assert status == "SUCCEEDED", logs[-3000:]
        time.sleep(5)  # the last scrape after the job's last report
        yield url, started, time.time(), save
    finally:
        stop_group(prom)
        log.close()


def query_range(url: str, expr: str, start: float, end: float) -> dict:
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": "2"})
    return http_json(f"{url}/api/v1/query_range?{query}")


def test_prometheus_finds_the_cluster_through_rays_discovery_file(scraped):
    url, *_ = scraped
    targets = http_json(f"{url}/api/v1/targets")["data"]["activeTargets"]
    assert len(targets) == 3  # the node's metrics agent, the autoscaler, the dashboard
    assert all(t["health"] == "up" and t["scrapeUrl"].startswith("http://127.0.0.1:")
               for t in targets), targets


def test_every_dashboard_query_returns_data(scraped):
    url, start, end, _ = scraped
    rows, empty = [], []
    for title, expr, gpu_only in dashboard_queries():
        answer = query_range(url, expr, start, end)
        assert answer["status"] == "success", (title, answer)
        series = answer["data"]["result"]
        points = sum(len(s["values"]) for s in series)
        labels = sorted({json.dumps(s["metric"], sort_keys=True) for s in series})
        rows.append((title, expr, len(series), points, labels[:3]))
        if not series and not gpu_only:
            empty.append(title)
    assert not empty, f"no data for: {empty}"
    if os.environ.get("RAYCELL_DOCS_OUT"):  # `make docs-service`: the table in docs/
        write_query_table(Path(os.environ["RAYCELL_DOCS_OUT"]) / "dashboard-queries.md", rows)


def test_raycell_metrics_are_tagged_by_run_and_strategy(scraped):
    url, start, end, _ = scraped
    series = query_range(url, "ray_raycell_train_items_per_s", start, end)["data"]["result"]
    assert {s["metric"]["strategy"] for s in series} == set(STRATEGIES)
    assert {s["metric"]["run"] for s in series} == {f"{s}-seed0" for s in STRATEGIES}
    assert all(float(v) > 0 for s in series for _, v in s["values"])


def test_the_analysis_notebook_runs_on_the_results_folder(scraped, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    *_, save = scraped
    notebook = nbformat.read(REPO / "dashboards" / "analysis.ipynb", as_version=4)
    monkeypatch.setenv("RAYCELL_RESULTS", str(save))  # the kernel inherits it
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # comparison, training curves, time
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "")
                   for o in outputs)
    assert all(s in text for s in STRATEGIES)


def write_query_table(path: Path, rows) -> None:
    lines = ["# Dashboard queries and the data they returned", "",
             "Written by `make docs-service` (tests/service/test_dashboards.py): a Tahoe job "
             f"({', '.join(STRATEGIES)}, 3 epochs, 40k training cells) on a local "
             "`ray start --head`, scraped every second by Prometheus 2.42 (Debian) through "
             "Ray's service discovery file. Series and points over the job's time window; "
             "GPU panels have no data on this CPU-only machine (not run on a GPU).", "",
             "| panel | query | series | points | labels of the first series |",
             "|---|---|---|---|---|"]
    for title, expr, n, points, labels in rows:
        shown = f"`{labels[0]}`" if labels else "(none)"
        query = expr.replace("|", r"\|")
        lines.append(f"| {title} | `{query}` | {n} | {points} | {shown} |")
    path.write_text("\n".join(lines) + "\n")
