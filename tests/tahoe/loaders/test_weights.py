import numpy as np
import pandas as pd
import pytest
from scdataset import BlockWeightedSampling
from sklearn.utils.class_weight import compute_class_weight

from raycell.tahoe.loaders.weights import SortedWeightedSampling, group_weights


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


@pytest.mark.parametrize("n,block", [(1000, 16), (1003, 16), (5000, 1), (77, 100), (120_000, 16)])
@pytest.mark.parametrize("seed", [0, 7])
def test_sorted_draw_is_scdatasets_order(n, block, seed):
    """Index for index the order scdataset's weighted sampling gives for the same seed."""
    weights = group_weights(np.random.default_rng(n).integers(0, 9, (n, 2)), 30)
    ours = SortedWeightedSampling(block, weights).get_indices(range(n), seed=seed)
    theirs = BlockWeightedSampling(block_size=block, weights=weights, replace=True,
                                   total_size=n).get_indices(range(n), seed=seed)
    np.testing.assert_array_equal(ours, theirs)


def test_sorted_draw_continues_a_given_generator_as_scdataset_does():
    weights = np.random.default_rng(3).random(500) ** 4
    ours = SortedWeightedSampling(8, weights).get_indices(range(500), rng=np.random.default_rng(1))
    theirs = BlockWeightedSampling(block_size=8, weights=weights, total_size=500).get_indices(
        range(500), rng=np.random.default_rng(1))
    np.testing.assert_array_equal(ours, theirs)
    # The weights steer it: a group with 100x the weight is drawn far more often.
    skewed = np.r_[np.full(250, 100.0), np.ones(250)]
    drawn = SortedWeightedSampling(1, skewed).get_indices(range(500), seed=0)
    assert (drawn < 250).mean() > 0.95


def test_sorted_draw_refuses_a_collection_of_another_length():
    with pytest.raises(ValueError, match="same length"):
        SortedWeightedSampling(4, np.ones(10)).get_indices(range(11), seed=0)
