"""Ray and MLflow set-up shared by every workload: embedded defaults, absolute paths."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import ray
from ray.train import ScalingConfig

from raycell.core.config import RaySettings
from raycell.core.console import quiet_logs, verbose

PREEMPTION_WATCHER = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"  # Ray Train V2's switch


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
        ray.init(address=address, **options)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        return f"ray: joined the cluster at {address} ({cpus} CPUs, RAY_ADDRESS)"
    cpus = local_cpus(settings)
    # Ray Train watches every worker group's nodes for preemption (spot instances being
    # drained) with an actor of its own: about 2.4 CPU-s a run here, and the one node of
    # a local cluster is this machine, which nothing preempts. Its processes inherit this.
    os.environ.setdefault(PREEMPTION_WATCHER, "0")
    ray.init(address="local", num_cpus=cpus, **options)
    return f"ray: started a local cluster ({cpus} logical CPUs; RAY_ADDRESS joins another)"


def scaling_config(settings: RaySettings) -> ScalingConfig:
    """Ray Train workers from the config: CPUs each, and (fractional) GPUs with use_gpu."""
    gpus = {"GPU": settings.gpus_per_worker} if settings.use_gpu else {}
    return ScalingConfig(num_workers=settings.num_workers, use_gpu=settings.use_gpu,
                         resources_per_worker={"CPU": settings.cpus_per_worker} | gpus)


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
