"""Independent NumPy (float64) references for the attention layer tests.

The expected numbers come from the textbook formulas, written out in NumPy,
with the layer's own weights read back as arrays. The only thing taken from
`keras_attention` is the ALiBi slope table (`ops.alibi_slopes`), which
`tests/ops` checks on its own.
"""

import keras
import numpy as np


def to_np(x):
    """Any tensor (or array) as a float64 NumPy array."""
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


# --------------------------------------------------------------------------
# masks, as boolean (Tq, Tk) arrays; True = may attend
# --------------------------------------------------------------------------
def causal(tq, tk):
    # Top-left aligned: query i sees keys j <= i.
    return np.arange(tk)[None, :] <= np.arange(tq)[:, None]


def window(tq, tk, size, is_causal=False):
    # |i - j| < size, or 0 <= i - j < size when causal.
    d = np.arange(tq)[:, None] - np.arange(tk)[None, :]
    if is_causal:
        return (d >= 0) & (d < size)
    return np.abs(d) < size


# --------------------------------------------------------------------------
# positions
# --------------------------------------------------------------------------
def rope(x, max_wavelength=10000.0):
    """Rotate-half RoPE of `(batch, T, heads, dim)` at positions 0..T-1.

    Channel k (first half) and channel k + dim/2 form a pair rotated by
    theta = p * max_wavelength ** (-2k / dim).
    """
    x = np.asarray(x, dtype="float64")
    dim = x.shape[-1]
    half = dim // 2
    pos = np.arange(x.shape[1], dtype="float64")
    theta = pos[:, None] * max_wavelength ** (-2.0 * np.arange(half) / dim)
    cos = np.cos(theta)[None, :, None, :]
    sin = np.sin(theta)[None, :, None, :]
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def alibi(slopes, tq, tk):
    """`(1, heads, Tq, Tk)` bias `-slope_h * |i - j|`."""
    slopes = np.asarray(slopes, dtype="float64")
    d = np.abs(np.arange(tq)[:, None] - np.arange(tk)[None, :])
    return -slopes[None, :, None, None] * d[None, None]


# --------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------
def attention(q, k, v, allowed=None, scale=None, bias=None):
    """softmax(q k^T * scale + bias, masked) v, per head.

    Args:
        q: `(batch, Tq, heads, d)`.
        k: `(batch, Tk, kv_heads, d)`; query head h reads key/value head
            `h // (heads // kv_heads)`.
        v: `(batch, Tk, kv_heads, dv)`.
        allowed: boolean, broadcastable to `(batch, heads, Tq, Tk)`.
        scale: defaults to `1 / sqrt(d)`.
        bias: float, broadcastable to `(batch, heads, Tq, Tk)`.

    Returns:
        `(out (batch, Tq, heads, dv), weights (batch, heads, Tq, Tk))`; a row
        with no allowed key has zero weights and a zero output.
    """
    q, k, v = (np.asarray(t, dtype="float64") for t in (q, k, v))
    groups = q.shape[2] // k.shape[2]
    k = np.repeat(k, groups, axis=2)
    v = np.repeat(v, groups, axis=2)
    if scale is None:
        scale = 1.0 / np.sqrt(q.shape[-1])
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if bias is not None:
        logits = logits + bias
    if allowed is None:
        allowed = np.ones(logits.shape, bool)
    allowed = np.broadcast_to(np.asarray(allowed, bool), logits.shape)
    logits = np.where(allowed, logits, -np.inf)
    row_max = logits.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    p = np.exp(logits - row_max)  # exp(-inf) = 0 for hidden keys
    total = p.sum(axis=-1, keepdims=True)
    weights = p / np.where(total > 0, total, 1.0)
    return np.einsum("bhqk,bkhd->bqhd", weights, v), weights


def weights_of(layer):
    """The projection weights of a `BaseAttention` layer as float64 arrays."""
    names = ("query_dense", "key_dense", "value_dense", "output_dense")
    out = {}
    for name in names:
        dense = getattr(layer, name)
        out[name] = (
            to_np(dense.kernel),
            to_np(dense.bias) if dense.bias is not None else 0.0,
        )
    return out


def multi_head(
    layer,
    query,
    value,
    key=None,
    allowed=None,
    use_causal_mask=False,
    query_mask=None,
    value_mask=None,
    attend=None,
):
    """What a `BaseAttention`-shell layer should compute, in NumPy.

    Reads the layer's weights and its `position_encoding`, `window_size` and
    `rope_max_wavelength` (when present). `allowed` is an optional boolean
    attention mask `(batch, Tq, Tv)` (or per head, `(batch, heads, Tq, Tv)`);
    `query_mask`/`value_mask` are boolean `(batch, T)`.
    `attend(q, k, v, allowed)` replaces the softmax core (for shell
    subclasses). Returns `(output, weights)`.
    """
    key = value if key is None else key
    query, value, key = (
        np.asarray(t, dtype="float64") for t in (query, value, key)
    )
    w = weights_of(layer)
    q = (
        np.einsum("btc,chd->bthd", query, w["query_dense"][0])
        + w["query_dense"][1]
    )
    k = np.einsum("btc,chd->bthd", key, w["key_dense"][0]) + w["key_dense"][1]
    v = (
        np.einsum("btc,chd->bthd", value, w["value_dense"][0])
        + w["value_dense"][1]
    )
    b, tq, tk = query.shape[0], query.shape[1], value.shape[1]
    mask = np.ones((b, 1, tq, tk), bool)
    if allowed is not None:
        allowed = np.asarray(allowed, bool)
        mask = mask & (allowed if allowed.ndim == 4 else allowed[:, None])
    if value_mask is not None:
        mask &= np.asarray(value_mask, bool)[:, None, None, :]
    if use_causal_mask:
        mask &= causal(tq, tk)
    size = getattr(layer, "window_size", None)
    if size is not None:
        mask &= window(tq, tk, size, use_causal_mask)
    bias = None
    encoding = getattr(layer, "position_encoding", None)
    if encoding == "rope":
        q = rope(q, layer.rope_max_wavelength)
        k = rope(k, layer.rope_max_wavelength)
    elif encoding == "alibi":
        from keras_attention.ops import alibi_slopes  # the slopes table only

        bias = alibi(to_np(alibi_slopes(layer.num_heads)), tq, tk)
    if attend is None:
        heads, weights = attention(q, k, v, mask, bias=bias)
    else:
        heads, weights = attend(q, k, v, mask)
    out = np.einsum("bthd,hde->bte", heads, w["output_dense"][0])
    out = out + w["output_dense"][1]
    if query_mask is not None:
        keep = np.asarray(query_mask, bool)
        out = np.where(keep[:, :, None], out, 0.0)
        weights = np.where(keep[:, None, :, None], weights, 0.0)
    return out, weights
