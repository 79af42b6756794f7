import numpy as np
import pandas as pd
import pytest
from sklearn.utils.class_weight import compute_class_weight

from raycell.tahoe.weights import group_weights


def test_group_weights_follow_the_damped_balanced_formula():
    rng = np.random.default_rng(0)
    codes = np.stack([rng.integers(0, 3, 2000), rng.integers(0, 7, 2000)], axis=1)
    got = group_weights(codes, min_count_baseline=1000)
    frame = pd.DataFrame(codes, columns=["line", "drug"])
    counts = frame.groupby(["line", "drug"])["line"].transform("size").to_numpy()
    n_groups = frame.drop_duplicates().shape[0]
    np.testing.assert_allclose(got, len(codes) / (n_groups * (counts + 1000)))


def test_without_baseline_they_are_sklearn_balanced_weights():
    rng = np.random.default_rng(1)
    codes = np.stack([rng.integers(0, 2, 500), rng.integers(0, 4, 500)], axis=1)
    group = codes[:, 0] * 4 + codes[:, 1]
    classes = np.unique(group)
    ref = compute_class_weight("balanced", classes=classes, y=group)
    expected = ref[np.searchsorted(classes, group)]
    np.testing.assert_allclose(group_weights(codes, 0), expected)


def test_rare_groups_are_upsampled_but_damped():
    codes = np.array([[0, 0]] * 990 + [[0, 1]] * 10)
    w = group_weights(codes, 1000)
    rare, common = w[-1], w[0]
    assert rare > common
    assert rare / common == pytest.approx((990 + 1000) / (10 + 1000))
