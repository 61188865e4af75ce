"""Pieces of an attention score computation shared by every core.

Scores live in a grouped layout `(batch, kv_heads, groups, Tq, Tk)`, where
query head `kv * groups + g` reads key/value head `kv`. Masks and biases are
brought to rank 5 in the same layout by `group_heads`.
"""

import keras  # noqa: F401  (used by the docstring examples)
import numpy as np
from keras import ops

from keras_attention.ops.dropout import dropout as dropout_op

# Masked logits take the most negative finite float32: softmax runs in
# float32, and a finite value keeps `logit - row_max` free of `inf - inf`.
NEG = float(np.finfo("float32").min)


def static_or_dynamic(x, axis):
    """Static size of `axis` when known, else the dynamic one."""
    size = x.shape[axis]
    return size if size is not None else ops.shape(x)[axis]


def group_heads(x, kv_heads, groups):
    """Rank <= 4 `(b, h, tq, tk)` mask/bias -> rank 5 `(b, kv, g, tq, tk)`."""
    while len(x.shape) < 4:
        x = ops.expand_dims(x, 0)
    if x.shape[1] == 1:
        return ops.expand_dims(x, 2)
    dims = [static_or_dynamic(x, i) for i in range(4)]
    return ops.reshape(x, (dims[0], kv_heads, groups, dims[2], dims[3]))


def alibi(slopes5, query_pos, key_pos):
    """ALiBi bias `-slope * |i - j|`, shape `(1, kv, g, len(q), len(k))`."""
    distance = ops.cast(query_pos[:, None] - key_pos[None, :], "float32")
    return -slopes5 * ops.abs(distance)


