"""Typed configs: strict pydantic models, packaged YAML, dotted overrides, run keys.

An unknown key or an out-of-range value is a ``RaycellError`` naming the key, so a
typo in a 9-hour experiment's config fails in the first second instead of being
silently ignored. The workloads' config models live in their slices.
"""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from raycell.core.errors import RaycellError

# A random seed as numpy takes it (np.random.seed: 0 <= seed < 2**32), refused at load.
Seed = Annotated[int, Field(ge=0, lt=2**32)]


def _device_name(device: str) -> str:
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"{device!r}: use cpu or cuda")
    return device


# A torch device a benchmark runs on; whether CUDA is there is asked when it runs.
Device = Annotated[str, AfterValidator(_device_name)]


def require_device(device: str) -> None:
    """Refuse a CUDA device on a machine without CUDA (imports torch)."""
    import torch

    if device != "cpu" and not torch.cuda.is_available():
        raise RaycellError(f"--device {device}: CUDA is not available on this machine")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _custom_resources(resources: dict[str, float]) -> dict[str, float]:
    for name in resources:
        if name in ("CPU", "GPU", "memory", "object_store_memory"):
            raise ValueError(f"{name!r} is not a custom resource: use cpus_per_worker, "
                             "driver_cpus, use_gpu and gpus_per_worker")
    return resources


# Custom resources a task or actor needs, as ``ray start --resources`` gives nodes them: the
# way a config says "on a trainer node" or "on a data node" (cluster.yaml's node types).
Resources = Annotated[dict[str, Annotated[float, Field(gt=0)]], AfterValidator(_custom_resources)]


def _storage_path(path: str | None) -> str | None:
    if path is None:
        return None
    if path.startswith("s3://"):
        from raycell.core.filesystems import bucket_of

        if not bucket_of(path):
            raise ValueError(f"{path!r} names no bucket: use s3://bucket/prefix")
        return path
    if "://" in path or not Path(path).is_absolute():
        raise ValueError(f"{path!r}: use s3://bucket/prefix or an absolute path on storage "
                         "every node shares")
    return path


# Where Ray Train keeps checkpoints (core/storage.py); None: the results folder's ray/.
StoragePath = Annotated[str | None, AfterValidator(_storage_path)]


class RaySettings(Strict):
    num_workers: int = Field(1, ge=1)  # Ray Train workers (DDP ranks) per run
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(1.0, gt=0, le=8)
    driver_cpus: float = Field(0.5, ge=0)  # Tune trial driver; fractional so it never starves
    max_concurrent_trials: int = Field(1, ge=1)  # 1: strategies are timed alone, like for like
    local_num_cpus: int | None = Field(None, ge=1)  # logical CPUs of a local cluster
    max_failures: int = Field(0, ge=0)  # Ray Train restarts from the last checkpoint
    worker_resources: Resources = Field(default_factory=dict)  # each Ray Train worker's
    # Each Tune trial's: a run's driver (Train's controller and its report queue live on
    # the trial's node). Losing that node loses the run, so place it on nodes that stay.
    driver_resources: Resources = Field(default_factory=dict)
    read_resources: Resources = Field(default_factory=dict)  # each Ray Data read task's
    # How long a grid waits for the cluster to place a run's workers before it gives up
    # with what was asked and what the nodes have (an autoscaler may add nodes meanwhile).
    schedule_timeout_s: float = Field(180.0, gt=0)
    storage_path: StoragePath = None  # checkpoints: s3://bucket/prefix or a shared path


class OutputSettings(Strict):
    """Where results go; each workload subclasses it with its own default folder and
    experiment, so a YAML that sets only some output keys keeps the workload's others."""

    save_dir: str
    experiment_name: str
    checkpoints_to_keep: int | None = Field(2, ge=1)  # one checkpoint per epoch; keep the last N


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown config key '{key}'"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{source}: {key}: {msg}" if key else f"{source}: {msg}"


