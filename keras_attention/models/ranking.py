"""Ranking and rating metrics of recommenders (NumPy, whole-catalogue)."""

import numpy as np


def target_ranks(scores, targets, exclude_padding=True, seed=0):
    """The 0-based rank of each target item among all items by score.

    Ties are broken at random (each tied item is ahead of the target with
    probability 1/2), so a scorer with many equal scores, such as
    popularity, is neither favoured nor penalised.

    Args:
        scores: float array `(n, num_items + 1)`, higher is better.
        targets: int array `(n,)` of item ids.
        exclude_padding: bool, leave column 0 (padding) out of the ranking.
        seed: int, the tie-breaking seed.

    Returns:
        int64 array `(n,)`.
    """
    scores = np.asarray(scores, dtype="float64")
    targets = np.asarray(targets).astype("int64")
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(
            "`target_ranks`: `scores` must be (n, num_items + 1) and `targets` (n,). "
            f"Received: scores.shape={scores.shape}, targets.shape={targets.shape}"
        )
    if len(targets) and (targets.min() < 0 or targets.max() >= scores.shape[1]):
        raise ValueError(
            f"`target_ranks`: `targets` must be in [0, {scores.shape[1]}). "
            f"Received: min {targets.min()}, max {targets.max()}"
        )
    if exclude_padding:
        scores = scores.copy()
        scores[:, 0] = -np.inf
    target_scores = scores[np.arange(len(targets)), targets][:, None]
    greater = np.sum(scores > target_scores, axis=1)
    ties = np.sum(scores == target_scores, axis=1) - 1
    return greater + np.random.default_rng(seed).binomial(ties, 0.5)


def ranking_metrics(scores, targets, k=10, seed=0):
    """Hit rate and NDCG at `k` of a whole-catalogue ranking.

    `HR@k` is the share of targets ranked in the top `k`; `NDCG@k` credits a
    target at 0-based rank `r < k` with `1 / log2(r + 2)` (one relevant item
    per example, so the ideal DCG is 1).

    Args:
        scores: float array `(n, num_items + 1)` (column 0 is padding).
        targets: int array `(n,)`.
        k: int, the cut-off.
        seed: int, the tie-breaking seed (see `target_ranks`).

    Returns:
        dict with `"hr@k"` and `"ndcg@k"` (floats) for the given `k`.

    Example:

    >>> ranking_metrics([[0.0, 3.0, 2.0, 1.0]], [2], k=1)
    {'hr@1': 0.0, 'ndcg@1': 0.0}
    >>> ranking_metrics([[0.0, 3.0, 2.0, 1.0]], [2], k=2)["ndcg@2"]
    0.6309...
    """
    ranks = target_ranks(scores, targets, seed=seed)
    hit = ranks < k
    gain = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    return {f"hr@{k}": float(np.mean(hit)), f"ndcg@{k}": float(np.mean(gain))}


def rating_metrics(predicted, ratings):
    """RMSE and MAE of predicted ratings.

    Returns:
        dict with `"rmse"` and `"mae"`.
    """
    error = np.asarray(predicted, "float64") - np.asarray(ratings, "float64")
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}
