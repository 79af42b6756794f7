"""CSV files shared by runs: rows keyed by one column, written atomically under a file lock.

Re-writing a key replaces its rows instead of duplicating them, and a crash
mid-write leaves the previous file intact (``write_whole``: a temp file, then rename).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from filelock import FileLock

from raycell.core.errors import RaycellError
from raycell.core.layout import LOCK_FILE


def results_dir(save_dir: str | Path) -> Path:
    """The results folder as an absolute path, refused if it or a parent is not a folder.

    Checked before a run starts, so a typo such as ``--save_dir results.csv`` costs one
    line instead of a traceback after Ray has started.
    """
    path = Path(save_dir).expanduser().resolve()
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise RaycellError(f"--save_dir {path}: {part} exists and is not a folder")
    return path


def write_whole(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` beside ``path``, then rename: a reader sees the old file or the new
    one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def write_table(path: Path, frame: pd.DataFrame) -> Path:
    """A CSV written whole or not at all."""
    return write_whole(path, lambda tmp: frame.to_csv(tmp, index=False))


def upsert(path: Path, rows: pd.DataFrame, key: str = "run_key") -> pd.DataFrame:
    """Replace the rows of ``path`` whose ``key`` is in ``rows``, append the rest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.parent / LOCK_FILE):
        if path.is_file():
            old = pd.read_csv(path, dtype={key: str})  # a hex key may be all digits
            rows = pd.concat([old[~old[key].isin(rows[key].astype(str))], rows],
                             ignore_index=True)
        write_table(path, rows)
    return rows


def remove_keys(path: Path, keys: list[str], key: str = "run_key") -> None:
    """Drop the rows of ``path`` whose ``key`` is in ``keys`` (a missing file has none)."""
    path = Path(path)
    if not path.is_file():
        return
    with FileLock(path.parent / LOCK_FILE):
        old = pd.read_csv(path, dtype={key: str})
        write_table(path, old[~old[key].isin(keys)])
