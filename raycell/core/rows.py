"""CSV files shared by runs: rows keyed by one column, written atomically under a file lock.

Re-writing a key replaces its rows instead of duplicating them, and a crash
mid-write leaves the previous file intact (write to a temp file, then rename).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from filelock import FileLock


def upsert(path: Path, rows: pd.DataFrame, key: str = "run_key") -> pd.DataFrame:
    """Replace the rows of ``path`` whose ``key`` is in ``rows``, append the rest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            old = pd.read_csv(path, dtype={key: str})  # a hex key may be all digits
            rows = pd.concat([old[~old[key].isin(rows[key].astype(str))], rows],
                             ignore_index=True)
        tmp = path.with_name(path.name + ".tmp")
        rows.to_csv(tmp, index=False)
        os.replace(tmp, path)
    return rows
