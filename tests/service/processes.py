"""Real service processes for the service tests, each on its own loopback ports and temp
folder, each started in its own session so that stopping its process group stops it
and nothing else (never ``ray stop``: it stops every Ray of the user)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one handed out before in this session: the kernel may
    offer a released port again at once, and two of a Ray node's components given the same
    port stop the node ("trying to use a port number ... used by other components")."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")


def http_json(url: str, data: dict | None = None, headers: dict | None = None):
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json",
                                                 **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def stop_group(proc: subprocess.Popen, grace: float = 20, first: int = signal.SIGTERM) -> None:
    """``first`` (SIGTERM) to the process group this test started, SIGKILL after ``grace``
    seconds."""
    if proc.poll() is not None:
        return
    for sig, wait in ((first, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def group_alive(pgid: int, settle: float = 15) -> list[int]:
    """PIDs still running in a process group (zombies not counted), after up to ``settle``
    seconds for the group to wind down: what stopping it left behind."""
    def running() -> list[int]:
        alive = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and os.getpgid(int(entry.name)) == pgid and \
                        "State:\tZ" not in (entry / "status").read_text():
                    alive.append(int(entry.name))
            except (ProcessLookupError, PermissionError, FileNotFoundError):
                pass
        return alive

    deadline = time.monotonic() + settle
    while (alive := running()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return alive


@dataclass
class RayHead:
    address: str  # the dashboard's HTTP address: what `ray job submit --address` takes
    gcs_address: str  # what a node joining it (`ray start --address`) and a driver take
    temp_dir: Path
    metrics_port: int
    env: dict[str, str]  # what a client of this cluster needs (auth mode and token)
    proc: subprocess.Popen
    # Its session folder. temp_dir's session_latest names the latest cluster to use that
    # temp dir, and a local cluster started beside this one may use it too.
    session_dir: Path | None = None

    def api(self, path: str):
        """The dashboard's REST API (jobs, ...), with this cluster's token."""
        return http_json(f"{self.address}{path}",
                         headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"})


@contextmanager
def ray_head(tmp: Path, num_cpus: int = 8, env: dict[str, str] | None = None,
             resources: dict[str, float] | None = None) -> Iterator[RayHead]:
    """``ray start --head --block`` with token auth on, every port free and on loopback;
    ``env``: more environment for the cluster's processes (Ray system settings);
    ``resources``: the head's custom resources."""
    extra = env or {}
    ports = {name: free_port() for name in
             ("port", "dashboard-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
              "metrics-export-port", "ray-client-server-port", "node-manager-port",
              "object-manager-port", "runtime-env-agent-port")}
    temp_dir = tmp / "ray"  # short: Ray's socket paths must stay under 107 characters
    # Jobs' entrypoints run `python` from the head's PATH: this venv's, as on a cluster node.
    # DASHBOARD_METRIC_PORT: the dashboard's own metrics, on a fixed port unless told.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{BIN}:{os.environ['PATH']}",
           "DASHBOARD_METRIC_PORT": str(free_port()), **extra}
    env.pop("RAY_ADDRESS", None)
    args = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1", f"--temp-dir={temp_dir}", f"--num-cpus={num_cpus}",
            "--num-gpus=0", "--disable-usage-stats", "--include-dashboard=true",
            *([f"--resources={json.dumps(resources)}"] if resources else []),
            *(f"--{name}={port}" for name, port in ports.items())]
    log = open(tmp / "ray-head.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    head = RayHead(address, f"127.0.0.1:{ports['port']}", temp_dir, ports["metrics-export-port"],
                   {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": env["RAY_AUTH_TOKEN"]}, proc)
    try:
        wait_for(lambda: head.api("/api/version"), 120, "ray head dashboard", proc)
        # The job agent comes up after the dashboard: wait until it takes submissions.
        wait_for(lambda: head.api("/api/jobs/") is not None, 60, "ray job agent", proc)
        # `ray start` records the cluster's address on the host last (a plain `ray.init()`
        # there would join it).
        wait_for(lambda: (temp_dir / "ray_current_cluster").is_file(), 60,
                 "ray start's address record", proc)
        head.session_dir = (temp_dir / "session_latest").resolve()
        yield head
    finally:
        # Ctrl-C, as for a user: `ray start --block` stops its cluster on SIGINT in about
        # 3 s, and ignores SIGTERM (20 s of grace, then SIGKILL).
        stop_group(proc, first=signal.SIGINT)
        log.close()


@dataclass
class RayNode:
    """A node that joined a head: its own raylet, temp folder and ports, its own process
    group (SIGKILL to it: the node is lost, as a machine that dies)."""

    resources: dict[str, float]
    proc: subprocess.Popen
    node_id: str = ""


@contextmanager
def ray_nodes(head: RayHead, tmp: Path, nodes: list[dict[str, float]], num_cpus: int = 2,
              first: int = 0, env: dict[str, str] | None = None) -> Iterator[list[RayNode]]:
    """One `ray start --address HEAD --block` per entry of ``nodes`` (its custom resources),
    each a node to Ray's scheduler although all run on this machine (as in Ray's own
    tests); yields them once the head lists every one alive. ``first``: the number of the
    first (nodes joined before are numbered below it); ``env``: more environment for the
    nodes' processes (what a machine of the cluster has, AWS keys say)."""
    env = {**os.environ, **head.env, "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
    env.pop("RAY_ADDRESS", None)
    started: list[RayNode] = []
    logs = []
    try:
        for i, resources in enumerate(nodes, start=first):
            folder = tmp / f"n{i}"
            folder.mkdir(parents=True)
            ports = {name: free_port() for name in (
                "node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port")}
            # Its own temp folder: its sockets (raylet, object store) apart from the head's.
            args = [str(BIN / "ray"), "start", f"--address={head.gcs_address}", "--block",
                    "--node-ip-address=127.0.0.1", f"--temp-dir={folder / 'r'}",
                    f"--num-cpus={num_cpus}", "--num-gpus=0",
                    # plus one resource of its own, to find its node id by
                    f"--resources={json.dumps(resources | {f'test_node_{i}': 1})}",
                    *(f"--{name}={port}" for name, port in ports.items())]
            logs.append(open(folder / "ray-node.log", "w"))  # noqa: SIM115 (closed below)
            started.append(RayNode(resources, subprocess.Popen(
                args, env=env, stdout=logs[-1], stderr=subprocess.STDOUT,
                start_new_session=True)))

        def all_alive() -> list[dict] | None:
            listed = head.api("/api/v0/nodes?limit=100&detail=true")["data"]["result"]["result"]
            alive = {key for n in listed if n["state"] == "ALIVE"
                     for key in n["resources_total"] if key.startswith("test_node_")}
            return listed if alive >= {f"test_node_{i}" for i in
                                       range(first, first + len(nodes))} else None

        listed = wait_for(all_alive, 120, "ray nodes")
        for i, node in enumerate(started, start=first):
            node.node_id = next(n["node_id"] for n in listed
                                if f"test_node_{i}" in n["resources_total"])
        yield started
    finally:
        for node in started:
            stop_group(node.proc, first=signal.SIGINT)
        for log in logs:
            log.close()


def node_dead(head: RayHead, node: RayNode) -> bool:
    """Whether the head has marked ``node`` dead."""
    listed = head.api("/api/v0/nodes?limit=100&detail=true")["data"]["result"]["result"]
    return any(n["node_id"] == node.node_id and n["state"] == "DEAD" for n in listed)


@dataclass
class S3Server:
    endpoint: str
    env: dict[str, str]  # the AWS variables a client of it needs
    proc: subprocess.Popen

    def bucket(self, name: str) -> str:
        """A new bucket; its s3:// URI."""
        from pyarrow.fs import S3FileSystem

        S3FileSystem(endpoint_override=self.endpoint, access_key=self.env["AWS_ACCESS_KEY_ID"],
                     secret_key=self.env["AWS_SECRET_ACCESS_KEY"], region="us-east-1",
                     allow_bucket_creation=True).create_dir(name)
        return f"s3://{name}"


@contextmanager
def s3_server(tmp: Path) -> Iterator[S3Server]:
    """moto's S3-compatible HTTP server (``moto_server``) on a free loopback port, in
    memory: object storage as pyarrow, and so Ray Train, talks to it."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    log = open(tmp / "moto.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "raycell-test",
           "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16), "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        wait_for(lambda: urllib.request.urlopen(endpoint, timeout=5).status == 200, 60,
                 "moto server", proc)
        yield S3Server(endpoint, env, proc)
    finally:
        stop_group(proc)
        log.close()


@dataclass
class MlflowServer:
    uri: str
    proc: subprocess.Popen


@contextmanager
def mlflow_server(tmp: Path) -> Iterator[MlflowServer]:
    """``mlflow server`` on a free loopback port, sqlite store and artifacts under ``tmp``."""
    port = free_port()
    (tmp / "artifacts").mkdir(parents=True, exist_ok=True)
    args = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
            "--artifacts-destination", str(tmp / "artifacts"), "--workers", "1"]
    log = open(tmp / "mlflow-server.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{uri}/health", timeout=5).status == 200, 120,
                 "mlflow server", proc)
        yield MlflowServer(uri, proc)
    finally:
        stop_group(proc)
        log.close()


@contextmanager
def prometheus(head, tmp: Path, prometheus_yml: Path) -> Iterator[str]:
    """Debian's ``prometheus`` on a free loopback port, scraping ``head`` every second
    through Ray's service discovery file with the scrape config of ``prometheus_yml``;
    yields its URL."""
    import yaml

    discovery = head.session_dir / "prom_metrics_service_discovery.json"
    wait_for(discovery.is_file, 60, "discovery file")
    config = yaml.safe_load(prometheus_yml.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    scrape = config["scrape_configs"][0]
    scrape["file_sd_configs"][0]["files"] = [str(discovery)]
    # Ray lists this machine's interface address; a one-machine cluster is scraped over
    # loopback (same ports), so no traffic leaves 127.0.0.1.
    scrape["relabel_configs"] = [{"source_labels": ["__address__"],
                                  "regex": "[^:]+:(\\d+)", "target_label": "__address__",
                                  "replacement": "127.0.0.1:$1"}]
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (Debian package; make system-packages)"
    port = free_port()
    log = open(tmp / "prometheus.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{url}/-/ready").status == 200, 60,
                 "prometheus", proc)
        yield url
    finally:
        stop_group(proc)
        log.close()


def submit(head, job_id: str, entrypoint: list[str], env_vars: dict[str, str],
           runtime_env: Path | None = None) -> None:
    """`ray job submit` from the repository, as a user submits: the CLI with a working_dir
    and ``env_vars``, or with a ``runtime_env`` file (which carries its own env_vars)."""
    env = {**os.environ, **head.env}
    env.pop("RAY_ADDRESS", None)
    # A crash dumps every thread's stack into the job's log.
    env_vars = {"PYTHONFAULTHANDLER": "1", **env_vars}
    how = ["--runtime-env", str(runtime_env)] if runtime_env else [
        "--working-dir", str(REPO), "--runtime-env-json", json.dumps({"env_vars": env_vars})]
    done = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", head.address, "--no-wait",
         "--submission-id", job_id, *how, "--", "python", *entrypoint],
        capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def wait_job(head, job_id: str, timeout: float = 600) -> tuple[str, str]:
    """Poll the job's status until it ends; (final status, its logs)."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = head.api(f"/api/jobs/{job_id}")["status"]
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return status, head.api(f"/api/jobs/{job_id}/logs")["logs"]
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} still {status} after {timeout} s")


def chromium(*args: str, size: str = "1600,1000", timeout: float = 120):
    binary = shutil.which("chromium")
    assert binary, "chromium is not installed (Debian package; make system-packages)"
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", f"--window-size={size}",
         "--virtual-time-budget=20000", *args],
        capture_output=True, text=True, timeout=timeout)
