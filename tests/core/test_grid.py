"""The grid runner's refusals, at the command line: a results folder of the other
workload, or one holding a run of the same name made with other settings. One line,
exit 2, nothing written (the folder is left as it was)."""

import json

import pandas as pd

from tests.conftest import run_main


def _listing(folder):
    return sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def _assert_refused(result, culprit, folder, before):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("raycell: error:"), result.stderr
    assert culprit in lines[0], lines[0]
    assert _listing(folder) == before


def test_a_save_dir_holding_a_run_of_other_settings(tahoe_dir, tmp_path):
    save = tmp_path / "out"
    save.mkdir()
    pd.DataFrame([{"strategy": "random", "seed": 0, "run_key": "0123456789ab",
                   "run_name": "random-seed0"}]).to_csv(save / "summary.csv", index=False)
    (save / "raycell.json").write_text(json.dumps({"workload": "tahoe"}))
    before = _listing(save)
    done = run_main("tahoe", "--h5ad_dir", str(tahoe_dir), "--train_plates", "1",
                   "--test_plates", "3", "--strategy", "random", "--save_dir", str(save))
    _assert_refused(done, "holds random-seed0 from other settings (run key 0123456789ab", save,
                    before)
    assert "--restart" in done.stderr


def test_a_save_dir_of_the_other_workload(pdgrapher_dir, tmp_path):
    save = tmp_path / "out"
    save.mkdir()
    (save / "raycell.json").write_text(json.dumps({"workload": "tahoe"}))
    before = _listing(save)
    done = run_main("chemoe", "--data", str(pdgrapher_dir), "--cell_line", "A549",
                   "--model", "identity", "--save_dir", str(save))
    _assert_refused(done, "holds tahoe results: choose another folder for chemoe", save, before)
