"""Scaled dot-product attention: exact and memory-efficient (chunked).

Tensors follow `keras.ops.dot_product_attention`: `(batch, seq, heads, dim)`.
Query heads may be a multiple of key/value heads (grouped-query attention);
query head `i` then reads key/value head `i // (heads // kv_heads)`.

Two implementations compute the same function:

- `"exact"` materialises the `(batch, heads, Tq, Tk)` scores and is
  differentiated by autodiff (the softmax by its own gradient, which keeps
  only the weights: `scores.masked_softmax`). It is the only one that can
  return the weights or apply attention dropout.
- `"chunked"` (`keras_attention.ops.chunked`) cuts queries and keys into
  tiles and walks them with an online softmax; its hand-written backward pass
  recomputes each tile from the saved log-sum-exp, so forward and backward
  memory grow linearly with the sequence length.

`attend_with_scores` runs the exact core on precomputed scores, for layers
whose score function is learned (additive, target attention).
"""

import math

from keras import backend
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.ops import scores as sc
from keras_attention.ops.as_written import as_written
from keras_attention.ops.chunked import chunked_attention

IMPLEMENTATIONS = ("exact", "chunked")
DEFAULT_BLOCK_SIZE = 512
# The backward pass's tiles: at most this many queries and keys (it ran
# fastest with 256 on the 2-core CPU, where the forward pass prefers 512-1024).
DEFAULT_BACKWARD_BLOCK_SIZE = 256
# `implementation=None` switches to the chunked core when a head's score
# matrix would hold at least this many entries.
AUTO_CHUNKED_MIN_SCORES = 1024 * 1024


# --------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------
FUNCTION = "dot_product_attention"


def _is_float(dtype):
    return backend.standardize_dtype(dtype).startswith(("float", "bfloat"))


def _broadcast_dims(argument, x, target):
    """Left-pads `x`'s static shape to rank 4 and checks it broadcasts."""
    shape = tuple(x.shape)
    if len(shape) > 4:
        raise argument_error(
            FUNCTION,
            argument,
            "must have rank <= 4 and broadcast to (batch, heads, Tq, Tk) "
            f"= {target}",
            f"{argument}.shape={shape}",
        )
    padded = (1,) * (4 - len(shape)) + shape
    for have, want in zip(padded, target):
        if have not in (1, None) and want is not None and have != want:
            raise argument_error(
                FUNCTION,
                argument,
                "must broadcast to (batch, heads, Tq, Tk) "
                f"= {target}",
                f"{argument}.shape={shape}",
            )
    return padded


def _validate(query, key, value, mask, bias, alibi_slopes, implementation):
    for name, x in (("query", query), ("key", key), ("value", value)):
        if len(x.shape) != 4:
            raise argument_error(
                FUNCTION,
                name,
                "must have rank 4: (batch, seq, heads, head_dim)",
                f"{name}.shape={tuple(x.shape)}",
            )
    b, tq, h, d = query.shape
    bk, tk, hk, dk = key.shape
    bv, tv, hv, _ = value.shape
    if d is not None and dk is not None and d != dk:
        raise argument_error(
            FUNCTION,
            "key",
            f"must have the query's head_dim ({d}) as its last dimension",
            f"query.shape={tuple(query.shape)}, key.shape={tuple(key.shape)}",
        )
    if tk is not None and tv is not None and tk != tv:
        raise argument_error(
            FUNCTION,
            "value",
            f"must have as many positions as key ({tk})",
            f"key.shape={tuple(key.shape)}, value.shape={tuple(value.shape)}",
        )
    if hk is not None and hv is not None and hk != hv:
        raise argument_error(
            FUNCTION,
            "value",
            f"must have as many heads as key ({hk})",
            f"key.shape={tuple(key.shape)}, value.shape={tuple(value.shape)}",
        )
    for other, name in ((bk, "key"), (bv, "value")):
        if b is not None and other is not None and other != b:
            raise argument_error(
                FUNCTION,
                name,
                f"must have the query's batch size ({b})",
                f"query.shape={tuple(query.shape)}, "
                f"{name}.shape={tuple((key if name == 'key' else value).shape)}",
            )
    if h is not None and hk is not None and h % hk != 0:
        raise argument_error(
            FUNCTION,
            "key",
            "must have a number of heads that divides the query's "
            f"({h} query heads)",
            f"key heads={hk}",
        )
    target = (b, h, tq, tk)
    if mask is not None:
        if backend.standardize_dtype(mask.dtype) != "bool":
            raise argument_error(
                FUNCTION,
                "mask",
                "must be boolean (True = may attend)",
                f"mask.dtype={mask.dtype}",
            )
        _broadcast_dims("mask", mask, target)
    if bias is not None:
        if not _is_float(bias.dtype):
            raise argument_error(FUNCTION, "bias", "must be a float tensor", f"bias.dtype={bias.dtype}")
        _broadcast_dims("bias", bias, target)
    if alibi_slopes is not None:
        if tuple(alibi_slopes.shape) not in ((h,), (None,)):
            raise argument_error(
                FUNCTION,
                "alibi_slopes",
                f"must have shape (heads,) = ({h},)",
                f"alibi_slopes.shape={tuple(alibi_slopes.shape)}",
            )
    if implementation is not None and implementation not in IMPLEMENTATIONS:
        raise argument_error(
            FUNCTION,
            "implementation",
            f"must be None or one of {IMPLEMENTATIONS}",
            f"implementation={implementation!r}",
        )


