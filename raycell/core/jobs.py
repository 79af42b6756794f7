"""Paths of a run submitted with ``ray job submit`` (the entry points in ``jobs/``).

A job runs in an unpacked copy of its working_dir, which Ray deletes when the job
ends, on whichever node Ray picks; its Train workers may run on other nodes. So
every path a job reads or writes must be absolute and outside that copy: on a
cluster, on the shared file system. A relative path given on the command line is
refused before anything starts. A config's own relative defaults (``results/tahoe-pilot``,
the demo data's ``data/demo/tahoe``) are placed under ``$RAYCELL_JOB_ROOT``
(``jobs/runtime_env.yaml`` sets it to the cluster's shared folder), so the same
packaged configs run as jobs unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from raycell.core.errors import RaycellError

JOB_ROOT = "RAYCELL_JOB_ROOT"


def _outside_working_dir(path: Path, what: str, value: str) -> Path:
    here = Path.cwd().resolve()
    if path == here or here in path.parents:
        raise RaycellError(f"{what} {value} is inside the job's working directory {here}, "
                           f"which is deleted when the job ends: use a shared folder")
    return path


def job_flag_path(value: str, flag: str, must_exist: bool) -> str:
    """A path flag of a job: absolute, outside the working directory, present if read
    (object storage URIs pass as they are)."""
    from raycell.core.filesystems import is_url

    if is_url(value):
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise RaycellError(f"--{flag} {value} is relative: a job runs in a temporary copy of "
                           f"its working directory, so give an absolute path on shared storage")
    path = _outside_working_dir(path.resolve(), f"--{flag}", value)
    if must_exist and not path.exists():
        raise RaycellError(f"--{flag} {value} does not exist on the node running the job")
    return str(path)


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if cfg is None:
            return None
        cfg = getattr(cfg, part)
    return cfg


def job_defaults(cfg: Any, keys: dict[str, str | None]) -> dict[str, str]:
    """Overrides that move the config's relative paths under ``$RAYCELL_JOB_ROOT``.

    ``keys``: dotted key -> the key that makes it unused when set (the demo data's folder
    is unused once a data path is given), or None."""
    moved = {}
    for key, unused_with in keys.items():
        value = _get(cfg, key)
        if value is None or (unused_with and _get(cfg, unused_with) is not None):
            continue
        if Path(value).expanduser().is_absolute():
            _outside_working_dir(Path(value).expanduser().resolve(), key, value)
            continue
        root = os.environ.get(JOB_ROOT)
        if not root:
            raise RaycellError(
                f"{key} {value} is relative and {JOB_ROOT} is not set: a job's working "
                f"directory is deleted when it ends, so pass an absolute path or submit with "
                f"jobs/runtime_env.yaml")
        if not Path(root).is_absolute():
            raise RaycellError(f"{JOB_ROOT} {root} must be an absolute path on shared storage")
        moved[key] = str(Path(root) / value)
    return moved
