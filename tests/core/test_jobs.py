"""Paths of a `ray job submit` run (core/jobs.py), without a cluster."""

import pytest

from raycell.cli import main
from raycell.core.errors import RaycellError
from raycell.core.jobs import JOB_ROOT, job_defaults, job_flag_path
from raycell.tahoe.config import load_tahoe_config


def test_a_relative_flag_path_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RaycellError, match="--save_dir out is relative"):
        job_flag_path("out", "save_dir", must_exist=False)


def test_a_path_inside_the_working_directory_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RaycellError, match="inside the job's working directory"):
        job_flag_path(str(tmp_path / "results"), "save_dir", must_exist=False)


def test_a_missing_input_is_refused_and_an_output_need_not_exist(tmp_path, monkeypatch):
    (tmp_path / "job").mkdir()
    monkeypatch.chdir(tmp_path / "job")
    with pytest.raises(RaycellError, match="does not exist on the node running the job"):
        job_flag_path(str(tmp_path / "plates"), "h5ad_dir", must_exist=True)
    assert job_flag_path(str(tmp_path / "new"), "save_dir", must_exist=False) == \
        str(tmp_path / "new")


def test_relative_defaults_move_under_the_job_root(tmp_path, monkeypatch):
    cfg = load_tahoe_config("demo")
    monkeypatch.setenv(JOB_ROOT, str(tmp_path))
    keys = {"output.save_dir": None, "data.synthetic.out_dir": "data.h5ad_dir"}
    moved = job_defaults(cfg, keys)
    assert moved == {"output.save_dir": str(tmp_path / "results/tahoe-demo"),
                     "data.synthetic.out_dir": str(tmp_path / "data/demo/tahoe")}
    # Given plates, the demo data's folder is unused: left as it is.
    with_plates = load_tahoe_config("demo", {"data.h5ad_dir": "/data/tahoe"})
    assert job_defaults(with_plates, keys) == {"output.save_dir": moved["output.save_dir"]}
    monkeypatch.setenv(JOB_ROOT, "relative/root")
    with pytest.raises(RaycellError, match="must be an absolute path"):
        job_defaults(cfg, {"output.save_dir": None})


def test_without_a_job_root_a_relative_default_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.delenv(JOB_ROOT, raising=False)
    assert main(["tahoe", "--config", "demo", "--all"], job=True) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "output.save_dir results/tahoe-demo is relative and RAYCELL_JOB_ROOT" in err[0]