# --------------------------------------------------------------------------
# exact
# --------------------------------------------------------------------------
def _exact(q, k, v, mask5, bias5, slopes5, is_causal, window_size, scale, dropout):
    b, tq, h, d = (sc.static_or_dynamic(q, i) for i in range(4))
    tk, kv_heads = sc.static_or_dynamic(k, 1), k.shape[2]
    groups = h // kv_heads
    # Scores in float32 whatever the input dtype: float16 scores overflow
    # (to inf, then NaN) once `|q . k| * scale` exceeds 65504.
    qg = ops.reshape(
        ops.cast(q, "float32") * scale, (b, tq, kv_heads, groups, d)
    )
    logits = ops.einsum("bqhgd,bkhd->bhgqk", qg, ops.cast(k, "float32"))
    qpos = ops.arange(tq, dtype="int32")
    kpos = ops.arange(tk, dtype="int32")
    allowed = sc.both(
        mask5,
        sc.position_mask(qpos, kpos, is_causal=is_causal, window_size=window_size),
    )
    logits = sc.finish_logits(logits, bias5, slopes5, qpos, kpos, None)
    weights = sc.masked_softmax(logits, allowed)
    attended = sc.dropout_weights(weights, dropout)
    out = ops.einsum("bhgqk,bkhd->bqhgd", attended, ops.cast(v, "float32"))
    out = ops.reshape(out, (b, tq, h, sc.static_or_dynamic(v, 3)))
    weights = ops.reshape(weights, (b, h, tq, tk))
    return out, weights


