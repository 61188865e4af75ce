"""Scaled dot-product attention: exact and memory-efficient (chunked).

Tensors follow `keras.ops.dot_product_attention`: `(batch, seq, heads, dim)`.
Query heads may be a multiple of key/value heads (grouped-query attention);
query head `i` then reads key/value head `i // (heads // kv_heads)`.

Two implementations compute the same function:

- `"exact"` materialises the `(batch, heads, Tq, Tk)` scores and is
  differentiated by autodiff. It is the only one that can return the weights
  or apply attention dropout.
- `"chunked"` walks the keys and values one block at a time, keeping a running
  maximum, a running normaliser and a running output per query (the online
  softmax of Milakov & Gimelshein, 2018, as used by FlashAttention). Its
  backward pass is written by hand and recomputes each block's scores from the
  saved log-sum-exp instead of storing them, so forward and backward memory
  grow linearly with the sequence length.
"""

import math

import numpy as np

from keras import backend
from keras import ops
from keras import random

IMPLEMENTATIONS = ("exact", "chunked")
DEFAULT_BLOCK_SIZE = 512
# `implementation=None` switches to the chunked core when a head's score
# matrix would hold at least this many entries.
AUTO_CHUNKED_MIN_SCORES = 1024 * 1024


# --------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------
def _fail(argument, expected, received):
    raise ValueError(
        f"`dot_product_attention`: `{argument}` {expected}. "
        f"Received: {received}"
    )


def _is_float(dtype):
    return backend.standardize_dtype(dtype).startswith(("float", "bfloat"))


def _broadcast_dims(argument, x, target):
    """Left-pads `x`'s static shape to rank 4 and checks it broadcasts."""
    shape = tuple(x.shape)
    if len(shape) > 4:
        _fail(
            argument,
            "must have rank <= 4 and broadcast to (batch, heads, Tq, Tk) "
            f"= {target}",
            f"{argument}.shape={shape}",
        )
    padded = (1,) * (4 - len(shape)) + shape
    for have, want in zip(padded, target):
        if have not in (1, None) and want is not None and have != want:
            _fail(
                argument,
                "must broadcast to (batch, heads, Tq, Tk) "
                f"= {target}",
                f"{argument}.shape={shape}",
            )
    return padded


def _validate(query, key, value, mask, bias, alibi_slopes, implementation):
    for name, x in (("query", query), ("key", key), ("value", value)):
        if len(x.shape) != 4:
            _fail(
                name,
                "must have rank 4: (batch, seq, heads, head_dim)",
                f"{name}.shape={tuple(x.shape)}",
            )
    b, tq, h, d = query.shape
    bk, tk, hk, dk = key.shape
    bv, tv, hv, _ = value.shape
    if d is not None and dk is not None and d != dk:
        _fail(
            "key",
            f"must have the query's head_dim ({d}) as its last dimension",
            f"query.shape={tuple(query.shape)}, key.shape={tuple(key.shape)}",
        )
    if tk is not None and tv is not None and tk != tv:
        _fail(
            "value",
            f"must have as many positions as key ({tk})",
            f"key.shape={tuple(key.shape)}, value.shape={tuple(value.shape)}",
        )
    if hk is not None and hv is not None and hk != hv:
        _fail(
            "value",
            f"must have as many heads as key ({hk})",
            f"key.shape={tuple(key.shape)}, value.shape={tuple(value.shape)}",
        )
    for other, name in ((bk, "key"), (bv, "value")):
        if b is not None and other is not None and other != b:
            _fail(
                name,
                f"must have the query's batch size ({b})",
                f"query.shape={tuple(query.shape)}, "
                f"{name}.shape={tuple((key if name == 'key' else value).shape)}",
            )
    if h is not None and hk is not None and h % hk != 0:
        _fail(
            "key",
            "must have a number of heads that divides the query's "
            f"({h} query heads)",
            f"key heads={hk}",
        )
    target = (b, h, tq, tk)
    if mask is not None:
        if backend.standardize_dtype(mask.dtype) != "bool":
            _fail(
                "mask",
                "must be boolean (True = may attend)",
                f"mask.dtype={mask.dtype}",
            )
        _broadcast_dims("mask", mask, target)
    if bias is not None:
        if not _is_float(bias.dtype):
            _fail("bias", "must be a float tensor", f"bias.dtype={bias.dtype}")
        _broadcast_dims("bias", bias, target)
    if alibi_slopes is not None:
        if tuple(alibi_slopes.shape) not in ((h,), (None,)):
            _fail(
                "alibi_slopes",
                f"must have shape (heads,) = ({h},)",
                f"alibi_slopes.shape={tuple(alibi_slopes.shape)}",
            )
    if implementation is not None and implementation not in IMPLEMENTATIONS:
        _fail(
            "implementation",
            f"must be None or one of {IMPLEMENTATIONS}",
            f"implementation={implementation!r}",
        )


