import numpy as np
import pytest


def _reference_de(pred, treated, diseased, k):
    """docs/facts.md's definition, one sample at a time, with scipy's pearsonr."""
    import warnings

    from scipy.stats import pearsonr

    r2, pearson = [], []
    for p, t, d in zip(pred, treated, diseased, strict=True):
        delta, pred_delta = t - d, p - d
        top = np.argsort(-np.abs(delta), kind="stable")[:k]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns and returns NaN for constant input
            r_top = pearsonr(delta[top], pred_delta[top])[0]
            r_all = pearsonr(delta, pred_delta)[0]
        if np.isfinite(r_top):
            r2.append(r_top**2)
        if np.isfinite(r_all):
            pearson.append(r_all)
    return np.mean(r2), np.mean(pearson), len(r2)


def test_de_scores_match_a_per_sample_scipy_reference_with_constant_samples():
    from raycell.chemoe.metrics import de_scores

    rng = np.random.default_rng(0)
    n, genes = 50, 300
    diseased = rng.random((n, genes))
    treated = diseased + rng.normal(0, 0.1, (n, genes))
    pred = diseased + 0.5 * (treated - diseased) + rng.normal(0, 0.1, (n, genes))
    diseased[3], pred[3] = 0.5, 0.75  # constant predicted change (exact in binary): skipped
    pred[7] = diseased[7]  # identity: skipped
    treated[11] = diseased[11]  # no true change: skipped
    diseased[12], treated[12] = 0.25, 0.5  # constant true change: skipped
    pred[20] = diseased[20] + 0.3  # constant only up to rounding: scored, as scipy does
    scores = de_scores(pred, treated, diseased)
    for k in (20, 40, 80):
        r2, pearson, scored = _reference_de(pred, treated, diseased, k)
        assert scores[f"r2_top{k}"] == pytest.approx(r2, rel=1e-9)
        assert scores[f"scored_top{k}"] == scored == n - 4
    assert scores["pearson_de"] == pytest.approx(_reference_de(pred, treated, diseased, 20)[1],
                                                 rel=1e-9)


def test_de_scores_are_nan_when_nothing_changes_and_chunking_changes_nothing():
    from raycell.chemoe.metrics import de_scores

    rng = np.random.default_rng(1)
    diseased, treated = rng.random((30, 100)), rng.random((30, 100))
    assert np.isnan(de_scores(diseased.copy(), treated, diseased)["r2_top20"])
    pred = treated + rng.normal(0, 0.2, treated.shape)
    whole, chunked = de_scores(pred, treated, diseased), de_scores(pred, treated, diseased, chunk=7)
    assert whole == pytest.approx(chunked, rel=1e-12)
    assert 0 < whole["r2_top20"] < 1
