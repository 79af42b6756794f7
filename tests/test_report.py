"""``raycell report``'s bad input: one clear line, exit 2, no page written."""

import json

import pandas as pd
import pytest

from raycell.tahoe.outputs.results import SUMMARY_COLUMNS
from tests.conftest import run_main


def _tahoe_folder(root, drop=None):
    root.mkdir()
    (root / "raycell.json").write_text(json.dumps({"workload": "tahoe"}))
    columns = [c for c in SUMMARY_COLUMNS if c != drop]
    pd.DataFrame([dict.fromkeys(columns, 0)]).to_csv(root / "summary.csv", index=False)
    return root


@pytest.mark.parametrize("make,culprit", [
    (lambda p: p.mkdir() or p, "holds no raycell results"),
    (lambda p: _tahoe_folder(p, drop="drug_macro_f1"), "lacks column 'drug_macro_f1'"),
    (lambda p: p, "is not a folder"),
    (lambda p: (p.mkdir(), (p / "raycell.json").write_text("{"))[0] or p, "is corrupt"),
])
def test_report_refuses_folders_without_results(tmp_path, make, culprit):
    folder = make(tmp_path / "results")
    out = tmp_path / "report.html"
    result = run_main("report", str(folder), "--out", str(out))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("raycell: error:") and culprit in lines[0]
    assert not out.exists()
