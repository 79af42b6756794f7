"""`raycell bench loaders`: diversity metric, a short real run, and bad input."""

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import entropy

from raycell.core.errors import RaycellError
from raycell.tahoe.bench.loaders import BENCH_COLUMNS, entropy_bits
from raycell.tahoe.config import BENCH_STRATEGIES, check_bench_strategies
from tests.conftest import joined, run_cli, run_main
from tests.tahoe.test_cli_errors import copy_plates, plate


def test_entropy_matches_scipy():
    rng = np.random.default_rng(0)
    for codes in (rng.integers(0, 7, 64), np.zeros(64, int), np.r_[np.zeros(32), np.ones(32)]):
        codes = codes.astype(int)
        assert entropy_bits(codes) == pytest.approx(entropy(np.bincount(codes), base=2))


def test_unknown_strategy_is_named():
    with pytest.raises(RaycellError, match="unknown strategy 'blocks'"):
        check_bench_strategies(["block_shuffling", "blocks"])
    assert check_bench_strategies(["random", "random"]) == ("random",)


SHORT_LIST = ["streaming", "random", "block_shuffling", "ray_buffer", "per_row_backed",
              "seed_anncollection", "sequential_limit", "storage_limit"]


@pytest.mark.ray
def test_a_short_run_writes_every_strategy_and_format_cold_and_warm_bare_and_in_ray_train(
        tahoe_dir, tmp_path, ray_address):
    out = tmp_path / "bench"
    done = run_cli("bench", "loaders", "--data", str(tahoe_dir), "--seconds", "0.2",
                   "--warmup", "0.05", "--batch_size", "16", "--fetch_factor", "4",
                   "--block_size", "4", "--rounds", "1", "--strategies", *SHORT_LIST,
                   "--format", "both", "--out", str(out), timeout=600, env=joined(ray_address))
    assert done.returncode == 0, done.stderr[-2000:]
    bench = pd.read_csv(out / "bench.csv")
    assert list(bench.columns) == BENCH_COLUMNS
    # Two places, two caches; the references read plates only.
    assert len(bench) == 2 * 2 * (len(SHORT_LIST) + 4)
    parquet = bench[bench["format"] == "parquet"]
    assert set(parquet["strategy"]) == {"streaming", "random", "block_shuffling", "ray_buffer"}
    assert set(bench["where"]) == {"bare", "ray_train"} and set(bench["round"]) == {1}
    assert set(bench["cache"]) == {"cold", "warm"} and set(bench["consumer"]) == {"sparse"}
    assert (bench["cells_per_s"] > 0).all() and (bench["batches"] > 0).all()
    # Each cold strategy starts with its plates out of the page cache, each warm one in it.
    if not on_tmpfs(tahoe_dir):
        assert (bench.loc[bench["cache"] == "cold", "resident_before"] < 0.05).all()
    assert (bench.loc[bench["cache"] == "warm", "resident_before"] > 0.95).all()
    bare = bench[(bench["where"] == "bare") & (bench["format"] == "h5ad")
                 & (bench["cache"] == "warm")].set_index("strategy")
    # In-order streaming sees one or two wells a batch; random draws mix drugs and plates.
    assert bare.at["streaming", "drug_entropy"] < 0.5 * bare.at["random", "drug_entropy"]
    assert bare.at["random", "plate_entropy"] > 0.5
    assert (out / "bench.png").stat().st_size > 10_000
    assert "cold: block_shuffling / storage_limit" in done.stdout
    assert "warm: block_shuffling / sequential_limit" in done.stdout
    assert "warm bare: block_shuffling parquet / h5ad" in done.stdout
    assert "block_shuffling" in done.stderr + done.stdout  # progress, one line per strategy


def test_each_strategy_place_and_cache_is_read_at_its_fastest_round():
    from raycell.tahoe.bench.loaders import best_rounds

    frame = pd.DataFrame({"strategy": ["a"] * 4 + ["b"] * 2, "format": ["h5ad"] * 6,
                          "where": ["bare"] * 6,
                          "cache": ["cold", "warm"] * 3, "round": [1, 1, 2, 2, 1, 1],
                          "cells_per_s": [5.0, 9.0, 7.0, 8.0, 3.0, 4.0]})
    best = best_rounds(frame).set_index(["strategy", "cache"])["round"]
    assert best.to_dict() == {("a", "cold"): 2, ("a", "warm"): 1, ("b", "cold"): 1,
                              ("b", "warm"): 1}


