"""Sequence-parallel exact attention: per-shard partials and their merge.

The keys and values of an attention problem are cut along the sequence into
shards. Each shard `s` on its own gives a *partial* result for every query
`i`: the output normalised within the shard and the log-sum-exp of the
shard's scores,

    lse_s[i] = log sum_{j in s, visible} exp(z_ij)
    out_s[i] = sum_{j in s, visible} exp(z_ij - lse_s[i]) v_j

where `z_ij = scale * q_i . k_j` (float32). The softmax over all keys is
recovered exactly from the partials (the algebra behind ring attention and
the online softmax):

    L[i]   = log sum_s exp(lse_s[i])
    out[i] = sum_s exp(lse_s[i] - L[i]) out_s[i]

A query that sees nothing in a shard gets `out_s = 0` and the finite sentinel
`lse_s = NEG` (the most negative float32) rather than `-inf`, so no
`inf - inf` arises; a query that sees nothing in any shard gets a zero output
(never NaN), like `keras_attention.ops.dot_product_attention`.

Everything here is written with `keras.ops` only. Where the shards run is the
caller's business: `sequence_parallel_attention` takes a `placement`
callable returning a context manager per shard (the layer
`keras_attention.layers.DistributedAttention` passes `tf.device` scopes).
"""

import contextlib
import math

from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.ops import scores as sc
from keras_attention.ops.as_written import as_written
from keras_attention.ops.dropout import dropout
from keras_attention.ops.tiling import ceil_div
from keras_attention.ops.tiling import pad_axis

# Sentinel log-sum-exp of a query that sees no key of a shard.
NEG = sc.NEG
# Any lse at or below this is treated as "saw nothing" (real lse values are
# at least the largest visible logit, far above it).
_SEEN_THRESHOLD = NEG / 2




def _default_scale(function, query, scale):
    if scale is not None:
        return float(scale)
    if query.shape[-1] is None:
        raise argument_error(
            function,
            "query",
            "needs a static head_dim when scale is None",
            f"query.shape={tuple(query.shape)}",
        )
    return 1.0 / math.sqrt(query.shape[-1])


