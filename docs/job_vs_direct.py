"""The Tahoe demo submitted as a job to a local head, against `raycell tahoe` run directly.

    python docs/job_vs_direct.py OUT [--strategy NAME ...]

Starts `ray start --head` on loopback ports with token auth (the service tests' helper),
submits `jobs/tahoe_grid.py --config demo` with `ray job submit --working-dir .`, then
runs `raycell tahoe --config demo` directly on the same plates, and prints the largest
difference of any score between the two summaries (docs/service.md reports it). The
test does the same on tiny data (tests/service/test_jobs.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from raycell.tahoe.config import load_tahoe_config  # noqa: E402
from raycell.tahoe.data.labels import TASKS  # noqa: E402
from raycell.tahoe.data.synthetic import ensure_tahoe  # noqa: E402
from raycell.tahoe.outputs.results import TASK_METRICS  # noqa: E402
from tests.service.processes import ray_head, submit, wait_job  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--strategy", nargs="+")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    which = ["--strategy", *args.strategy] if args.strategy else ["--all"]
    # The demo's plates, made once; both runs read them through --h5ad_dir (same run keys).
    synthetic = load_tahoe_config("demo").data.synthetic
    data = ["--h5ad_dir", str(ensure_tahoe(synthetic.out_dir, synthetic))]
    started = time.perf_counter()
    direct = subprocess.run([sys.executable, "-m", "raycell.cli", "tahoe", "--config", "demo",
                             *which, *data, "--save_dir", str(out / "direct")], text=True,
                            capture_output=True)
    if direct.returncode:
        sys.exit(direct.stderr[-3000:])
    direct_s = time.perf_counter() - started
    with ray_head(out) as head:
        started = time.perf_counter()
        submit(head, "tahoe-demo", ["jobs/tahoe_grid.py", "--config", "demo", *which, *data,
                                    "--save_dir", str(out / "job")],
               {"MLFLOW_TRACKING_URI": f"sqlite:///{out / 'job'}/mlflow.db"})
        status, logs = wait_job(head, "tahoe-demo", timeout=3600)
        job_s = time.perf_counter() - started
    if status != "SUCCEEDED":
        sys.exit(logs[-3000:])
    job = pd.read_csv(out / "job" / "summary.csv").set_index("strategy").sort_index()
    here = pd.read_csv(out / "direct" / "summary.csv").set_index("strategy").sort_index()
    scores = [f"{t}_{m}" for t in TASKS for m in TASK_METRICS]
    worst = (job[scores] - here[scores]).abs().max().max()
    same_keys = list(job["run_key"]) == list(here["run_key"])
    print(f"strategies: {len(job)}; same run keys: {same_keys}; largest score difference "
          f"(job - direct, {len(scores)} scores each): {worst:.2e}")
    print(f"wall time: direct {direct_s:.0f} s, job {job_s:.0f} s (submit to SUCCEEDED)")
    print(job[["train_seconds", "drug_macro_f1"]].join(
        here[["train_seconds", "drug_macro_f1"]], lsuffix="_job", rsuffix="_direct").to_string())


if __name__ == "__main__":
    main()