# --------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------
@as_written
def dot_product_attention(
    query,
    key,
    value,
    *,
    mask=None,
    bias=None,
    is_causal=False,
    scale=None,
    dropout_rate=0.0,
    seed=None,
    training=False,
    return_scores=False,
    implementation=None,
    alibi_slopes=None,
    window_size=None,
    block_size=None,
    backward_block_size=None,
):
    """Scaled dot-product attention with masks, bias, GQA and chunking.

    Computes `softmax(query @ key^T * scale + bias, masked) @ value` per head.
    Masked scores are removed before the softmax; a query with no key left to
    attend to gets an all-zero output row and all-zero weights (never NaN).
    Keys and values at positions that `mask` hides from every query never
    enter a product, so padding may hold anything, NaN and inf included.
    Both implementations compute the scores, the softmax and the weighted
    sum of the values in float32 for every input dtype (float16 scores
    overflow as soon as `|q . k| * scale` exceeds 65504), and cast the
    results back to the query's dtype.

    Args:
        query: tensor `(batch, Tq, heads, head_dim)`.
        key: tensor `(batch, Tk, kv_heads, head_dim)`; `heads` must be a
            multiple of `kv_heads` (grouped-query attention; `kv_heads=1` is
            multi-query attention).
        value: tensor `(batch, Tk, kv_heads, value_dim)`.
        mask: optional boolean tensor broadcastable to
            `(batch, heads, Tq, Tk)`; `True` means "may attend". Build it with
            `causal_mask`, `padding_mask`, `segment_mask`, ... and `&`/`|`.
        bias: optional float tensor broadcastable to `(batch, heads, Tq, Tk)`,
            added to the scaled scores (relative position biases, ...).
        is_causal: bool, hide keys `j > i` from query `i` (top-left aligned,
            like `keras.ops.dot_product_attention`). Composes with `mask` and
            `bias`.
        scale: float multiplier of the scores; defaults to
            `1 / sqrt(head_dim)`.
        dropout_rate: float in `[0, 1)`, dropout on the attention weights
            while `training` (exact implementation only).
        seed: int or `keras.random.SeedGenerator` for the dropout.
        training: bool, whether dropout is active.
        return_scores: bool, also return the attention weights.
        implementation: `None`, `"exact"` or `"chunked"`. `None` picks
            `"chunked"` when the score matrix of a head would have at least
            `AUTO_CHUNKED_MIN_SCORES` entries, the lengths are static, and
            neither weights nor dropout are needed; `"exact"` otherwise.
        alibi_slopes: optional float tensor `(heads,)`; adds the ALiBi bias
            `-slope * |i - j|`, computed block by block (never materialised
            as a full bias tensor).
        window_size: optional positive int: query `i` sees key `j` only
            when `|i - j| < window_size` (with `is_causal`, when
            `0 <= i - j < window_size`). Computed from positions, never
            materialised; the chunked core skips the tiles outside the
            window, so its cost is O(T * window_size).
        block_size: int, queries and keys per tile for `"chunked"`
            (default 512).
        backward_block_size: int, queries and keys per tile of the
            `"chunked"` backward pass (default `min(block_size, 256)`); the
            two passes tile independently.

    Returns:
        `output` of shape `(batch, Tq, heads, value_dim)` in the query's
        dtype; with `return_scores=True`, the tuple `(output, weights)` where
        `weights` has shape `(batch, heads, Tq, Tk)`. Empty inputs (`batch`,
        `Tq` or `Tk` of 0) give empty results, or zeros when only `Tk` is 0
        (nothing to attend to).

    Example:

    >>> q = keras.random.normal((2, 16, 8, 32))
    >>> kv = keras.random.normal((2, 16, 2, 32))      # 2 key/value heads
    >>> out = dot_product_attention(q, kv, kv, is_causal=True)
    >>> tuple(out.shape)
    (2, 16, 8, 32)

    Reference:
        - Vaswani et al., 2017, "Attention Is All You Need".
        - Rabe & Staats, 2021, "Self-attention Does Not Need O(n^2) Memory".
        - Dao et al., 2022, "FlashAttention".
        - Ainslie et al., 2023, "GQA".
    """
    query = ops.convert_to_tensor(query)
    key = ops.convert_to_tensor(key)
    value = ops.convert_to_tensor(value)
    if mask is not None:
        mask = ops.convert_to_tensor(mask)
    if bias is not None:
        bias = ops.convert_to_tensor(bias)
    if alibi_slopes is not None:
        alibi_slopes = ops.convert_to_tensor(alibi_slopes, "float32")
    _validate(query, key, value, mask, bias, alibi_slopes, implementation)
    if not 0.0 <= float(dropout_rate) < 1.0:
        raise argument_error(FUNCTION, "dropout_rate", "must be in [0, 1)", f"dropout_rate={dropout_rate}")
    check_positive_int(FUNCTION, "block_size", block_size, allow_none=True)
    check_positive_int(FUNCTION, "backward_block_size", backward_block_size, allow_none=True)
    check_positive_int(FUNCTION, "window_size", window_size, allow_none=True)

    heads, kv_heads = query.shape[2], key.shape[2]
    if heads is None or kv_heads is None:
        raise argument_error(
            FUNCTION,
            "query",
            "must have a static number of heads",
            f"query.shape={tuple(query.shape)}",
        )
    groups = heads // kv_heads
    head_dim = query.shape[-1] if query.shape[-1] is not None else None
    if scale is None:
        if head_dim is None:
            raise argument_error(FUNCTION, "query", "needs a static head_dim when scale is None", tuple(query.shape))
        scale = 1.0 / math.sqrt(head_dim)
    scale = float(scale)

    # Padding may hold anything (NaN, inf): keep it out of the products.
    key, value = sc.hide_unseen(mask, key, value)
    mask5 = None if mask is None else sc.group_heads(mask, kv_heads, groups)
    bias5 = None if bias is None else sc.group_heads(bias, kv_heads, groups)
    slopes5 = None
    if alibi_slopes is not None:
        slopes5 = ops.reshape(alibi_slopes, (1, kv_heads, groups, 1, 1))

    use_dropout = bool(training) and float(dropout_rate) > 0.0
    tq, tk = query.shape[1], key.shape[1]
    if implementation is None:
        long_enough = tq is not None and tk is not None and tq * tk >= AUTO_CHUNKED_MIN_SCORES
        implementation = (
            "chunked" if long_enough and not return_scores and not use_dropout else "exact"
        )
    if implementation == "chunked":
        if return_scores:
            raise argument_error(
                FUNCTION,
                "return_scores",
                "is not available with implementation='chunked' (it never "
                "holds the full weights); use implementation='exact'",
                "return_scores=True",
            )
        if use_dropout:
            raise argument_error(
                FUNCTION,
                "dropout_rate",
                "must be 0 with implementation='chunked' while training; use "
                "implementation='exact' for attention dropout",
                f"dropout_rate={dropout_rate}",
            )
        if tq is None or tk is None:
            raise argument_error(
                FUNCTION,
                "implementation",
                "'chunked' needs static sequence lengths",
                f"query.shape={tuple(query.shape)}, key.shape={tuple(key.shape)}",
            )
    if 0 in (query.shape[0], tq, tk):
        # No batch, query or key: empty results, or zeros when only the keys
        # are missing (nothing to attend to). Nothing to tile or multiply
        # (TensorFlow's einsum also mishandles some empty grouped shapes).
        b = sc.static_or_dynamic(query, 0)
        dv = sc.static_or_dynamic(value, 3)
        out = ops.zeros((b, tq, heads, dv), query.dtype)
        if return_scores:
            return out, ops.zeros((b, heads, tq, tk), query.dtype)
        return out
    if implementation == "chunked":
        return chunked_attention(
            query,
            key,
            value,
            mask5=mask5,
            bias5=bias5,
            slopes5=slopes5,
            is_causal=is_causal,
            window_size=window_size,
            scale=scale,
            block_size=block_size or DEFAULT_BLOCK_SIZE,
            backward_block_size=backward_block_size
            or min(block_size or DEFAULT_BLOCK_SIZE, DEFAULT_BACKWARD_BLOCK_SIZE),
        )

    dropout = (float(dropout_rate), seed) if use_dropout else None
    out, weights = _exact(
        query,
        key,
        value,
        mask5,
        bias5,
        slopes5,
        is_causal,
        window_size,
        scale,
        dropout,
    )
    out = ops.cast(out, query.dtype)
    if return_scores:
        return out, ops.cast(weights, query.dtype)
    return out