@as_written
def partial_attention(
    query,
    key,
    value,
    *,
    mask=None,
    is_causal=False,
    key_offset=0,
    key_length=None,
    scale=None,
    dropout_rate=0.0,
    seed=None,
    training=False,
):
    """Attention of all queries over one key/value shard, with its lse.

    Args:
        query: `(batch, Tq, heads, head_dim)`.
        key: `(batch, Ts, kv_heads, head_dim)`, the shard's keys; `heads`
            must be a multiple of `kv_heads` (grouped-query attention).
        value: `(batch, Ts, kv_heads, value_dim)`.
        mask: optional boolean broadcastable to `(batch, heads, Tq, Ts)`
            (the shard's columns of the full mask); `True` = may attend.
        is_causal: bool, hide keys after the query. Positions are global:
            query `i` sees shard key `j` when `key_offset + j <= i`
            (top-left aligned, like `dot_product_attention`).
        key_offset: int (or scalar int tensor), global position of the
            shard's first key.
        key_length: optional int (or scalar tensor): keys at global positions
            `>= key_length` are padding and never attended.
        scale: score multiplier; defaults to `1 / sqrt(head_dim)`.
        dropout_rate: float in `[0, 1)`: dropout on the within-shard
            probabilities while `training`. Since the merge weights are
            per-query constants, this is dropout on the full attention
            weights after merging.
        seed: int or `keras.random.SeedGenerator` for the dropout.
        training: bool, whether dropout is active.

    Returns:
        `(output, lse)`: `output` float32 `(batch, Tq, heads, value_dim)`,
        normalised within the shard (zero for queries that see nothing in
        it); `lse` float32 `(batch, Tq, heads)`, the log-sum-exp of the
        visible scores, or `NEG` where a query sees nothing. An empty shard
        (`Ts == 0`) gives zeros and `NEG`.

    Example:

    >>> q = keras.random.normal((2, 6, 4, 8))
    >>> kv = keras.random.normal((2, 3, 2, 8))
    >>> out, lse = partial_attention(q, kv, kv, is_causal=True, key_offset=3)
    >>> tuple(out.shape), tuple(lse.shape)
    ((2, 6, 4, 8), (2, 6, 4))
    """
    query = ops.convert_to_tensor(query)
    key = ops.convert_to_tensor(key)
    value = ops.convert_to_tensor(value)
    for name, x in (("query", query), ("key", key), ("value", value)):
        if len(x.shape) != 4:
            raise argument_error(
                "partial_attention",
                name,
                "must have rank 4: (batch, seq, heads, head_dim)",
                f"{name}.shape={tuple(x.shape)}",
            )
    heads, kv_heads = query.shape[2], key.shape[2]
    if heads is None or kv_heads is None or heads % kv_heads:
        raise argument_error(
            "partial_attention",
            "key",
            "must have a static number of heads dividing the query's",
            f"query.shape={tuple(query.shape)}, key.shape={tuple(key.shape)}",
        )
    groups = heads // kv_heads
    scale = _default_scale("partial_attention", query, scale)
    b, tq, _, d = (sc.static_or_dynamic(query, i) for i in range(4))
    ts = sc.static_or_dynamic(key, 1)
    dv = sc.static_or_dynamic(value, 3)

    if isinstance(ts, int) and ts == 0:
        # An empty shard sees nothing (and `max` of nothing is undefined).
        return (
            ops.zeros((b, tq, heads, dv), "float32"),
            ops.full((b, tq, heads), NEG, "float32"),
        )
    # Float32 scores: float16 ones overflow once |q . k| * scale > 65504.
    qg = ops.reshape(
        ops.cast(query, "float32") * scale, (b, tq, kv_heads, groups, d)
    )
    logits = ops.einsum("bqhgd,bkhd->bhgqk", qg, ops.cast(key, "float32"))
    qpos = ops.arange(tq, dtype="int32")
    kpos = ops.cast(key_offset, "int32") + ops.arange(ts, dtype="int32")
    allowed = sc.position_mask(
        qpos, kpos, is_causal=is_causal, key_length=key_length
    )
    if mask is not None:
        mask = ops.cast(ops.convert_to_tensor(mask), "bool")
        allowed = sc.both(sc.group_heads(mask, kv_heads, groups), allowed)
        # Padding may hold anything (NaN, inf): keep it out of the products.
        key, value = sc.hide_unseen(mask, key, value)
    weights, lse = sc.masked_softmax(logits, allowed, return_lse=True)
    if training and dropout_rate:
        weights = dropout(weights, float(dropout_rate), seed=seed)
    out = ops.einsum(
        "bhgqk,bkhd->bqhgd", weights, ops.cast(value, "float32")
    )
    out = ops.reshape(out, (b, tq, heads, dv))
    # (b, kv, g, tq, 1) -> (b, tq, heads)
    lse = ops.reshape(ops.transpose(lse[..., 0], (0, 3, 1, 2)), (b, tq, heads))
    return out, lse


@as_written
def merge_partials(outputs, lses, return_lse=False):
    """Combines per-shard partials into the exact attention over all shards.

    `L = logsumexp_s lse_s` and `out = sum_s exp(lse_s - L) out_s`, computed
    in float32 with the largest lse subtracted first. Queries whose lse is
    the sentinel `NEG` in every shard get a zero output (and lse `NEG`).
    The merge is associative: merging merged partials (with
    `return_lse=True`) gives the same result, so shards can be combined in
    any tree or ring order.

    Args:
        outputs: list of `(batch, Tq, heads, value_dim)` partial outputs.
        lses: list of matching `(batch, Tq, heads)` log-sum-exps.
        return_lse: bool, also return the merged log-sum-exp.

    Returns:
        float32 `(batch, Tq, heads, value_dim)`, and with `return_lse=True`
        the tuple `(output, lse)`.

    Example:

    >>> q = keras.random.normal((1, 4, 2, 8))
    >>> k = keras.random.normal((1, 6, 2, 8))
    >>> parts = [partial_attention(q, k[:, i:i + 3], k[:, i:i + 3],
    ...                            key_offset=i) for i in (0, 3)]
    >>> out = merge_partials([o for o, _ in parts], [l for _, l in parts])
    >>> tuple(out.shape)
    (1, 4, 2, 8)
    """
    outputs = list(outputs)
    lses = list(lses)
    if not outputs or len(outputs) != len(lses):
        raise argument_error(
            "merge_partials",
            "outputs",
            "must be a non-empty list as long as `lses`",
            f"len(outputs)={len(outputs)}, len(lses)={len(lses)}",
        )
    lses = [ops.cast(lse, "float32") for lse in lses]
    outputs = [ops.cast(out, "float32") for out in outputs]
    if len(outputs) == 1:
        return (outputs[0], lses[0]) if return_lse else outputs[0]
    top = lses[0]
    for lse in lses[1:]:
        top = ops.maximum(top, lse)
    # Shards that saw nothing have lse = NEG <= top, so exp(...) is 0 unless
    # every shard saw nothing; those rows are zeroed below.
    seen = top > _SEEN_THRESHOLD
    shifted = [ops.exp(lse - top) for lse in lses]
    total = shifted[0]
    for w in shifted[1:]:
        total = total + w
    out = None
    for w, part in zip(shifted, outputs):
        term = (w / total)[..., None] * part
        out = term if out is None else out + term
    out = ops.where(seen[..., None], out, 0.0)
    if not return_lse:
        return out
    lse = ops.where(seen, top + ops.log(total), NEG)
    return out, lse


