"""``raycell report``: one self-contained HTML page over any raycell results folders.

Each folder says which workload wrote it (``raycell.json``; a loader bench folder
holds ``bench.csv``), and that workload's report pieces draw its sections.
"""

from __future__ import annotations

import json
import time
from importlib import import_module
from pathlib import Path

from raycell.core.errors import RaycellError
from raycell.core.html import Section, page, write_page
from raycell.core.layout import MARKER_FILE

# workload -> the module and function that draw its sections, imported only for a folder
# that needs them
SECTIONS = {"tahoe": "raycell.tahoe.outputs.report:sections",
            "chemoe": "raycell.chemoe.report:sections",
            "tahoe-search": "raycell.tahoe.outputs.search:search_sections",
            "chemoe-search": "raycell.chemoe.search_report:sections"}


def workload_of(folder: Path) -> str:
    marker = folder / MARKER_FILE
    if marker.is_file():
        try:
            return json.loads(marker.read_text())["workload"]
        except (ValueError, KeyError, TypeError):
            raise RaycellError(f"{marker} is corrupt") from None
    if (folder / "bench.csv").is_file():
        return "tahoe"  # the loader bench
    raise RaycellError(f"{folder} holds no raycell results (no raycell.json or bench.csv)")


def folder_sections(folder: Path) -> list[Section]:
    """A folder's sections, titled by the folder when a page holds several."""
    workload = workload_of(folder)
    if workload not in SECTIONS:
        raise RaycellError(f"{folder}: unknown workload {workload!r}")
    module, function = SECTIONS[workload].split(":")
    return getattr(import_module(module), function)(folder)


def write_report(folders: list[str | Path], out: str | Path) -> Path:
    """Every folder's sections on one page at ``out``; nothing is written on an error."""
    resolved = [Path(f).expanduser().resolve() for f in folders]
    for folder in resolved:
        if not folder.is_dir():
            raise RaycellError(f"{folder} is not a folder")
    sections = []
    for folder in resolved:
        parts = folder_sections(folder)
        if len(resolved) > 1:
            parts = [Section(f"{folder.name}: {s.title}", s.body) for s in parts]
        sections += parts
    names = ", ".join(str(f) for f in resolved)
    return write_page(Path(out).expanduser().resolve(), page(
        "raycell report", f"{names}; written {time.strftime('%Y-%m-%d %H:%M')}", sections))
