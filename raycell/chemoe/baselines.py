"""Baselines for treated-expression prediction, scored by the same evaluator as CheMoE.

- identity: no change (treated = diseased);
- mean_shift: diseased + the mean training change of the sample's drug (one cell
  line per run; a drug unseen in training gets the mean change over all drugs);
- ridge: the change of every gene regressed (sklearn Ridge, one coefficient vector
  per gene) on the diseased profile and the drug's molecule features, alpha chosen
  on the validation split.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge


def identity(diseased: np.ndarray) -> np.ndarray:
    return np.array(diseased, np.float32, copy=True)


class MeanShift:
    def fit(self, diseased, treated, drug) -> MeanShift:
        delta = np.asarray(treated, np.float64) - diseased
        codes, self.drugs = _codes(drug)
        sums = np.zeros((len(self.drugs), delta.shape[1]))
        np.add.at(sums, codes, delta)
        self.shift = sums / np.bincount(codes, minlength=len(self.drugs))[:, None]
        self.overall = delta.mean(0)
        return self

    def predict(self, diseased, drug) -> np.ndarray:
        index = {d: i for i, d in enumerate(self.drugs)}
        shift = np.stack([self.shift[index[d]] if d in index else self.overall for d in drug])
        return (diseased + shift).astype(np.float32)


class RidgeBaseline:
    def __init__(self, alphas: list[float]):
        self.alphas = alphas

    @staticmethod
    def _features(diseased, mol) -> np.ndarray:
        return np.hstack([diseased, mol]).astype(np.float64)

    def fit(self, train: tuple, val: tuple) -> RidgeBaseline:
        """``train``/``val`` = (diseased, treated, mol features per sample)."""
        x, xv = self._features(train[0], train[2]), self._features(val[0], val[2])
        y, yv = train[1] - train[0], val[1] - val[0]
        self.val_mse = {}
        for alpha in self.alphas:  # fit on train; validation only picks alpha
            model = Ridge(alpha=alpha).fit(x, y)
            self.val_mse[alpha] = float(((model.predict(xv) - yv) ** 2).mean())
            if self.val_mse[alpha] == min(self.val_mse.values()):
                self.alpha, self.model = alpha, model
        return self

    def predict(self, diseased, mol) -> np.ndarray:
        return (diseased + self.model.predict(self._features(diseased, mol))).astype(np.float32)


def _codes(values) -> tuple[np.ndarray, list]:
    uniques, codes = np.unique(np.asarray(values, dtype=str), return_inverse=True)
    return codes, uniques.tolist()