ConfigT = TypeVar("ConfigT", bound=Strict)


def _flag_error(model: type[Strict], err: ValidationError) -> str:
    """One line naming the flag: settings' fields are named as their flags."""
    first = err.errors()[0]
    if not first["loc"]:  # a rule across fields: its message names them
        return first["msg"].removeprefix("Value error, ")
    name = str(first["loc"][0])
    flag, limits = f"--{name}", first.get("ctx", {})
    if first["type"] == "greater_than" and limits.get("gt") == 0:
        return f"{flag} must be positive"
    if first["type"] == "greater_than_equal" and limits.get("ge") == 0:
        return f"{flag} must not be negative"
    if first["type"] == "literal_error":
        annotation = model.model_fields[name].annotation
        choices = next(get_args(a) for a in [annotation, *get_args(annotation)]
                       if get_origin(a) is Literal)
        return f"{flag} {first['input']!r}: use {' | '.join(choices)}"
    message = first["msg"].removeprefix("Value error, ")
    return f"{flag} {message}" if message.startswith("'") else f"{flag}: {message}"


def from_flags(model: type[ConfigT], given: dict[str, Any], base: ConfigT | None = None
               ) -> ConfigT:
    """A command's settings: ``base`` (or the model's defaults) with the flags ``given``
    (those not None); a bad value is one line naming its flag."""
    values = base.model_dump() if base is not None else {}
    values |= {k: v for k, v in given.items() if v is not None}
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise RaycellError(_flag_error(model, err)) from None


def packaged_config_path(name: str, workload: str) -> Path:
    return Path(str(resources.files("raycell") / "configs" / f"{workload}_{name}.yaml"))


def load_yaml(name_or_path: str, workload: str) -> tuple[dict[str, Any], str]:
    """Read a packaged config by name (``default``, ``demo``, ...) or a YAML file."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = packaged_config_path(name_or_path, workload)
        if not path.exists():
            known = sorted(p.stem.removeprefix(f"{workload}_")
                           for p in path.parent.glob(f"{workload}_*.yaml"))
            raise RaycellError(
                f"config {name_or_path!r} is neither a file nor a packaged config "
                f"({', '.join(known)})"
            )
    if not path.is_file():
        raise RaycellError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RaycellError(f"config file {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(raw, dict):
        raise RaycellError(f"config file {path} must hold a mapping at the top level")
    return raw, str(path)


def get_dotted(raw: dict[str, Any], dotted: str) -> Any:
    node = raw
    for part in dotted.split("."):
        node = node[part]
    return node


def with_settings(model: type[ConfigT], raw: dict[str, Any], settings: dict[str, Any]
                  ) -> ConfigT:
    """``model`` from a config as a dict with ``{dotted key: value}`` set in it (a search
    trial's); ``raw`` is left as it was."""
    raw = copy.deepcopy(raw)
    for key, value in settings.items():
        set_dotted(raw, key, value)
    return model.model_validate(raw)


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RaycellError(f"config key {dotted!r}: {part!r} is not a section")
    node[leaf] = value


def load_config(model: type[ConfigT], workload: str, name_or_path: str,
                overrides: dict[str, Any] | None = None) -> ConfigT:
    """A packaged config by name (or a YAML file), ``{"dotted.key": value}`` overrides applied."""
    raw, source = load_yaml(name_or_path, workload)
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    if overrides:
        source += " + command line"
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise RaycellError(_format_error(err, source)) from None


def numeric_ray_settings(settings: RaySettings) -> dict[str, Any]:
    """The Ray settings that change a run's numbers (DDP ranks, the device), for its run
    key; CPUs, concurrency and max_failures only change how it is scheduled."""
    return settings.model_dump(include={"num_workers", "use_gpu"})


def config_key(payload: dict[str, Any]) -> str:
    """A short, stable hash of a run's config: the run key results are written under."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]

