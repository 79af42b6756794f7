"""The report's table per strategy: mean and sample standard deviation over seeds."""

import numpy as np
import pandas as pd

from raycell.tahoe.data.labels import TASKS
from raycell.tahoe.outputs.report import strategy_table


def test_the_strategy_table_gives_mean_and_sd_over_seeds_in_run_order():
    rng = np.random.default_rng(0)
    runs = pd.DataFrame({"strategy": ["random", "streaming", "random", "random"],
                         "seed": [0, 0, 1, 2], "train_seconds": rng.uniform(1, 9, 4),
                         "cells_per_s": rng.uniform(1e3, 9e3, 4),
                         "startup_seconds": rng.uniform(0, 1, 4),
                         **{f"{t}_macro_f1": rng.uniform(0, 1, 4) for t in TASKS}})
    table = strategy_table(runs).set_index("strategy")
    assert list(table.index) == ["random", "streaming"]  # the order they ran in
    f1 = runs.loc[runs["strategy"] == "random", "drug_macro_f1"].to_numpy()
    assert table.at["random", "seeds"] == 3
    assert table.at["random", "drug F1"] == f"{f1.mean():.3f} ± {np.std(f1, ddof=1):.3f}"
    one = runs.loc[runs["strategy"] == "streaming", "drug_macro_f1"].iloc[0]
    assert table.at["streaming", "drug F1"] == f"{one:.3f}"  # one seed: no spread
