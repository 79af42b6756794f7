"""raycell.load_tahoe_results: a results folder's tables, or one clear error."""

import pandas as pd
import pytest

import raycell
from raycell.tahoe.outputs.results import CURVE_COLUMNS, SUMMARY_COLUMNS


def write_tables(folder, drop=None):
    summary = pd.DataFrame([dict.fromkeys(SUMMARY_COLUMNS, 0)] * 2).assign(
        strategy=["random", "streaming"], run_key=["000123", "abc"])
    pd.DataFrame([dict.fromkeys(CURVE_COLUMNS, 0)]).to_csv(folder / "curves.csv", index=False)
    summary.drop(columns=[drop] if drop else []).to_csv(folder / "summary.csv", index=False)


def test_a_results_folder_loads_with_run_keys_as_text(tmp_path):
    write_tables(tmp_path)
    results = raycell.load_tahoe_results(tmp_path)
    assert list(results.summary["strategy"]) == ["random", "streaming"]
    assert list(results.summary["run_key"]) == ["000123", "abc"]  # not read as a number
    assert len(results.curves) == 1


def test_a_folder_without_results_is_one_clear_error(tmp_path):
    with pytest.raises(raycell.RaycellError, match="holds no Tahoe results .summary.csv"):
        raycell.load_tahoe_results(tmp_path)


def test_a_summary_missing_a_column_names_it(tmp_path):
    write_tables(tmp_path, drop="drug_macro_f1")
    with pytest.raises(raycell.RaycellError, match="lacks column 'drug_macro_f1'"):
        raycell.load_tahoe_results(tmp_path)