# --------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------
def _dim(x, axis):
    """Static size of `axis` when known, else the dynamic one."""
    static = x.shape[axis]
    return static if static is not None else ops.shape(x)[axis]


def _group(x, kv_heads, groups):
    """Rank-4 `(b, h, tq, tk)` mask/bias -> rank 5 `(b, kv, g, tq, tk)`."""
    while len(x.shape) < 4:
        x = ops.expand_dims(x, 0)
    if x.shape[1] == 1:
        return ops.expand_dims(x, 2)
    dims = _dims(x)
    return ops.reshape(x, (dims[0], kv_heads, groups, dims[2], dims[3]))


def _dims(x):
    return [_dim(x, i) for i in range(len(x.shape))]


def _neg_limit(dtype):
    """Most negative finite value of `dtype` (masked logits)."""
    return float(np.finfo(dtype).min)


def _alibi(slopes5, query_pos, key_pos):
    """ALiBi bias `-slope * |i - j|` for query/key position vectors."""
    distance = ops.abs(
        ops.cast(query_pos[:, None] - key_pos[None, :], "float32")
    )
    return -slopes5 * distance


# --------------------------------------------------------------------------
# exact
# --------------------------------------------------------------------------
def _exact(q, k, v, mask5, bias5, slopes5, is_causal, scale, dropout):
    b, tq, h, d = _dims(q)
    tk, kv_heads = _dim(k, 1), k.shape[2]
    groups = h // kv_heads
    qg = ops.reshape(q * ops.cast(scale, q.dtype), (b, tq, kv_heads, groups, d))
    logits = ops.einsum("bqhgd,bkhd->bhgqk", qg, k)
    logits = ops.cast(logits, "float32")
    if bias5 is not None:
        logits = logits + ops.cast(bias5, "float32")
    qpos = ops.arange(tq, dtype="int32")
    kpos = ops.arange(tk, dtype="int32")
    if slopes5 is not None:
        logits = logits + _alibi(slopes5, qpos, kpos)
    allowed = mask5
    if is_causal:
        causal = kpos[None, :] <= qpos[:, None]
        allowed = causal if allowed is None else ops.logical_and(allowed, causal)
    if allowed is not None:
        logits = ops.where(allowed, logits, _neg_limit("float32"))
    row_max = ops.max(logits, axis=-1, keepdims=True)
    p = ops.exp(logits - row_max)
    if allowed is not None:
        p = ops.where(allowed, p, 0.0)
    total = ops.sum(p, axis=-1, keepdims=True)
    weights = p / ops.where(total > 0.0, total, 1.0)
    attended = weights
    if dropout is not None:
        rate, seed = dropout
        attended = random.dropout(weights, rate, seed=seed)
    out = ops.einsum("bhgqk,bkhd->bqhgd", ops.cast(attended, v.dtype), v)
    out = ops.reshape(out, (b, tq, h, _dim(v, 3)))
    weights = ops.reshape(weights, (b, h, tq, tk))
    return out, weights


# --------------------------------------------------------------------------
# chunked (online softmax, linear memory forward and backward)
# --------------------------------------------------------------------------
def _blocked(x, axis, blocks, block, pad_value):
    """Pads `axis` to `blocks * block` and moves the block index to front."""
    size = x.shape[axis]
    pad = blocks * block - size
    if pad:
        widths = [(0, 0)] * len(x.shape)
        widths[axis] = (0, pad)
        x = ops.pad(x, widths, constant_values=pad_value)
    dims = _dims(x)
    x = ops.reshape(x, dims[:axis] + [blocks, block] + dims[axis + 1 :])
    return ops.moveaxis(x, axis, 0)


