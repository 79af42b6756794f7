"""Generated data made once and reused, for every generator.

A marker written last records the spec (and generator version) that made the
files; the same spec reuses them, another one regenerates, and a lock keeps two
runs from writing the same folder at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock
from pydantic import BaseModel

MARKER = "complete.json"


def ensure_generated(out_dir: str | Path, spec: BaseModel, fields: set[str], version: int,
                     write: Callable[[Path, BaseModel], object]) -> Path:
    """``write(out, spec)`` unless ``out_dir`` already holds what this spec makes.

    ``fields``: the spec's fields that change the data (not where it is written)."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    marker = out / MARKER
    wanted = json.dumps({**spec.model_dump(include=fields), "version": version}, sort_keys=True)
    with FileLock(str(out / ".lock")):
        if marker.is_file() and marker.read_text() == wanted:
            return out
        marker.unlink(missing_ok=True)
        write(out, spec)
        marker.write_text(wanted)
    return out
