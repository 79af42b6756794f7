"""Locked, atomic, idempotent CSV rows under real concurrency."""

import multiprocessing as mp
import time

import pandas as pd
import pytest

from raycell.core.errors import RaycellError
from raycell.core.rows import results_dir, upsert

WRITERS, ROWS_EACH = 16, 50


def _writer(path, writer):
    for i in range(ROWS_EACH):
        row = pd.DataFrame([{"run_key": f"{writer:02d}{i:03d}", "writer": writer, "i": i,
                             "value": writer * 1000 + i}])
        upsert(path, row)


def test_sixteen_processes_upserting_leave_whole_rows_and_no_duplicate(tmp_path):
    path = tmp_path / "results.csv"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    looks = 0
    while any(p.is_alive() for p in procs):  # a reader never sees half a file
        if path.exists():
            seen = pd.read_csv(path, dtype={"run_key": str})
            assert list(seen.columns) == ["run_key", "writer", "i", "value"]
            assert not seen.isna().any().any() and seen["run_key"].is_unique
            looks += 1
        time.sleep(0.005)
    for p in procs:
        p.join()
        assert p.exitcode == 0
    final = pd.read_csv(path, dtype={"run_key": str})
    assert len(final) == WRITERS * ROWS_EACH and final["run_key"].is_unique
    assert (final["value"] == final["writer"] * 1000 + final["i"]).all()
    assert looks > 0


def test_upserting_a_key_again_replaces_its_row(tmp_path):
    path = tmp_path / "r.csv"
    upsert(path, pd.DataFrame([{"run_key": "0123", "x": 1}, {"run_key": "abcd", "x": 2}]))
    upsert(path, pd.DataFrame([{"run_key": "0123", "x": 3}]))
    rows = pd.read_csv(path, dtype={"run_key": str}).set_index("run_key")["x"].to_dict()
    assert rows == {"0123": 3, "abcd": 2}  # an all-digit key stays a string
    upsert(tmp_path / "s.csv", pd.DataFrame([{"run_key": "0123", "x": 1}]))
    # One hidden lock for the folder's tables, not a .lock beside each of them.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".raycell.lock", "r.csv", "s.csv"]


def test_results_dir_refuses_a_file_on_the_way(tmp_path):
    (tmp_path / "f").write_text("x")
    assert results_dir(tmp_path / "new" / "dir") == (tmp_path / "new" / "dir").resolve()
    for bad in (tmp_path / "f", tmp_path / "f" / "below"):
        with pytest.raises(RaycellError, match="exists and is not a folder"):
            results_dir(bad)