def position_mask(
    query_pos, key_pos, *, is_causal=False, window_size=None, key_length=None
):
    """Which keys each query may see by position alone.

    Positions are compared by index (top-left aligned, like `is_causal` in
    `dot_product_attention`).

    Args:
        query_pos: int tensor `(..., Tq)` of query positions.
        key_pos: int tensor `(..., Tk)` of key positions; its leading axes
            broadcast against the query's (one row of keys per block of
            queries, say).
        is_causal: hide keys after the query.
        window_size: int or None; keep `|i - j| < window_size` (with
            `is_causal`, `0 <= i - j < window_size`).
        key_length: int or None; hide keys at `key_length` and beyond (the
            padding of the last block).

    Returns:
        Boolean `(..., Tq, Tk)` (axes that no condition depends on keep
        size 1), or `None` if nothing is hidden.

    Example:

    >>> m = position_mask(keras.ops.arange(3), keras.ops.arange(3),
    ...                   is_causal=True)
    >>> keras.ops.convert_to_numpy(m).astype(int).tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    q = query_pos[..., :, None]
    k = key_pos[..., None, :]
    allowed = []
    if is_causal:
        allowed.append(k <= q)
    if window_size is not None:
        if is_causal:
            allowed.append(q - k < window_size)
        else:
            allowed.append(ops.abs(q - k) < window_size)
    if key_length is not None:
        allowed.append(k < key_length)
    if not allowed:
        return None
    result = allowed[0]
    for condition in allowed[1:]:
        result = ops.logical_and(result, condition)
    return result


def hide_unseen(mask, *tensors):
    """Zeroes the key/value positions that `mask` hides from every query.

    Hidden keys get zero weight, but the weighted sum still multiplies
    their values by it, and `0 * nan` (or `0 * inf`) is `nan`: a non-finite
    value in padding would reach every output (and a non-finite key every
    gradient). A select keeps them out, and their gradients are zero.

    Args:
        mask: `None` or a boolean tensor broadcastable to
            `(batch, heads, Tq, Tk)`; `True` = may attend.
        *tensors: `(batch, Tk, ...)` keys and values (projected into heads
            or not).

    Returns:
        The tensors (a tuple, also for one), zero where no query of any
        head may attend.
    """
    if mask is None:
        return tensors
    mask = ops.cast(mask, "bool")
    while len(mask.shape) < 4:
        mask = ops.expand_dims(mask, 0)
    seen = ops.any(mask, axis=(1, 2))  # (b|1, Tk|1)
    hidden = []
    for x in tensors:
        keep = seen
        while len(keep.shape) < len(x.shape):
            keep = ops.expand_dims(keep, -1)
        hidden.append(ops.where(keep, x, 0.0))
    return tuple(hidden)


def both(a, b):
    """Logical AND of two optional boolean masks."""
    if a is None:
        return b
    if b is None:
        return a
    return ops.logical_and(a, b)


def finish_logits(logits, bias, slopes5, query_pos, key_pos, allowed):
    """Adds bias and ALiBi to float32 logits, then hides what is not allowed."""
    if bias is not None:
        logits = logits + ops.cast(bias, "float32")
    if slopes5 is not None:
        logits = logits + alibi(slopes5, query_pos, key_pos)
    if allowed is not None:
        logits = ops.where(allowed, logits, NEG)
    return logits


def row_max(x, axis=-1):
    """Maximum over `axis` (kept), `NEG` where the axis is empty.

    `ops.max` refuses an empty tensor; attention meets them with no keys
    (`Tk = 0`), no queries or an empty batch, where "no key" is the answer.
    """
    return ops.max(x, axis=axis, keepdims=True, initial=NEG)


def masked_softmax(logits, allowed=None, *, return_lse=False):
    """Softmax over the last axis of float32 `logits`, kept to `allowed`.

    Entries that are not allowed get zero weight whatever their logit, and a
    row with nothing allowed (or no entry at all) gets zeros, never NaN. The
    hand-written gradient, `w * (g - sum(w * g))` (plus `w * g_lse` for the
    log-sum-exp), keeps only the weights `w` for the backward pass: autodiff
    would also keep the exponentials and the unnormalised probabilities,
    each as large as the scores.

    Args:
        logits: float32 tensor, the scores of a row on its last axis.
        allowed: optional boolean tensor broadcastable to `logits`;
            `True` = may attend.
        return_lse: bool, also return the log-sum-exp of each row's allowed
            logits (what merging partial softmaxes needs).

    Returns:
        float32 weights shaped like `logits`; with `return_lse=True`, the
        tuple `(weights, lse)` where `lse` keeps the last axis with size 1
        and is `NEG` for rows with nothing allowed.

    Example:

    >>> w = masked_softmax(keras.ops.zeros((2, 3)),
    ...                    keras.ops.array([[True, True, False]] * 2))
    >>> keras.ops.convert_to_numpy(w).tolist()
    [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]
    """

    def forward(x):
        if allowed is not None:
            x = ops.where(allowed, x, NEG)
        shift = row_max(x)
        p = ops.exp(x - shift)
        if allowed is not None:
            p = ops.where(allowed, p, 0.0)
        total = ops.sum(p, axis=-1, keepdims=True)
        # A row with nothing allowed divides (and takes the log of) 1.
        seen = total > 0.0
        total = ops.where(seen, total, 1.0)
        weights = p / total

        def grad(*args, upstream=None):
            if upstream is not None:
                args = tuple(upstream) if return_lse else (upstream,)
            inner = ops.sum(weights * args[0], axis=-1, keepdims=True)
            result = weights * (args[0] - inner)
            if return_lse and args[1] is not None:
                result = result + weights * args[1]
            return result

        if not return_lse:
            return weights, grad
        lse = ops.where(seen, shift + ops.log(total), NEG)
        return (weights, lse), grad

    return ops.custom_gradient(forward)(logits)


def dropout_weights(weights, dropout):
    """Attention dropout: `dropout` is `None` or `(rate, seed)`."""
    if dropout is None:
        return weights
    rate, seed = dropout
    return dropout_op(weights, rate, seed=seed)
