"""Top-k DE R2 and Pearson DE (docs/facts.md), vectorised over samples, checked against scipy."""

from __future__ import annotations

import numpy as np

DE_TOP_K = (20, 40, 80)


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair; NaN where either row is constant (as scipy's pearsonr)."""
    constant = (a == a[:, :1]).all(1) | (b == b[:, :1]).all(1)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    r = np.divide((a * b).sum(1), den, out=np.full(len(a), np.nan), where=~constant & (den > 0))
    return np.clip(r, -1.0, 1.0)


def _de_correlations(pred, treated, diseased, ks) -> dict[str, np.ndarray]:
    diseased = np.asarray(diseased, np.float64)
    delta = np.asarray(treated, np.float64) - diseased
    pred_delta = np.asarray(pred, np.float64) - diseased
    order = np.argsort(-np.abs(delta), axis=1, kind="stable")
    out = {}
    for k in ks:
        top = order[:, : min(k, delta.shape[1])]
        out[f"top{k}"] = _rowwise_pearson(np.take_along_axis(delta, top, 1),
                                          np.take_along_axis(pred_delta, top, 1))
    out["de"] = _rowwise_pearson(delta, pred_delta)
    return out


def de_scores(pred: np.ndarray, treated: np.ndarray, diseased: np.ndarray,
              ks: tuple[int, ...] = DE_TOP_K, chunk: int = 2048) -> dict[str, float]:
    """Top-k DE R2 and Pearson DE (docs/facts.md), vectorised over samples.

    delta = treated - diseased, predicted delta = pred - diseased. For each sample,
    r2_top{k} = pearson(delta[S], pred_delta[S])^2 over the k genes S of largest
    |delta| (ties: lower gene index first); pearson_de = pearson over all genes. Each
    is the mean over samples where neither side is constant (NaN if there are none);
    ``scored_*`` counts those samples. Rows go in chunks to bound memory.
    """
    parts = [_de_correlations(pred[i : i + chunk], treated[i : i + chunk],
                              diseased[i : i + chunk], ks)
             for i in range(0, len(pred), chunk)]
    r = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    out = {}
    for k in ks:
        out[f"r2_top{k}"] = _nanmean(r[f"top{k}"] ** 2)
        out[f"scored_top{k}"] = int(np.isfinite(r[f"top{k}"]).sum())
    out["pearson_de"] = _nanmean(r["de"])
    out["scored_de"] = int(np.isfinite(r["de"]).sum())
    return out


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
