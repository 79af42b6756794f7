"""Shared fixtures: tiny in-format Tahoe plates written by the real generator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from raycell.chemoe.config import PdgrapherSpec
from raycell.chemoe.synthetic import write_pdgrapher
from raycell.tahoe.config import TahoeSpec
from raycell.tahoe.synthetic import write_tahoe

TINY = TahoeSpec(plates=3, cells_per_plate=900, genes=60, drugs=6, cell_lines=3,
                 sublibraries=2, seed=3)


@pytest.fixture(scope="session")
def tahoe_dir(tmp_path_factory) -> Path:
    return write_tahoe(tmp_path_factory.mktemp("tahoe"), TINY)


def tiny_config(tahoe_dir: Path, save_dir: Path, **overrides):
    from raycell.tahoe.config import load_tahoe_config

    base = {
        "data.h5ad_dir": str(tahoe_dir),
        "data.train_plates": [1, 2],
        "data.test_plates": [3],
        "output.save_dir": str(save_dir),
        "training.batch_size": 16,
        "scdataset.fetch_factor": 4,
        "scdataset.num_workers": 0,
    }
    return load_tahoe_config("default", {**base, **overrides})


TINY_PDG = PdgrapherSpec(cell_lines=["A549", "MCF7"], samples=150, genes=30, drugs=6, seed=2)


@pytest.fixture(scope="session")
def pdgrapher_dir(tmp_path_factory) -> Path:
    return write_pdgrapher(tmp_path_factory.mktemp("pdgrapher"), TINY_PDG)


def tiny_chemoe_config(save_dir: Path, **overrides):
    from raycell.chemoe.config import load_chemoe_config

    base = {
        "output.save_dir": str(save_dir),
        "grid.cell_lines": ["A549"],
        "model.embed_dim": 8,
        "model.hidden_dim": 16,
        "training.batch_size": 16,
        "training.epochs": 3,
        "training.eval_every": 2,
        "training.lr": 3e-3,
    }
    return load_chemoe_config("default", {**base, **overrides})


# The CLI as a user runs it: a subprocess, its exit code, its stderr.
def run_cli(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "raycell.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def assert_clean_error(result, culprit, save_dir):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("raycell: error:"), result.stderr
    assert culprit in lines[0]
    assert not save_dir.exists()