def on_tmpfs(path) -> bool:
    """tmpfs keeps files in memory: no eviction takes there."""
    mounts = [line.split() for line in open("/proc/self/mounts")]
    path = str(path.resolve())
    best = max((m for m in mounts if path.startswith(m[1])), key=lambda m: len(m[1]))
    return best[2] == "tmpfs"


def test_the_bench_measures_every_registry_strategy():
    from raycell.tahoe.loaders.strategies import STRATEGY_NAMES

    assert set(STRATEGY_NAMES) < set(BENCH_STRATEGIES)
    assert len(BENCH_STRATEGIES) == len(STRATEGY_NAMES) + 4


def _no_plates(root):
    for path in root.glob("plate*.h5ad"):
        path.unlink()
    return "holds no plate files"


def _dense_x(root):
    adata = anndata.read_h5ad(plate(root, 2))
    adata.X = sp.csc_matrix(adata.X)
    adata.write_h5ad(plate(root, 2))
    return f"{plate(root, 2).name}: X is not a CSR matrix"


@pytest.mark.parametrize("breaker", [_no_plates, _dense_x])
def test_bad_data_is_one_line_and_exit_code_2(tahoe_dir, tmp_path, breaker):
    root = copy_plates(tahoe_dir, tmp_path / "data")
    expected = breaker(root)
    out = tmp_path / "bench"
    done = run_main("bench", "loaders", "--data", str(root), "--out", str(out))
    assert done.returncode == 2
    assert expected in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert not out.exists()  # nothing half-written


def test_unknown_strategy_in_the_list_is_one_line_and_exit_code_2(tmp_path):
    done = run_main("bench", "loaders", "--strategies", "random", "ray_random",
                   "--out", str(tmp_path / "b"))
    assert done.returncode == 2
    assert "unknown strategy 'ray_random'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


@pytest.mark.parametrize("args, expected", [
    (["--seconds", "0"], "--seconds must be positive"),
    (["--rounds", "0"], "--rounds must be positive"),
    (["--num_workers", "-1"], "--num_workers must not be negative"),
    (["--warmup", "-1"], "--warmup must not be negative"),
    (["--device", "tpu"], "--device 'tpu': use cpu or cuda"),
    (["--cache", "lukewarm"], "--cache 'lukewarm': use cold | warm | both"),
    (["--consumer", "csr"], "--consumer 'csr': use sparse | dense"),
    (["--snapshot", "/x"], "snapshot is parquet: use --format parquet or both"),
    (["--format", "arrow"], "--format 'arrow': use h5ad | parquet | both"),
])
def test_bad_bench_flags_are_one_line_and_exit_code_2(tmp_path, args, expected):
    done = run_main("bench", "loaders", *args, "--out", str(tmp_path / "b"))
    assert done.returncode == 2 and expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


@pytest.mark.ray
def test_a_snapshot_in_object_storage_is_benched_cold(tahoe_dir, tmp_path, s3, monkeypatch,
                                                      ray_address):
    """The bench reads shards over HTTP from an S3-compatible server on loopback (moto):
    no page cache there, so every row is a cold read."""
    from pyarrow import fs

    from raycell.core.filesystems import s3_filesystem
    from raycell.tahoe.data.hf_layout import convert_h5ad

    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    snapshot = convert_h5ad(tahoe_dir, tmp_path / "snapshot", rows_per_shard=600)
    uri = s3.bucket("bench") + "/hf"
    fs.copy_files(str(snapshot), "bench/hf", destination_filesystem=s3_filesystem())
    out = tmp_path / "bench"
    done = run_main("bench", "loaders", "--format", "parquet", "--snapshot", uri, "--where",
                    "bare", "--seconds", "0.3", "--warmup", "0.05", "--batch_size", "16",
                    "--fetch_factor", "4", "--rounds", "1", "--strategies", "streaming",
                    "ray_streaming", "--out", out)
    assert done.returncode == 0, done.stderr[-2000:]
    bench = pd.read_csv(out / "bench.csv")
    assert set(bench["strategy"]) == {"streaming", "ray_streaming"}
    assert set(bench["format"]) == {"parquet"} and set(bench["cache"]) == {"cold"}
    assert (bench["cells_per_s"] > 0).all() and bench["resident_before"].isna().all()
    assert not (out / "snapshot").exists()  # read where it is, not converted