@as_written
def attend_with_scores(
    logits,
    value,
    mask=None,
    use_causal_mask=False,
    dropout_rate=0.0,
    seed=None,
    training=False,
    return_scores=False,
):
    """Masked softmax of precomputed `logits` applied to `value`, one head.

    Runs the exact core of `dot_product_attention` with all-zero queries
    and keys and `logits` as its additive bias, so a learned score function
    gets the package's masking rules (float32 softmax; a query with nothing
    to attend to gets zeros, never NaN), causal masking and attention
    dropout without a second softmax implementation.

    Args:
        logits: float `(batch, Tq, Tv)` scores (cast to float32).
        value: `(batch, Tv, dv)`.
        mask: optional boolean, broadcastable to `(batch, 1, Tq, Tv)`.
        use_causal_mask: bool, hide keys after the query.
        dropout_rate: float in `[0, 1)`, dropout on the weights while
            `training`.
        seed: int or `keras.random.SeedGenerator` for the dropout.
        training: bool, whether dropout is active.
        return_scores: also return the `(batch, Tq, Tv)` weights.

    Returns:
        `(batch, Tq, dv)` in `value`'s dtype, and the weights on request.

    Example:

    >>> logits = keras.random.normal((2, 3, 5))
    >>> value = keras.random.normal((2, 5, 4))
    >>> out, weights = attend_with_scores(logits, value, return_scores=True)
    >>> tuple(out.shape), tuple(weights.shape)
    ((2, 3, 4), (2, 3, 5))
    """
    # (batch, T, 1, 1), with the heads axis static for the core (and any
    # of the sizes possibly 0).
    batch, tq, tk = (sc.static_or_dynamic(logits, i) for i in range(3))
    result = dot_product_attention(
        ops.zeros((batch, tq, 1, 1), value.dtype),
        ops.zeros((batch, tk, 1, 1), value.dtype),
        value[:, :, None, :],
        mask=mask,
        bias=ops.cast(logits, "float32")[:, None],
        is_causal=use_causal_mask,
        scale=1.0,
        dropout_rate=dropout_rate,
        seed=seed,
        training=training,
        return_scores=return_scores,
        implementation="exact",
    )
    if return_scores:
        out, weights = result
        return ops.squeeze(out, 2), ops.squeeze(weights, 1)
    return ops.squeeze(result, 2)
