"""Classification metrics from confusion matrices.

Confusion matrices add up across batches and across DDP ranks (one all-reduce), so
evaluation never gathers per-cell predictions. The formulas follow sklearn's
``f1_score`` with ``zero_division=0``.
"""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts, rows true, columns predicted."""
    flat = np.asarray(y_true, np.int64) * n_classes + np.asarray(y_pred, np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_scores(cm: np.ndarray) -> dict[str, float]:
    """Accuracy, macro F1, weighted F1 and macro F1 over all classes of a confusion matrix.

    ``macro_f1`` and ``weighted_f1`` have sklearn's default semantics (``labels=None``,
    the seed's): the mean over the classes present in y_true or y_pred, so a test set
    that lacks some classes scores as sklearn and the seed's published table do.
    ``macro_f1_all_classes`` averages over the whole label space (sklearn given
    ``labels=range(n)``): a class never predicted and never present scores 0.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    seen = denom > 0  # in y_true or in y_pred
    total = cm.sum()
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
        "macro_f1_all_classes": float(f1.mean()) if f1.size else 0.0,
    }
