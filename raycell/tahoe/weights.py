"""Sampling weights that balance (cell_line, drug) groups, damped for rare groups.

weight = n / (n_groups * (count + min_count_baseline)) for every cell of a group:
sklearn's "balanced" class weights with a constant added to each count, so a
30-cell group is upsampled but not so hard that the model memorises it.
"""

from __future__ import annotations

import numpy as np


def group_weights(codes: np.ndarray, min_count_baseline: int) -> np.ndarray:
    """Per-cell weights from (n, 2) cell-line/drug codes."""
    _, group, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    per_group = len(codes) / (len(counts) * (counts + min_count_baseline))
    return per_group[group.ravel()]
