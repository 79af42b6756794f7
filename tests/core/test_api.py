"""The public API a notebook calls validates what the CLI validates, before writing."""

import doctest

import pytest

import raycell
from raycell import RaycellError


def test_the_public_api_names():
    for name in ("run_tahoe", "run_chemoe", "load_tahoe_config", "load_chemoe_config",
                 "load_tahoe_results", "load_chemoe_results", "bench_loaders", "bench_train",
                 "bench_chemoe"):
        assert callable(getattr(raycell, name))
        assert "Parameters" in getattr(raycell, name).__doc__  # numpy-style docstrings


def test_the_package_docstring_examples_run():
    assert doctest.testmod(raycell, raise_on_error=False).failed == 0


@pytest.mark.parametrize(("strategies", "message"), [
    (["shuffle_everything"], "unknown strategy 'shuffle_everything'"),
    ([], "choose a strategy"),
])
def test_run_tahoe_refuses_what_the_cli_refuses(tmp_path, strategies, message):
    cfg = raycell.load_tahoe_config("demo", {"output.save_dir": str(tmp_path / "out")})
    with pytest.raises(RaycellError, match=message):
        raycell.run_tahoe(cfg, strategies)
    assert not (tmp_path / "out").exists()


def test_run_tahoe_refuses_a_save_dir_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("")
    cfg = raycell.load_tahoe_config("demo", {"output.save_dir": str(tmp_path / "taken")})
    with pytest.raises(RaycellError, match="exists and is not a folder"):
        raycell.run_tahoe(cfg, ["random"])


def test_run_chemoe_refuses_a_grid_without_cell_lines(tmp_path, pdgrapher_dir):
    cfg = raycell.load_chemoe_config("default", {"data.dir": str(pdgrapher_dir),
                                                 "output.save_dir": str(tmp_path / "out")})
    with pytest.raises(RaycellError, match="choose one or more cell lines"):
        raycell.run_chemoe(cfg)
    assert not (tmp_path / "out").exists()
