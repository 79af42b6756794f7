"""Self-contained pages: embedded PNGs, escaped tables, whole-or-nothing writes."""

import matplotlib.pyplot as plt
import pandas as pd

from raycell.core.html import Section, figure, page, table, text, write_page
from tests.report_html import PNG, column, read_report


def test_a_page_holds_its_tables_and_figures_and_fetches_nothing(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    frame = pd.DataFrame({"strategy": ["<b>x</b>", "y"], "cells_per_s": [1234.5, float("nan")]})
    sections = [Section("plot", figure(fig, "a line") + text("a & b")),
                Section("rows", table(frame, {"cells_per_s": "{:,.0f}"}))]
    path = write_page(tmp_path / "sub" / "r.html", page("title", "sub", sections))
    report = read_report(path)
    assert report.headings == ["plot", "rows"]
    assert len(report.images) == 1 and report.images[0].startswith(PNG)
    assert report.outside == []
    (rows,) = report.tables
    assert column(rows, "strategy") == ["<b>x</b>", "y"]  # escaped: shown as text, not markup
    assert column(rows, "cells_per_s") == ["1,234", ""]
    assert not list(tmp_path.glob("sub/*.tmp"))
