"""Baselines: mean shift is the per-drug mean change; ridge chooses alpha on validation."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from raycell.chemoe.baselines import MeanShift, RidgeBaseline, identity


def test_identity_predicts_no_change():
    x = np.random.default_rng(0).random((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(identity(x), x)


def test_mean_shift_is_the_per_drug_mean_change_with_an_overall_fallback():
    rng = np.random.default_rng(0)
    diseased, treated = rng.random((60, 7)), rng.random((60, 7))
    drug = rng.choice(["a", "b", "c"], 60)
    model = MeanShift().fit(diseased, treated, drug)
    delta = pd.DataFrame(treated - diseased).assign(drug=drug)
    expected = delta.groupby("drug").mean()
    test = rng.random((3, 7))
    pred = model.predict(test, np.array(["b", "c", "unseen"]))
    np.testing.assert_allclose(pred[0], test[0] + expected.loc["b"], rtol=1e-6)
    np.testing.assert_allclose(pred[1], test[1] + expected.loc["c"], rtol=1e-6)
    np.testing.assert_allclose(pred[2], test[2] + (treated - diseased).mean(0), rtol=1e-6)


def test_ridge_picks_the_alpha_with_the_lowest_validation_error():
    rng = np.random.default_rng(1)
    n, genes, mol_dim = 200, 6, 3

    def part(m):
        d, mol = rng.random((m, genes)), rng.random((m, mol_dim))
        delta = mol @ np.ones((mol_dim, genes))  # the change comes from the drug
        return d, d + delta + rng.normal(0, 0.5, (m, genes)), mol

    train, val = part(n), part(n)
    alphas = [1e-3, 1.0, 1e4]
    model = RidgeBaseline(alphas).fit(train, val)
    x_val = np.hstack([val[0], val[2]])
    errors = {a: ((Ridge(alpha=a).fit(np.hstack([train[0], train[2]]), train[1] - train[0])
                   .predict(x_val) - (val[1] - val[0])) ** 2).mean() for a in alphas}
    assert model.alpha == min(errors, key=errors.get)
    assert model.val_mse == pytest.approx(errors)
    assert model.alpha != 1e4  # a huge penalty cannot fit the real signal
