import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from raycell.tahoe.model.metrics import classification_scores, confusion


def _sklearn_scores(y_true, y_pred, n_classes):
    """The reference: sklearn's defaults (the seed's) and the whole label space."""
    labels = list(range(n_classes))
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "macro_f1": f1_score(y_true, y_pred, average="macro", zero_division=0),
        "weighted_f1": f1_score(y_true, y_pred, average="weighted", zero_division=0),
        "macro_f1_all_classes": f1_score(y_true, y_pred, labels=labels, average="macro",
                                         zero_division=0),
    }


@pytest.mark.parametrize("seed", range(5))
def test_scores_match_sklearn_when_the_test_set_lacks_classes(seed):
    rng = np.random.default_rng(seed)
    n_classes = 12
    # Classes 10 and 11 are neither in the test set nor predicted; class 9 is in the test
    # set but never predicted (zero_division must give 0).
    y_true = rng.integers(0, 10, 500)
    y_pred = np.where(rng.random(500) < 0.6, y_true, rng.integers(0, 9, 500))
    got = classification_scores(confusion(y_true, y_pred, n_classes))
    want = _sklearn_scores(y_true, y_pred, n_classes)
    assert got == pytest.approx(want)
    # The two macro averages differ here: sklearn's counts 10 classes, the label space 12.
    assert got["macro_f1"] == pytest.approx(got["macro_f1_all_classes"] * 12 / 10)


@pytest.mark.parametrize("seed", range(5))
def test_scores_match_sklearn_when_predictions_name_classes_absent_from_the_test_set(seed):
    rng = np.random.default_rng(seed)
    n_classes = 15
    # The test set holds classes 0..7; the model also predicts 8..11, which are not in
    # it (each such class has F1 0 and counts in sklearn's macro mean); 12..14 are unseen.
    y_true = rng.integers(0, 8, 400)
    y_pred = np.where(rng.random(400) < 0.5, y_true, rng.integers(0, 12, 400))
    assert set(np.unique(y_pred)) - set(np.unique(y_true))
    got = classification_scores(confusion(y_true, y_pred, n_classes))
    assert got == pytest.approx(_sklearn_scores(y_true, y_pred, n_classes))


def test_scores_of_a_perfect_prediction_on_half_the_label_space():
    y = np.repeat(np.arange(4), 10)
    got = classification_scores(confusion(y, y, 8))
    assert got["macro_f1"] == 1.0 and got["weighted_f1"] == 1.0
    assert got["macro_f1_all_classes"] == 0.5


def test_confusion_matrices_add_up_across_shards():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    whole = confusion(y, p, 5)
    parts = confusion(y[:100], p[:100], 5) + confusion(y[100:], p[100:], 5)
    np.testing.assert_array_equal(whole, parts)
    assert whole.sum() == 300
