import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from raycell.metrics import classification_scores, confusion


@pytest.mark.parametrize("seed", range(5))
def test_scores_match_sklearn_over_the_full_label_space(seed):
    rng = np.random.default_rng(seed)
    n_classes = 12
    # Classes 10 and 11 never occur; class 9 is never predicted: zero_division must give 0.
    y_true = rng.integers(0, 10, 500)
    y_pred = np.where(rng.random(500) < 0.6, y_true, rng.integers(0, 9, 500))
    got = classification_scores(confusion(y_true, y_pred, n_classes))
    labels = list(range(n_classes))
    assert got["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert got["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    )
    assert got["weighted_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
    )


def test_confusion_matrices_add_up_across_shards():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    whole = confusion(y, p, 5)
    parts = confusion(y[:100], p[:100], 5) + confusion(y[100:], p[100:], 5)
    np.testing.assert_array_equal(whole, parts)
    assert whole.sum() == 300