def _chunked(q, k, v, mask5, bias5, slopes5, is_causal, scale, block_size):
    """Chunked attention core; see the module docstring."""
    in_dtype = q.dtype
    b, tq, h, d = _dims(q)
    tk, kv_heads, dv = k.shape[1], k.shape[2], v.shape[3]
    groups = h // kv_heads
    block = min(block_size, tk)
    blocks = -(-tk // block)
    neg = _neg_limit("float32")

    # Layout: q (b, kv, g, tq, d); key/value blocks (n, b, kv, block, d).
    # Reshapes name every size but the batch: the gradient function is also
    # traced on its own (SavedModel export), where the batch is unknown.
    def to_q_layout(x, last):
        x = ops.reshape(ops.cast(x, "float32"), (-1, tq, kv_heads, groups, last))
        return ops.transpose(x, (0, 2, 3, 1, 4))

    def from_q_layout(x, last):
        x = ops.transpose(x, (0, 3, 1, 2, 4))
        return ops.reshape(x, (-1, tq, h, last))

    def kv_blocks(x):
        x = ops.transpose(ops.cast(x, "float32"), (0, 2, 1, 3))
        return _blocked(x, 2, blocks, block, 0.0)

    def from_kv_blocks(x, last):
        # (n, b, kv, block, d) -> (b, tk, kv, d)
        x = ops.transpose(x, (1, 0, 3, 2, 4))
        x = ops.reshape(x, (-1, blocks * block, kv_heads, last))
        return x[:, :tk]

    key_pos = ops.reshape(ops.arange(blocks * block, dtype="int32"), (blocks, block))
    query_pos = ops.arange(tq, dtype="int32")
    padded = blocks * block != tk

    def keyed(x):
        """Mask/bias operand: per-block slices if it spans keys, else as is."""
        if x is None or x.shape[-1] == 1:
            return x, False
        return x, True

    mask_src, mask_blocked = keyed(mask5)
    if mask_blocked:
        mask_src = _blocked(mask_src, 4, blocks, block, False)

    def block_logits(qs, j, k_j, bias_j):
        s = ops.einsum("bhgqd,bhkd->bhgqk", qs, k_j)
        if bias_j is not None:
            s = s + bias_j
        kpos = key_pos[j]
        if slopes5 is not None:
            s = s + _alibi(slopes5, query_pos, kpos)
        allowed = None
        if mask_src is not None:
            allowed = mask_src[j] if mask_blocked else mask_src
        conditions = []
        if is_causal:
            conditions.append(kpos[None, :] <= query_pos[:, None])
        if padded:
            conditions.append((kpos < tk)[None, :])
        for c in conditions:
            allowed = c if allowed is None else ops.logical_and(allowed, c)
        if allowed is not None:
            s = ops.where(allowed, s, neg)
        return s, allowed

    def core(q_in, k_in, v_in, *bias_in):
        qs = to_q_layout(q_in, d) * scale
        kb = kv_blocks(k_in)
        vb = kv_blocks(v_in)
        bias_blocked = False
        bias_src = None
        if bias_in:
            bias_src, bias_blocked = keyed(ops.cast(bias_in[0], "float32"))
            if bias_blocked:
                bias_src = _blocked(bias_src, 4, blocks, block, 0.0)

        def bias_for(j):
            if bias_src is None:
                return None
            return bias_src[j] if bias_blocked else bias_src

        zeros = ops.zeros_like(qs[..., 0])
        init = (
            zeros + neg,
            zeros,
            ops.repeat(zeros[..., None], dv, axis=-1),
        )

        def forward_step(j, carry):
            m, l, acc = carry
            s, allowed = block_logits(qs, j, kb[j], bias_for(j))
            m_new = ops.maximum(m, ops.max(s, axis=-1))
            alpha = ops.exp(m - m_new)
            p = ops.exp(s - m_new[..., None])
            if allowed is not None:
                p = ops.where(allowed, p, 0.0)
            l = l * alpha + ops.sum(p, axis=-1)
            acc = acc * alpha[..., None] + ops.einsum(
                "bhgqk,bhkd->bhgqd", p, vb[j]
            )
            return m_new, l, acc

        m, l, acc = ops.fori_loop(0, blocks, forward_step, init)
        has_keys = l > 0.0
        safe_l = ops.where(has_keys, l, 1.0)
        out = acc / safe_l[..., None]
        # Log-sum-exp of each row; rows with no visible key never use it.
        lse = ops.where(has_keys, m + ops.log(safe_l), 0.0)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            do = to_q_layout(upstream, dv)
            delta = ops.sum(do * out, axis=-1)
            init = (ops.zeros_like(qs), ops.zeros_like(kb), ops.zeros_like(vb))
            if bias_src is not None:
                init = init + (ops.zeros_like(bias_src),)

            def backward_step(j, carry):
                dq, dk, dvv = carry[:3]
                k_j, v_j = kb[j], vb[j]
                s, allowed = block_logits(qs, j, k_j, bias_for(j))
                p = ops.exp(s - lse[..., None])
                if allowed is not None:
                    p = ops.where(allowed, p, 0.0)
                dv_j = ops.einsum("bhgqk,bhgqd->bhkd", p, do)
                dp = ops.einsum("bhgqd,bhkd->bhgqk", do, v_j)
                ds = p * (dp - delta[..., None])
                dq = dq + ops.einsum("bhgqk,bhkd->bhgqd", ds, k_j)
                dk_j = ops.einsum("bhgqk,bhgqd->bhkd", ds, qs)
                dk = _write_block(dk, j, dk_j)
                dvv = _write_block(dvv, j, dv_j)
                new = (dq, dk, dvv)
                if bias_src is not None:
                    db = carry[3]
                    ds_b = _reduce_to(ds, bias_src.shape[1:] if bias_blocked else bias_src.shape)
                    if bias_blocked:
                        db = _write_block(db, j, ds_b)
                    else:
                        db = db + ds_b
                    new = new + (db,)
                return new

            result = ops.fori_loop(0, blocks, backward_step, init)
            dq = from_q_layout(result[0] * scale, d)
            grads = [
                ops.cast(dq, q_in.dtype),
                ops.cast(from_kv_blocks(result[1], d), k_in.dtype),
                ops.cast(from_kv_blocks(result[2], dv), v_in.dtype),
            ]
            if bias_in:
                db = result[3]
                if bias_blocked:
                    db = ops.moveaxis(db, 0, 4)
                    lead = [-1 if n is None else n for n in db.shape[:4]]
                    db = ops.reshape(db, lead + [blocks * block])[..., :tk]
                grads.append(ops.cast(db, bias_in[0].dtype))
            return tuple(grads)

        return from_q_layout(out, dv), grad

    return ops.custom_gradient(core), in_dtype


def _write_block(buffer, j, block):
    """`buffer[j] = block` for a loop index `j` (in place under XLA)."""
    zero = ops.zeros((), "int32")
    start = ops.stack([ops.cast(j, "int32")] + [zero] * len(block.shape))
    return ops.slice_update(buffer, start, block[None])


def _reduce_to(x, shape):
    """Sums `x` over the axes where `shape` has size 1 (undo broadcasting)."""
    axes = [
        i
        for i, (have, want) in enumerate(zip(x.shape, shape))
        if want == 1 and have != 1
    ]
    return ops.sum(x, axis=axes, keepdims=True) if axes else x


# --------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------
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
    block_size=None,
):
    """Scaled dot-product attention with masks, bias, GQA and chunking.

    Computes `softmax(query @ key^T * scale + bias, masked) @ value` per head.
    Masked scores are removed before the softmax; a query with no key left to
    attend to gets an all-zero output row and all-zero weights (never NaN).
    The softmax is computed in float32 for every input dtype.

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
        block_size: int, keys per block for `"chunked"` (default 512).

    Returns:
        `output` of shape `(batch, Tq, heads, value_dim)` in the query's
        dtype; with `return_scores=True`, the tuple `(output, weights)` where
        `weights` has shape `(batch, heads, Tq, Tk)`.

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
        _fail("dropout_rate", "must be in [0, 1)", f"dropout_rate={dropout_rate}")
    if block_size is not None and (
        isinstance(block_size, bool)
        or not isinstance(block_size, int)
        or block_size < 1
    ):
        _fail("block_size", "must be a positive int", f"block_size={block_size!r}")

    heads, kv_heads = query.shape[2], key.shape[2]
    if heads is None or kv_heads is None:
        _fail(
            "query",
            "must have a static number of heads",
            f"query.shape={tuple(query.shape)}",
        )
    groups = heads // kv_heads
    head_dim = query.shape[-1] if query.shape[-1] is not None else None
    if scale is None:
        if head_dim is None:
            _fail("query", "needs a static head_dim when scale is None", tuple(query.shape))
        scale = 1.0 / math.sqrt(head_dim)
    scale = float(scale)

    mask5 = None if mask is None else _group(mask, kv_heads, groups)
    bias5 = None if bias is None else _group(bias, kv_heads, groups)
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
            _fail(
                "return_scores",
                "is not available with implementation='chunked' (it never "
                "holds the full weights); use implementation='exact'",
                "return_scores=True",
            )
        if use_dropout:
            _fail(
                "dropout_rate",
                "must be 0 with implementation='chunked' while training; use "
                "implementation='exact' for attention dropout",
                f"dropout_rate={dropout_rate}",
            )
        if tq is None or tk is None:
            _fail(
                "implementation",
                "'chunked' needs static sequence lengths",
                f"query.shape={tuple(query.shape)}, key.shape={tuple(key.shape)}",
            )
        core, dtype = _chunked(
            query,
            key,
            value,
            mask5,
            bias5,
            slopes5,
            is_causal,
            scale,
            block_size or DEFAULT_BLOCK_SIZE,
        )
        args = (query, key, value) + (() if bias is None else (bias5,))
        return ops.cast(core(*args), dtype)

    dropout = (float(dropout_rate), seed) if use_dropout else None
    out, weights = _exact(
        query, key, value, mask5, bias5, slopes5, is_causal, scale, dropout
    )
    out = ops.cast(out, query.dtype)
    if return_scores:
        return out, ops.cast(weights, query.dtype)
    return out
