"""Every command the README and docs/ show, run through the real CLI (a fresh interpreter)
on the smallest input: a documented command that crashes fails a test. Commands that
other modules already run end to end are listed with the test that does.

Runs that train join the session's Ray cluster (`raycell tahoe` recording on an MLflow
server: tests/conftest.py); runs on a local cluster of their own, beside a stale or a
running cluster on the host, are in tests/core/test_resume.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import CLI_EPOCHS, CLI_SEEDS, CLI_STRATEGIES, joined, run_cli, run_main

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "chemoe" / "fixtures" / "pdgrapher"

# Documented commands -> where a test runs them (here unless named).
ELSEWHERE = {
    "raycell bench loaders": "tests/tahoe/bench/test_loaders.py",
    "raycell bench searchers": "tests/chemoe/test_bench_searchers.py",
    "raycell tune chemoe": "tests/chemoe/test_search.py",
    "raycell tune loaders": "tests/tahoe/test_search.py",
    "jobs/tahoe_grid.py": "tests/service/test_jobs.py",
    "jobs/chemoe_grid.py": "tests/service/test_jobs.py",
}
HERE = {"raycell tahoe", "raycell chemoe", "raycell data tahoe", "raycell data convert",
        "raycell data pdgrapher",
        "raycell data import-pdgrapher", "raycell bench train", "raycell bench chemoe",
        "raycell report", "raycell status"}


def _documented() -> set[str]:
    """``raycell <command> [<kind>]`` and ``jobs/*.py`` as the README and docs/ write them."""
    found = set()
    for doc in [REPO / "README.md", REPO / "dashboards" / "README.md",
                *(REPO / "docs").glob("*.md")]:
        text = doc.read_text()
        for command, kind in re.findall(r"\braycell (tahoe|chemoe|data|bench|tune|report|"
                                        r"status)(?: (tahoe|convert|pdgrapher|import-pdgrapher|"
                                        r"loaders|train|chemoe|searchers)\b)?", text):
            found.add(f"raycell {command}" + (f" {kind}" if command in ("data", "bench", "tune")
                                              and kind else ""))
        found |= set(re.findall(r"\bjobs/\w+\.py", text))
    return found


def test_every_documented_command_has_a_smoke_test():
    documented = _documented()
    assert not {"raycell data", "raycell bench", "raycell tune"} & documented
    assert documented <= HERE | set(ELSEWHERE), documented - HERE - set(ELSEWHERE)
    assert {f"jobs/{p.name}" for p in (REPO / "jobs").glob("*.py")} <= set(ELSEWHERE)


def test_help_answers_for_every_command():
    done = run_cli("--help")
    assert done.returncode == 0 and "tahoe" in done.stdout and not done.stderr
    for command in (["tahoe"], ["chemoe"], ["data", "tahoe"], ["data", "convert"],
                    ["data", "pdgrapher"],
                    ["data", "import-pdgrapher"], ["bench", "loaders"], ["bench", "train"],
                    ["bench", "chemoe"], ["bench", "searchers"], ["tune", "chemoe"],
                    ["tune", "loaders"], ["report"], ["status"]):
        with pytest.raises(SystemExit) as exited:
            run_main(*command, "--help")
        assert exited.value.code == 0, command


def imported_by(*args: str) -> set[str]:
    """The modules ``raycell ARGS`` imports, as ``python -X importtime`` lists them."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "raycell.cli", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:") and not line.endswith("package")}


@pytest.mark.ray  # its folders come from runs on the session's cluster
def test_help_status_and_report_import_neither_torch_nor_ray(tahoe_run, chemoe_run, tmp_path):
    heavy = {"torch", "ray", "scdataset", "anndata", "h5py", "mlflow"}
    assert not heavy & imported_by("--help")
    assert not heavy & imported_by("status", str(tahoe_run[1]))
    assert not heavy & imported_by("status", str(chemoe_run[1]))
    report = imported_by("report", str(tahoe_run[1]), str(chemoe_run[1]),
                         "--out", str(tmp_path / "both.html"))
    assert not heavy & report
    assert "matplotlib" in report  # the check sees what a command imports


@pytest.fixture
def tahoe_run(tahoe_cli_run):
    return tahoe_cli_run[:2]


def test_tahoe_stops_every_epoch_after_max_steps_and_says_little(tahoe_run):
    """`--max_steps N` stops every epoch after N batches, the first batch is timed apart
    from training, and the terminal shows a few lines of raycell's, none of Ray's or
    MLflow's (its runs are on a tracking server here)."""
    done, save = tahoe_run
    assert done.returncode == 0, done.stderr[-2000:]
    summary = pd.read_csv(save / "summary.csv", dtype={"run_key": str})
    assert sorted(zip(summary["strategy"], summary["seed"], strict=True)) == sorted(
        (s, seed) for s in CLI_STRATEGIES for seed in CLI_SEEDS)
    for run in summary.itertuples():
        epochs = pd.read_csv(save / "runs" / run.run_key / "epochs.csv")
        assert list(epochs["train_cells"]) == [48] * CLI_EPOCHS  # 3 batches of 16, each epoch
        assert (epochs["startup_seconds"] > 0).all()
        assert (epochs["first_batch_at"] > 1.7e9).all()  # a wall-clock time, for start-up
        # The loaders' start-up, reported beside training time, over all epochs.
        assert run.startup_seconds == pytest.approx(epochs["startup_seconds"].sum())
    # Quiet by default: where it runs, progress lines, the table, the paths; no Ray, Tune
    # or MLflow logs.
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("ray: joined the cluster at")
    assert lines[1] == f"{CLI_STRATEGIES[0]}-seed0  epoch 1/2" + lines[1].split("epoch 1/2")[1]
    assert lines[-1] == f"report: {save / 'report.html'}"
    progress = [line for line in lines if re.match(r"\w+-seed\d(  epoch \d/\d  |: done in )",
                                                   line)]
    assert len(progress) == len(summary) * (CLI_EPOCHS + 1)  # each epoch, then done
    # The rest: the ray line, the table (a title, a header, a row per run), three paths,
    # two blank lines; a few more at most.
    assert len(lines) - len(progress) <= 1 + 2 + len(summary) + 3 + 2 + 3, done.stdout
    assert len(done.stderr.strip().splitlines()) < 3, done.stderr
    for noise in ("INFO", "Trial status", "RayTrainWorker", "View detailed results",
                  "View run", "View experiment"):
        assert noise not in done.stdout + done.stderr


@pytest.fixture(scope="module")
def chemoe_run(pdgrapher_dir, tmp_path_factory, ray_address):
    save = tmp_path_factory.mktemp("chemoe-cli") / "out"
    done = run_cli("chemoe", "--data", str(pdgrapher_dir), "--cell_line", "A549", "--fold", "0",
                   "--model", "mean_shift", "--save_dir", str(save), timeout=600,
                   env=joined(ray_address))
    return done, save


def test_chemoe_runs_a_baseline(chemoe_run):
    done, save = chemoe_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ray: joined the cluster at")
    assert pd.read_csv(save / "results.csv")["model"].tolist() == ["mean_shift"]


def test_report_puts_both_workloads_on_one_page(tahoe_run, chemoe_run, tmp_path):
    out = tmp_path / "both.html"
    done = run_cli("report", str(tahoe_run[1]), str(chemoe_run[1]), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"report: {out}" and out.stat().st_size > 10_000


def test_status_lists_the_finished_runs(tahoe_run):
    done = run_cli("status", str(tahoe_run[1]))
    assert done.returncode == 0, done.stderr
    runs = len(CLI_STRATEGIES) * len(CLI_SEEDS)
    assert re.match(rf".*: tahoe, {runs} runs: {runs} finished\n", done.stdout)
    assert "block_shuffling-seed0" in done.stdout and "ray_streaming-seed0" in done.stdout


def test_data_tahoe_writes_plates_or_shards_and_convert_turns_plates_into_shards(tmp_path):
    small = ("--plates", "2", "--cells_per_plate", "100", "--genes", "50", "--drugs", "4",
             "--cell_lines", "2")
    done = run_cli("data", "tahoe", "--out", str(tmp_path / "d"), *small)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "d").glob("plate*.h5ad"))) == 2
    done = run_cli("data", "tahoe", "--out", str(tmp_path / "p"), "--format", "parquet", *small)
    assert done.returncode == 0, done.stderr
    shards = [p.name for p in (tmp_path / "p" / "data").glob("*.parquet")]
    assert shards == ["train-00000-of-00001.parquet"]
    done = run_cli("data", "convert", str(tmp_path / "d"), "--out", str(tmp_path / "c"),
                   "--rows_per_shard", "150")
    assert done.returncode == 0, done.stderr
    assert "wrote 2 shards" in done.stdout
    assert (tmp_path / "c" / "metadata" / "gene_metadata.parquet").is_file()


def test_data_pdgrapher_writes_cell_lines(tmp_path):
    done = run_cli("data", "pdgrapher", "--out", str(tmp_path / "d"), "--cell_lines", "A549",
                   "--samples", "50", "--genes", "20", "--drugs", "2")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "d" / "A549.h5").is_file() and (tmp_path / "d" / "drugs.csv").is_file()


def test_data_import_pdgrapher_converts_pdgraphers_files(tmp_path):
    done = run_cli("data", "import-pdgrapher", "--backward", str(FIXTURE / "data_backward_A549.pt"),
                   "--splits", str(FIXTURE / "splits.pt"), "--drug_table",
                   str(FIXTURE / "drugs.csv"), "--out", str(tmp_path / "d"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "d" / "A549.h5").is_file()


def test_bench_train_times_every_stage_of_a_step(tmp_path):
    done = run_cli("bench", "train", "--genes", "500", "--batch_size", "16", "--nnz_per_cell",
                   "40", "--seconds", "0.2", "--rounds", "1", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "train.csv")
    assert sorted(frame["input"]) == ["dense", "sparse"] and (frame["steps"] > 0).all()
    stages = frame[["to_device_ms", "densify_ms", "forward_ms", "backward_ms",
                    "optimizer_ms"]].sum(axis=1)
    # The stages make up the step (the rest is the loop's own bookkeeping).
    assert (stages <= frame["ms_per_step"] * 1.001).all()
    assert (stages > 0.5 * frame["ms_per_step"]).all()
    assert "sparse / dense input, training cells/s:" in done.stdout


def test_bench_chemoe_measures_both_implementations(tmp_path):
    done = run_cli("bench", "chemoe", "--genes", "50", "--batch_size", "8", "--mol_dim", "32",
                   "--embed_dim", "8", "--hidden_dim", "16", "--seconds", "0.2", "--rounds", "1",
                   "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "bench_chemoe.csv").is_file()
    assert "raycell / dense reference, training samples/s:" in done.stdout
