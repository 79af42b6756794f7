"""Ray and MLflow set-up shared by every workload: embedded defaults, absolute paths."""

from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path

import ray
from ray.train import ScalingConfig

from raycell.core.config import RaySettings
from raycell.core.console import quiet_logs, verbose
from raycell.core.errors import RaycellError

PREEMPTION_WATCHER = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"  # Ray Train V2's switch
API_SERVER = "RAY_API_SERVER_ADDRESS"  # where Ray's State API asks, before RAY_ADDRESS


def local_cpus(settings: RaySettings) -> int:
    """Logical CPUs for a local cluster: more than the cores.

    Tune driver + Train worker + Ray Data tasks on exactly the core count deadlock
    silently on a 2-core machine (docs/facts.md); the loops are I/O bound, so
    oversubscribing is safe.
    """
    return settings.local_num_cpus or max(4, 2 * (os.cpu_count() or 1))


def ensure_ray(settings: RaySettings) -> str | None:
    """Join the cluster RAY_ADDRESS names, else start a local one of our own; returns a
    line that says which (None when this process is already connected).

    ``address="local"`` keeps a local run off any cluster already on the host: with no
    address, ``ray.init`` joins the one Ray recorded in its temp folder (a ``ray start
    --head`` still running, or a dead one's stale record), and refuses num_cpus there.
    Workers' output reaches this terminal only with --verbose (console.py)."""
    if ray.is_initialized():
        return None
    quiet_logs()
    loud = verbose()
    options = {"log_to_driver": loud, "logging_level": logging.INFO if loud else logging.ERROR}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        _check_answers(address)
        try:
            ray.init(address=address, **options)
        except ConnectionError as exc:  # e.g. a cluster whose auth token this host lacks
            from raycell.core.status import first_error_line

            reason = first_error_line(str(exc.__cause__ or exc))  # the innermost error
            raise RaycellError(f"RAY_ADDRESS={address}: cannot join the Ray cluster there "
                               f"({reason})") from None
        cpus = int(ray.cluster_resources().get("CPU", 0))
        return f"ray: joined the cluster at {address} ({cpus} CPUs, RAY_ADDRESS)"
    cpus = local_cpus(settings)
    # Ray Train watches every worker group's nodes for preemption (spot instances being
    # drained) with an actor of its own: about 2.4 CPU-s a run here, and the one node of
    # a local cluster is this machine, which nothing preempts. Its processes inherit this.
    os.environ.setdefault(PREEMPTION_WATCHER, "0")
    # Ray's State API finds "the" cluster on this host when given no address, and fails
    # where there are two (a `ray start --head` beside this one). Ray Train's placement
    # group cleaner asks it whether a run's controller lives: failing, it never frees the
    # group of a run a scheduler stopped, and later runs wait for CPUs that never come
    # (docs/facts.md). So this cluster's dashboard port is chosen here and named to its
    # processes, which inherit this one's environment as Ray starts them; this process's
    # own is put back, for the commands it runs (`ray job submit` reads it too).
    port = _free_port()
    with environ(API_SERVER, f"http://127.0.0.1:{port}"):
        ray.init(address="local", num_cpus=cpus, dashboard_port=port, **options)
    return f"ray: started a local cluster ({cpus} logical CPUs; RAY_ADDRESS joins another)"


@contextmanager
def environ(name: str, value: str):
    """An environment variable set for a while, then put back as it was."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_answers(address: str, timeout_s: float = 4.0) -> None:
    """A GCS address (host:port) where nothing listens is refused at once: ``ray.init``
    would retry for ~20 s and end in a traceback. (``ray://`` client and ``auto``
    addresses are left to Ray.)"""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RaycellError(f"RAY_ADDRESS={address}: no Ray cluster answers there "
                           f"({exc.strerror or type(exc).__name__})") from None


def worker_bundle(settings: RaySettings) -> dict[str, float]:
    """What one Ray Train worker asks of a node: CPUs, (fractional) GPUs with use_gpu, and
    the custom resources that place it on a node type (``ray.worker_resources``)."""
    gpus = {"GPU": settings.gpus_per_worker} if settings.use_gpu else {}
    return {"CPU": settings.cpus_per_worker} | gpus | settings.worker_resources


def scaling_config(settings: RaySettings) -> ScalingConfig:
    return ScalingConfig(num_workers=settings.num_workers, use_gpu=settings.use_gpu,
                         resources_per_worker=worker_bundle(settings))


def driver_bundle(settings: RaySettings) -> dict[str, float]:
    """What each Tune trial (a run's driver) asks for."""
    return {"CPU": settings.driver_cpus, **settings.driver_resources}


def check_placement(settings: RaySettings) -> None:
    """Refuse a run the cluster cannot place within ``ray.schedule_timeout_s``.

    Ray leaves a placement group no node can hold pending for ever and only logs an
    "infeasible" warning (docs/facts.md), so a typo in a resource name would hang a grid.
    A placement group of one run's bundles (the trial's driver and every worker) is
    asked for first: placed, it is given back at once; an autoscaler sees it pending and
    may add nodes meanwhile; not placed in time, the run is refused with what was asked
    and what the nodes have.
    """
    from ray.util.placement_group import placement_group, remove_placement_group

    worker = worker_bundle(settings)
    driver = {k: v for k, v in driver_bundle(settings).items() if v}  # a bundle takes no 0
    bundles = [driver] * bool(driver)
    group = placement_group(bundles + [worker] * settings.num_workers, strategy="PACK")
    placed = group.wait(timeout_seconds=settings.schedule_timeout_s)
    remove_placement_group(group)
    if not placed:
        nodes = [_shown(node["Resources"]) for node in ray.nodes() if node["Alive"]]
        raise RaycellError(
            f"the cluster cannot place {settings.num_workers} Ray Train worker(s) of "
            f"{_shown(worker)} (and the trial's {_shown(driver)}) within "
            f"{settings.schedule_timeout_s:g} s (ray.schedule_timeout_s); its nodes have: "
            + "; ".join(nodes))


def _shown(resources: dict[str, float]) -> str:
    """Resources as a person reads them: no per-node ids, no memory in bytes."""
    kept = {k: v for k, v in sorted(resources.items())
            if not k.startswith(("node:", "accelerator_type:")) and "memory" not in k}
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in kept.items()) + "}"


def tracking_uri(save_dir: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else a sqlite store beside the results."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{save_dir.resolve()}/mlflow.db"


def experiment_id(uri: str, name: str, save_dir: Path) -> str:
    """Get or create an MLflow experiment.

    A local store gets an absolute artifact location beside the results (without one,
    artifacts land in the working directory: Ray's session folder, a job's temporary
    copy). A tracking server keeps its own (``--artifacts-destination``, on the
    cluster's shared storage) and takes artifacts over HTTP.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    if uri.startswith(("http://", "https://")):
        return client.create_experiment(name)
    artifacts = (save_dir.resolve() / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=artifacts)