def shard_bounds(length, num_shards):
    """`(shard_length, padded_length)` of `length` keys in `num_shards`.

    Shards have `ceil(length / num_shards)` keys each; the last one is
    padded (with keys that are masked out) to that length.
    """
    shard = ceil_div(length, num_shards)
    return shard, shard * num_shards


@as_written
def sequence_parallel_attention(
    query,
    key,
    value,
    *,
    num_shards,
    mask=None,
    is_causal=False,
    scale=None,
    dropout_rate=0.0,
    seed=None,
    training=False,
    placement=None,
):
    """Exact attention with keys/values split into `num_shards` shards.

    Each shard's scores are computed by `partial_attention` (inside
    `placement(s)` when given), then merged by `merge_partials` in the
    current scope. Equal to `dot_product_attention` with the same arguments
    (up to float rounding).

    Args:
        query: `(batch, Tq, heads, head_dim)`.
        key: `(batch, Tk, kv_heads, head_dim)`.
        value: `(batch, Tk, kv_heads, value_dim)`.
        num_shards: positive int. When `Tk` is not a multiple, the last
            shard is padded with masked keys; with `Tk < num_shards` some
            shards hold only padding (they contribute nothing).
        mask: optional boolean broadcastable to `(batch, heads, Tq, Tk)`.
        is_causal: bool, top-left aligned causal mask over global positions.
        scale: score multiplier; defaults to `1 / sqrt(head_dim)`.
        dropout_rate, seed, training: attention dropout (see
            `partial_attention`).
        placement: optional callable `shard_index -> context manager` in
            which that shard's computation is built (e.g. a device scope).

    Returns:
        float32 `(batch, Tq, heads, value_dim)`.
    """
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or (
        num_shards < 1
    ):
        raise argument_error(
            "sequence_parallel_attention",
            "num_shards",
            "must be a positive int",
            f"num_shards={num_shards!r}",
        )
    query = ops.convert_to_tensor(query)
    key = ops.convert_to_tensor(key)
    value = ops.convert_to_tensor(value)
    scale = _default_scale("sequence_parallel_attention", query, scale)
    if mask is not None:
        mask = ops.cast(ops.convert_to_tensor(mask), "bool")
        while len(mask.shape) < 4:
            mask = ops.expand_dims(mask, 0)
    tk = sc.static_or_dynamic(key, 1)
    shard, padded = shard_bounds(tk, num_shards)
    pad = padded - tk
    key = pad_axis(key, 1, pad)
    value = pad_axis(value, 1, pad)
    if mask is not None and mask.shape[-1] != 1:
        mask = pad_axis(mask, 3, pad)
    # Padded keys are hidden by position; unpadded problems need no check.
    key_length = None if isinstance(pad, int) and pad == 0 else tk
    outputs, lses = [], []
    for s in range(num_shards):
        start = s * shard
        scope = placement(s) if placement is not None else contextlib.nullcontext()
        with scope:
            k_s = key[:, start : start + shard]
            v_s = value[:, start : start + shard]
            m_s = mask
            if mask is not None and mask.shape[-1] != 1:
                m_s = mask[..., start : start + shard]
            out, lse = partial_attention(
                query,
                k_s,
                v_s,
                mask=m_s,
                is_causal=is_causal,
                key_offset=start,
                key_length=key_length,
                scale=scale,
                dropout_rate=dropout_rate,
                seed=seed,
                training=training,
            )
        outputs.append(out)
        lses.append(lse)
    return merge_partials(outputs, lses)
