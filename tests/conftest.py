"""Shared fixtures: tiny in-format Tahoe plates written by the real generator."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

from raycell.chemoe.config import PdgrapherSpec
from raycell.chemoe.synthetic import write_pdgrapher
from raycell.core.storage import checkpoint_store
from raycell.tahoe.config import TahoeSpec
from raycell.tahoe.data.synthetic import write_tahoe


@pytest.fixture(autouse=True)
def _environment_kept():
    """What a test sets in os.environ (MLflow's tracking URI, RAYCELL_VERBOSE from an
    in-process --verbose, Tune's switches) does not reach the next test."""
    before = dict(os.environ)
    yield
    if dict(os.environ) != before:
        os.environ.clear()
        os.environ.update(before)


@pytest.fixture(scope="session")
def ray_address() -> str:
    """One local Ray cluster for the whole session: in-process grids run on it, and CLI
    runs that are not killed join it (``env=joined(ray_address)``), instead of each
    starting a cluster of its own. Runs that a test kills start their own, so that the
    kill takes their whole cluster with them, as for a user."""
    import ray

    from raycell.core.config import RaySettings
    from raycell.core.runtime import ensure_ray

    ensure_ray(RaySettings(local_num_cpus=8))
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def pytest_collection_modifyitems(items):
    """Tests on the service head run last, so that the head (an idle cluster costs about
    7% of a core) lives only while they run; the rest keep their order."""
    items.sort(key=lambda item: "head" in getattr(item, "fixturenames", ()))


def joined(address: str) -> dict[str, str]:
    """The environment of a CLI run that joins the session's cluster."""
    return {**os.environ, "RAY_ADDRESS": address}


# Tests run on clusters they start, never on one the environment names.
os.environ.pop("RAY_ADDRESS", None)
# Ray Train's controller polls its workers every 2 s, and a report waits for the poll: a
# tiny test epoch (0.05 s) costs up to 2 s. Polling every 0.2 s makes the suite's
# many-epoch runs about 4x faster (a 40-epoch CheMoE run: 96 s -> 24 s) and changes no
# number. Inherited by the CLI runs, local clusters and service heads the tests start.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

TINY = TahoeSpec(plates=3, cells_per_plate=900, genes=60, drugs=6, cell_lines=3,
                 sublibraries=2, seed=3)


@pytest.fixture(scope="session")
def tahoe_dir(tmp_path_factory) -> Path:
    return write_tahoe(tmp_path_factory.mktemp("tahoe"), TINY)


def tiny_config(tahoe_dir: Path, save_dir: Path, **overrides):
    from raycell.tahoe.config import load_tahoe_config

    base = {
        "data.h5ad_dir": str(tahoe_dir),
        "data.train_plates": [1, 2],
        "data.test_plates": [3],
        "output.save_dir": str(save_dir),
        "training.batch_size": 16,
        "scdataset.fetch_factor": 4,
        "scdataset.num_workers": 0,
    }
    return load_tahoe_config("default", {**base, **overrides})


GRID_EPOCHS = 4  # the multi-node tests kill a node in the second epoch and one in the third


def grid_config(tahoe_dir: Path, save_dir: Path, **overrides):
    """The Tahoe grid's config: two DDP ranks a run, two trials at a time (a trial's
    start-up, four Ray processes, waits as much as it works)."""
    return tiny_config(tahoe_dir, save_dir, **{
        "training.num_epochs": GRID_EPOCHS, "ray.num_workers": 2,
        "training.learning_rate": 0.02, "ray.max_concurrent_trials": 2, **overrides})


@pytest.fixture(scope="session")
def tahoe_grid_run(tahoe_dir, tmp_path_factory, ray_address):
    """Every strategy, two ranks each, in-process on the session's one-node cluster: the
    grid tests (tests/tahoe/test_ray_tahoe.py) and the one-node twin of the multi-node
    run (tests/service/test_multinode.py). Returns (config, inputs, folder, summary)."""
    from raycell.tahoe.grid import tahoe_grid
    from raycell.tahoe.inputs import load_tahoe_inputs
    from raycell.tahoe.loaders.strategies import STRATEGY_NAMES

    save = tmp_path_factory.mktemp("grid")
    cfg = grid_config(tahoe_dir, save)
    inputs = load_tahoe_inputs(cfg)
    return cfg, inputs, save, tahoe_grid(cfg, inputs, list(STRATEGY_NAMES))


TINY_PDG = PdgrapherSpec(cell_lines=["A549", "MCF7"], samples=150, genes=30, drugs=6, seed=2)


@pytest.fixture(scope="session")
def pdgrapher_dir(tmp_path_factory) -> Path:
    return write_pdgrapher(tmp_path_factory.mktemp("pdgrapher"), TINY_PDG)


def tiny_chemoe_config(save_dir: Path, **overrides):
    from raycell.chemoe.config import load_chemoe_config

    base = {
        "output.save_dir": str(save_dir),
        "grid.cell_lines": ["A549"],
        "model.embed_dim": 8,
        "model.hidden_dim": 16,
        "training.batch_size": 16,
        "training.epochs": 3,
        "training.eval_every": 2,
        "training.lr": 3e-3,
    }
    return load_chemoe_config("default", {**base, **overrides})


CHEMOE_MODELS = ["chemoe", "identity", "mean_shift", "ridge"]
# Epochs enough that a run killed on seeing its second checkpoint is killed mid-run.
CHEMOE_EPOCHS = 16


@pytest.fixture(scope="session")
def tiny_chemoe_grid(pdgrapher_dir, tmp_path_factory, ray_address):
    """The four models on one cell line, in-process on the session's cluster: the CheMoE
    tests' grid (tests/chemoe/test_ray_chemoe.py) and the uninterrupted reference of a
    killed CheMoE run (tests/core/test_resume.py)."""
    from raycell.chemoe.grid import chemoe_grid as run_grid
    from raycell.chemoe.inputs import prepare_inputs

    save = tmp_path_factory.mktemp("chemoe")
    cfg = tiny_chemoe_config(save, **{"grid.models": CHEMOE_MODELS,
                                      "training.epochs": CHEMOE_EPOCHS})
    return cfg, save, run_grid(cfg, prepare_inputs(cfg, pdgrapher_dir))


# The CLI as a user runs it: a subprocess, its exit code, its stderr.
def run_cli(*args, cwd=None, timeout=120, env=None):
    return subprocess.run([sys.executable, "-m", "raycell.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env)


def run_main(*args) -> subprocess.CompletedProcess:
    """The CLI's ``main`` in this process, for refusals: what ``run_cli`` checks (exit code,
    stdout, stderr; an uncaught exception fails the test as a traceback would) without
    starting an interpreter each time. Commands that run go through ``run_cli``."""
    from raycell.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def status_of(save: Path) -> dict[str, list[str]]:
    """``raycell status SAVE``: run name -> the fields of its line; "header" -> the first
    line (the folder and its workload)."""
    result = run_main("status", str(save))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split()[:2] == ["state", "run"], result.stdout
    return {"header": lines[0]} | {line.split()[1]: line.split(maxsplit=4)
                                   for line in lines[2:]}


def assert_clean_error(result, culprit, save_dir):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("raycell: error:"), result.stderr
    assert culprit in lines[0]
    assert not save_dir.exists()


@pytest.fixture(scope="session")
def head(tmp_path_factory):
    """One `ray start --head` (tests/service/processes.py) for the session: jobs are
    submitted to it (tests/service/), and runs on a local cluster of their own are
    started beside it (tests/core/test_resume.py). Stopped with its process group when
    the session ends."""
    from tests.service.processes import group_alive, ray_head

    tmp = tmp_path_factory.mktemp("head")
    # Ray reports metrics every 10 s by default; once a second here, so that Prometheus
    # sees a short job (tests/service/test_dashboards.py).
    with ray_head(tmp, env={"RAY_metrics_report_interval_ms": "1000"}) as started:
        yield started
    assert started.proc.poll() is not None
    assert group_alive(started.proc.pid) == []  # the whole cluster is gone


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """An S3-compatible server on loopback for the session (moto; tests/service/processes.py):
    checkpoints in object storage (tests/core/test_storage.py, tests/service/test_multinode.py)."""
    from tests.service.processes import s3_server

    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def silent_endpoint():
    """A loopback port that takes connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


# Enough epochs after the first checkpoint that a signal sent on seeing it lands mid-run
# (2-3 s of epochs here).
REFERENCE_EPOCHS = 4
REFERENCE_STRATEGIES = ["block_shuffling", "ray_block_shuffle"]


@pytest.fixture(scope="session")
def tahoe_reference(tahoe_dir, tmp_path_factory, ray_address):
    """Uninterrupted runs of an scDataset strategy and a Ray Data strategy, in-process on the
    session's cluster: what a stopped run must end with once resumed
    (tests/core/test_resume.py) and what a job on another cluster must give
    (tests/service/test_jobs.py). Returns their rows, results folder and config file."""
    import raycell

    root = tmp_path_factory.mktemp("reference")
    # Both runs at once: concurrency is not in the run key (it changes no number).
    config = tahoe_yaml(root / "c.yaml", tahoe_dir, root / "out", REFERENCE_EPOCHS,
                        ray={"max_concurrent_trials": 2})
    summary = raycell.run_tahoe(raycell.load_tahoe_config(str(config)), REFERENCE_STRATEGIES)
    return summary, root / "out", config


CLI_STRATEGIES = ["block_shuffling", "ray_streaming"]  # one scDataset, one Ray Data
CLI_SEEDS = [0]  # several seeds' mean and spread: tests/tahoe/outputs/test_report_tables.py
CLI_EPOCHS = 2


@pytest.fixture(scope="session")
def tahoe_cli_run(tahoe_dir, tmp_path_factory, ray_address):
    """`raycell tahoe` as documented, in a fresh interpreter that joins the session's
    cluster and records on a real `mlflow server`: two strategies, two seeds, two epochs of
    `--max_steps 3` batches. The command's smoke test (tests/test_commands.py) and the
    MLflow server's (tests/service/test_mlflow_server.py). Yields the finished process,
    the results folder, the server and the server's folder."""
    from tests.service.processes import mlflow_server

    tmp = tmp_path_factory.mktemp("tahoe-cli")
    save = tmp / "out"
    with mlflow_server(tmp / "server") as server:
        done = run_cli(
            "tahoe", "--h5ad_dir", str(tahoe_dir), "--train_plates", "1", "2",
            "--test_plates", "3", "--strategy", *CLI_STRATEGIES,
            "--seed", *map(str, CLI_SEEDS), "--epochs", str(CLI_EPOCHS), "--max_steps", "3",
            "--batch_size", "16", "--fetch_factor", "4", "--num_workers", "0",
            "--save_dir", str(save), timeout=900,
            env={**joined(ray_address), "MLFLOW_TRACKING_URI": server.uri,
                 "PYTHONFAULTHANDLER": "1"})
        yield done, save, server, tmp


# Kill and resume, as a user meets it (tests/core/test_resume.py, tests/core/test_status.py).
def tahoe_yaml(path: Path, tahoe_dir: Path, save: Path, epochs: int, **extra) -> Path:
    cfg = {"data": {"h5ad_dir": str(tahoe_dir), "train_plates": [1, 2], "test_plates": [3]},
           "training": {"batch_size": 16, "num_epochs": epochs},
           "scdataset": {"fetch_factor": 4, "num_workers": 0},
           "ray_data": {"read_rows": 256, "shuffle_buffer_rows": 128},
           "output": {"save_dir": str(save)}, **extra}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _default_sigint() -> None:
    # A shell without job control starts background commands with SIGINT ignored, and
    # children inherit that: the run would not see the Ctrl-C a test sends it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log, "w") as out:  # its own session: SIGKILL to the group hits only it
        return subprocess.Popen([sys.executable, "-m", "raycell.cli", *args], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                preexec_fn=_default_sigint)


@pytest.fixture
def stale_ray_record():
    """The environment of a run whose Ray temp folder (RAY_TMPDIR; short, since Ray's
    socket paths stay under 107 characters) records a cluster that is gone, as a killed
    ``ray start`` leaves it: ``ray.init()`` without an address would try to join it."""
    root = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
    (root / "ray").mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        (root / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{s.getsockname()[1]}")
    yield {**os.environ, "RAY_TMPDIR": str(root)}
    shutil.rmtree(root, ignore_errors=True)


def latest_checkpoint_epoch(save: Path, run: str = "", storage: str | None = None
                            ) -> int | None:
    """The epoch of the newest checkpoint Ray Train has registered for any run in save
    (or the runs whose name starts with ``run``; ``storage``: its ray.storage_path)."""
    epochs = []
    store = checkpoint_store(save, storage)
    for name in store.run_names():
        if not name.startswith(run):
            continue
        try:
            latest = store.latest_checkpoint(name)
        except (ValueError, KeyError):
            continue  # being written
        if latest:
            epochs.append(int(latest["metrics"]["epoch"]))
    return max(epochs) if epochs else None


def kill_after(proc: subprocess.Popen, ready, timeout: float = 240,
               sig: int = signal.SIGKILL) -> None:
    """Once ``ready()``, send ``sig`` to the run's process group (SIGINT: Ctrl-C in its
    terminal) and wait until every process of it has ended."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.05)
    try:
        group = [proc.pid] + [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        raise AssertionError("the run ended before it could be killed") from None
    os.killpg(proc.pid, sig)
    proc.wait(timeout=120)
    # Ray's processes of that cluster die with their driver; wait until they have.
    for _ in range(200):
        if not [pid for pid in group if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]:
            return
        time.sleep(0.1)
    raise AssertionError("processes of the killed run are still alive")
