"""dashboards/: a real Prometheus (Debian's package) scrapes a real local Ray cluster through
Ray's service discovery file while a Tahoe job trains (the service tests' shared job,
tests/service/conftest.py); every query of the Grafana dashboard must return data over
the job's time (GPU panels: valid, empty without a GPU). Then the analysis notebook runs
on the job's results folder (nbclient)."""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path

import pytest

from tests.conftest import REFERENCE_EPOCHS, REFERENCE_STRATEGIES, TINY
from tests.service.processes import REPO, http_json

pytestmark = [pytest.mark.service, pytest.mark.slow]

DASHBOARD = REPO / "dashboards" / "raycell.json"
STRATEGIES = REFERENCE_STRATEGIES


def dashboard_queries() -> list[tuple[str, str, bool]]:
    """(panel title, PromQL with Grafana's variables filled as Grafana would, GPU only)."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    out = []
    for panel in panels:
        for target in panel["targets"]:
            expr = target["expr"].replace('"$run"', '".*"').replace("$__rate_interval", "30s")
            out.append((panel["title"], expr, panel["description"].startswith("GPU nodes only")))
    return out


def query_range(url: str, expr: str, start: float, end: float) -> dict:
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": "2"})
    return http_json(f"{url}/api/v1/query_range?{query}")


def test_prometheus_finds_the_cluster_through_rays_discovery_file(tahoe_job):
    url = tahoe_job.prometheus
    targets = http_json(f"{url}/api/v1/targets")["data"]["activeTargets"]
    assert len(targets) == 3  # the node's metrics agent, the autoscaler, the dashboard
    assert all(t["health"] == "up" and t["scrapeUrl"].startswith("http://127.0.0.1:")
               for t in targets), targets


def test_every_dashboard_query_returns_data(tahoe_job):
    url, start, end = tahoe_job.prometheus, tahoe_job.started, tahoe_job.ended
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


def test_raycell_metrics_are_tagged_by_run_and_strategy(tahoe_job):
    url, start, end = tahoe_job.prometheus, tahoe_job.started, tahoe_job.ended
    series = query_range(url, "ray_raycell_train_items_per_s", start, end)["data"]["result"]
    assert {s["metric"]["strategy"] for s in series} == set(STRATEGIES)
    assert {s["metric"]["run"] for s in series} == {f"{s}-seed0" for s in STRATEGIES}
    assert all(float(v) > 0 for s in series for _, v in s["values"])


def test_the_analysis_notebook_runs_on_the_results_folder(tahoe_job, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    save = tahoe_job.save
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
             f"({', '.join(STRATEGIES)}, {REFERENCE_EPOCHS} epochs, "
             f"{2 * TINY.cells_per_plate:,} training cells) on a local "
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
