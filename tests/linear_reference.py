"""NumPy (float64) reference of linear attention, by its quadratic form.

The definition, per head, written the slow way: the full matrix of kernel
values `A[i, j] = phi(q_i) . phi(k_j)`, zeroed where query `i` may not see
key `j`, each row divided by its sum plus `eps`, times the values:

    out_i = sum_j A[i, j] v_j / (sum_j A[i, j] + eps).

No chunks, no prefix sums, no stabilisers: nothing of the O(T) algorithm.
Shared by `tests/ops/test_linear.py` and
`tests/layers/test_linear_attention.py`.
"""

import numpy as np


def feature_map(x, kind, projection=None):
    """phi(x) on the last axis, float64.

    - `"elu"`: elu(x) + 1, i.e. x + 1 for x > 0 and exp(x) otherwise;
    - `"relu"`: max(x, 0);
    - `"favor"`: exp(w_r . x' - |x'|^2 / 2) / sqrt(m) for each row w_r of
      the `(m, d)` projection, with x' = x / d^(1/4) (so that
      E[phi(q) . phi(k)] = exp(q . k / sqrt(d)), the softmax kernel).
    """
    x = np.asarray(x, dtype="float64")
    if kind == "elu":
        return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind == "favor":
        w = np.asarray(projection, dtype="float64")
        x = x / x.shape[-1] ** 0.25
        logits = x @ w.T - 0.5 * np.sum(x * x, axis=-1, keepdims=True)
        return np.exp(logits) / np.sqrt(w.shape[0])
    raise ValueError(kind)


def causal(tq, tk):
    """`(Tq, Tk)`: query i sees keys j <= i (top-left aligned)."""
    return np.arange(tk)[None, :] <= np.arange(tq)[:, None]


def linear_attention(
    q, k, v, kind, projection=None, allowed=None, eps=1e-6, is_causal=False
):
    """Linear attention by its quadratic form.

    Args:
        q: `(batch, Tq, heads, d)`.
        k: `(batch, Tk, kv_heads, d)`; query head h reads key/value head
            `h // (heads // kv_heads)`.
        v: `(batch, Tk, kv_heads, dv)`.
        kind, projection: the feature map (see `feature_map`).
        allowed: boolean, broadcastable to `(batch, heads, Tq, Tk)`.
        eps: added to each row's sum.
        is_causal: also hide keys j > i.

    Returns:
        `(out (batch, Tq, heads, dv), weights (batch, heads, Tq, Tk))`.
    """
    q, k, v = (np.asarray(t, dtype="float64") for t in (q, k, v))
    groups = q.shape[2] // k.shape[2]
    k = np.repeat(k, groups, axis=2)
    v = np.repeat(v, groups, axis=2)
    a = np.einsum(
        "bqhm,bkhm->bhqk",
        feature_map(q, kind, projection),
        feature_map(k, kind, projection),
    )
    mask = np.ones(a.shape, bool)
    if allowed is not None:
        mask &= np.broadcast_to(np.asarray(allowed, bool), a.shape)
    if is_causal:
        mask &= causal(q.shape[1], k.shape[1])
    a = np.where(mask, a, 0.0)
    total = a.sum(axis=-1, keepdims=True) + eps
    weights = a / np.where(total > 0, total, 1.0)
    return np.einsum("bhqk,bkhd->bqhd", weights, v), weights
