"""Region-local (blocked) attention: each query sees a few regions of keys.

The sequence is cut into consecutive regions of `region_size` positions.
A query in region `r` may see the keys of regions `r - n ... r + n`
(`n = num_neighbors`); with `is_causal`, those of regions `r - n ... r` that
are not after the query. Optional `window_size` and boolean masks narrow
that further.

The computation never forms a `(Tq, Tk)` score matrix. Queries are reshaped
into `(regions, region_size)`, the keys and values of each region's
neighbourhood are gathered by shifting the region axis and concatenating
the shifted copies, and the scores of a region are a
`(region_size, (2n + 1) * region_size)` tile. Time and memory therefore grow
as `O(T * (2n + 1) * region_size)`, linearly in the sequence length `T`.

Tensors follow `keras.ops.dot_product_attention`: `(batch, seq, heads,
dim)`. Grouped-query attention works as in `dot_product_attention`: query
head `i` reads key/value head `i // (heads // kv_heads)`.
"""

import math

from keras import ops
from keras import random

from keras_attention.ops import scores as sc


def _fail(argument, expected, received):
    raise ValueError(
        f"`regional_attention`: `{argument}` {expected}. Received: {received}"
    )


def _check_int(argument, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        _fail(argument, f"must be a {kind} int", f"{argument}={value!r}")


def region_offsets(num_neighbors, is_causal):
    """Region offsets a query region sees: `-n..n`, or `-n..0` if causal."""
    return tuple(range(-num_neighbors, 1 if is_causal else num_neighbors + 1))


def region_mask(
    query_length,
    key_length=None,
    *,
    region_size,
    num_neighbors=0,
    is_causal=False,
):
    """Dense boolean `(Tq, Tk)` mask of region-local attention.

    Query `i` may see key `j` when `|i // region_size - j // region_size| <=
    num_neighbors`; with `is_causal`, when moreover `j <= i`. It is the
    definition `regional_attention` computes without materialising it; use
    it for references and for the dense attention weights.

    Args:
        query_length: int (or scalar tensor), number of queries.
        key_length: number of keys; defaults to `query_length`.
        region_size: positive int, positions per region.
        num_neighbors: non-negative int, regions seen on each side.
        is_causal: bool, also hide keys after the query.

    Returns:
        Boolean tensor `(query_length, key_length)`.

    Example:

    >>> m = region_mask(4, region_size=2)
    >>> keras.ops.convert_to_numpy(m).astype(int).tolist()
    [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    """
    _check_int("region_size", region_size, 1)
    _check_int("num_neighbors", num_neighbors, 0)
    key_length = query_length if key_length is None else key_length
    q = ops.arange(query_length, dtype="int32")[:, None]
    k = ops.arange(key_length, dtype="int32")[None, :]
    distance = q // region_size - k // region_size
    if is_causal:
        return ops.logical_and(k <= q, distance <= num_neighbors)
    return ops.abs(distance) <= num_neighbors


def _pad_axis(x, axis, before, after, value):
    widths = [(0, 0)] * len(x.shape)
    widths[axis] = (before, after)
    return ops.pad(x, widths, constant_values=value)


def _neighbourhood(x, axis, offsets, pad_value):
    """Concatenates shifted copies of a region axis along the next axis.

    `x` has regions on `axis` and positions within a region on `axis + 1`.
    Returns `y` with `y[.., r, (s, c), ..] = x[.., r + offsets[s], c, ..]`
    (`pad_value` where `r + offsets[s]` is not a region).
    """
    regions = sc.static_or_dynamic(x, axis)
    before, after = -min(offsets), max(offsets)
    x = _pad_axis(x, axis, before, after, pad_value)
    index = (slice(None),) * axis
    copies = [
        x[index + (slice(before + o, before + o + regions),)] for o in offsets
    ]
    return ops.concatenate(copies, axis=axis + 1) if len(copies) > 1 else copies[0]


def _to_regions(x, axis, length, regions, region_size, pad_value):
    """Pads `axis` from `length` to `regions * region_size` and splits it."""
    pad = regions * region_size - length
    x = _pad_axis(x, axis, 0, pad, pad_value)
    dims = [sc.static_or_dynamic(x, i) for i in range(len(x.shape))]
    return ops.reshape(
        x, dims[:axis] + [regions, region_size] + dims[axis + 1 :]
    )


def _regional_mask(mask, kv_heads, groups, tq, tk, regions, region_size, offsets):
    """A mask broadcastable to `(b, h, Tq, Tk)`, cut into neighbourhoods.

    Returns a boolean `(b|1, kv|1, g|1, regions, region_size|1, W * R)`
    aligned with the gathered keys (`W = len(offsets)`, `R = region_size`).
    """
    while len(mask.shape) < 4:
        mask = ops.expand_dims(mask, 0)
    if mask.shape[3] == 1:
        dims = [sc.static_or_dynamic(mask, i) for i in range(3)]
        mask = ops.broadcast_to(mask, dims + [tk])
    if mask.shape[2] == 1:
        # Key padding: cut the keys into regions and gather neighbourhoods.
        keys = _to_regions(mask[:, :, 0], 2, tk, regions, region_size, False)
        keys = _neighbourhood(keys, 2, offsets, False)  # (b, h, nR, W * R)
        keys = keys[:, :, :, None, :]
    else:
        # A general mask: cut both axes into regions and keep, for each
        # query region, the tiles of its neighbour key regions.
        full = _to_regions(mask, 2, tq, regions, region_size, False)
        full = _to_regions(full, 4, tk, regions, region_size, False)
        # full: (b, h, nR, R, nR, R); pick key region r + o for query region r.
        rows = ops.arange(regions, dtype="int32")
        tiles = []
        for o in offsets:
            index = ops.clip(rows + o, 0, regions - 1)
            index = ops.reshape(index, (1, 1, -1, 1, 1, 1))
            tile = ops.take_along_axis(full, index, axis=4)
            tiles.append(tile[:, :, :, :, 0, :])
        # Out-of-range neighbours were clipped to an edge region; the
        # position mask hides them.
        keys = ops.concatenate(tiles, axis=-1) if len(tiles) > 1 else tiles[0]
    return _group(keys, kv_heads, groups)


def _group(x, kv_heads, groups):
    """`(b, h|1, ...)` -> `(b, kv|1, g|1, ...)`."""
    if x.shape[1] == 1:
        return ops.expand_dims(x, 2)
    dims = [sc.static_or_dynamic(x, i) for i in range(len(x.shape))]
    return ops.reshape(x, [dims[0], kv_heads, groups] + dims[2:])


def _masked_softmax(logits, allowed):
    """Float32 softmax over the last axis of the `allowed` logits.

    Rows with nothing allowed get zeros. The hand-written gradient,
    `w * (g - sum(w * g))`, keeps only the weights `w` for the backward
    pass (autodiff would also keep the exponentials and the unnormalised
    probabilities, each as large as the scores).
    """

    def forward(x):
        x = ops.where(allowed, x, sc.NEG)
        shift = sc.row_max(x)
        p = ops.where(allowed, ops.exp(x - shift), 0.0)
        total = ops.sum(p, axis=-1, keepdims=True)
        weights = p / ops.where(total > 0.0, total, 1.0)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            inner = ops.sum(weights * upstream, axis=-1, keepdims=True)
            return weights * (upstream - inner)

        return weights, grad

    return ops.custom_gradient(forward)(logits)


def regional_attention(
    query,
    key,
    value,
    *,
    region_size,
    num_neighbors=0,
    mask=None,
    is_causal=False,
    window_size=None,
    scale=None,
    dropout_rate=0.0,
    seed=None,
    training=False,
):
    """Scaled dot-product attention restricted to neighbouring regions.

    Query `i` may see key `j` when `|i // R - j // R| <= num_neighbors`
    (`R = region_size`); with `is_causal`, when `j <= i` and
    `i // R - j // R <= num_neighbors`. `window_size` further keeps
    `|i - j| < window_size` (`0 <= i - j < window_size` when causal), and
    `mask` whatever it allows. Positions are compared by index from the
    start of both sequences (top-left aligned, like `is_causal`). A query
    with no key left gets a zero output. The scores, the softmax and the
    weighted sum run in float32; the output is cast to the query's dtype.

    Cost: `O(T * W * R * head_dim)` time and `O(heads * T * W * R)` memory
    for the scores (`T = max(Tq, Tk)` rounded up to a multiple of `R`,
    `W = 2 * num_neighbors + 1`, or `num_neighbors + 1` when causal). A
    `mask` with a query axis is a `(Tq, Tk)` input already; only its
    diagonal band of `(R, R)` tiles is used.

    Args:
        query: `(batch, Tq, heads, head_dim)`.
        key: `(batch, Tk, kv_heads, head_dim)`, `kv_heads` dividing `heads`.
        value: `(batch, Tk, kv_heads, value_dim)`.
        region_size: positive int, positions per region.
        num_neighbors: non-negative int, regions seen on each side.
        mask: optional boolean broadcastable to `(batch, heads, Tq, Tk)`;
            `True` means "may attend". A key-padding mask
            `(batch, 1, 1, Tk)` is cut into regions like the keys. Keys and
            values it hides from every query are never read (they may be
            NaN).
        is_causal: bool, hide keys after each query.
        window_size: optional positive int, see above.
        scale: score multiplier; defaults to `1 / sqrt(head_dim)`.
        dropout_rate: float in `[0, 1)`, dropout on the weights while
            `training`.
        seed: int or `keras.random.SeedGenerator` for the dropout.
        training: bool, whether dropout is active.

    Returns:
        `(batch, Tq, heads, value_dim)` in the query's dtype.

    Example:

    >>> x = keras.random.normal((2, 10, 4, 8))
    >>> out = regional_attention(x, x, x, region_size=4, num_neighbors=1)
    >>> tuple(out.shape)
    (2, 10, 4, 8)
    """
    query = ops.convert_to_tensor(query)
    key = ops.convert_to_tensor(key)
    value = ops.convert_to_tensor(value)
    if mask is not None:
        mask = ops.convert_to_tensor(mask)
        # Padding may hold anything (NaN, inf): keep it out of the products.
        key, value = sc.hide_unseen(mask, key, value)
    _check_int("region_size", region_size, 1)
    _check_int("num_neighbors", num_neighbors, 0)
    if window_size is not None:
        _check_int("window_size", window_size, 1)
    for name, x in (("query", query), ("key", key), ("value", value)):
        if len(x.shape) != 4:
            _fail(
                name,
                "must have rank 4: (batch, seq, heads, head_dim)",
                f"{name}.shape={tuple(x.shape)}",
            )
    heads, head_dim = query.shape[2], query.shape[3]
    kv_heads, value_dim = key.shape[2], value.shape[3]
    if heads is None or kv_heads is None or head_dim is None or value_dim is None:
        _fail(
            "query",
            "must have static heads and head dimensions",
            f"query.shape={tuple(query.shape)}, key.shape={tuple(key.shape)}",
        )
    if heads % kv_heads or value.shape[2] != kv_heads or key.shape[3] != head_dim:
        _fail(
            "key",
            "must have the query's head_dim and a number of heads dividing "
            "the query's, shared with value",
            f"query.shape={tuple(query.shape)}, key.shape={tuple(key.shape)}, "
            f"value.shape={tuple(value.shape)}",
        )
    groups = heads // kv_heads
    if scale is None:
        scale = 1.0 / math.sqrt(head_dim)
    batch = sc.static_or_dynamic(query, 0)
    tq, tk = sc.static_or_dynamic(query, 1), sc.static_or_dynamic(key, 1)
    R = region_size
    if isinstance(tq, int) and isinstance(tk, int):
        regions = -(-max(tq, tk) // R)
    else:
        regions = -ops.floor_divide(-ops.maximum(tq, tk), R)
    offsets = region_offsets(num_neighbors, is_causal)

    # (b, nR, R, kv, g, d) queries; (b, nR, W * R, kv, d) keys and values,
    # in float32 (float16 scores overflow once |q . k| * scale > 65504).
    q = ops.cast(query, "float32") * scale
    q = _to_regions(q, 1, tq, regions, R, 0)
    q = ops.reshape(q, (batch, regions, R, kv_heads, groups, head_dim))
    k, v = (
        _neighbourhood(
            _to_regions(ops.cast(x, "float32"), 1, tk, regions, R, 0),
            1,
            offsets,
            0,
        )
        for x in (key, value)
    )

    logits = ops.einsum("brqhgd,brkhd->bhgrqk", q, k)

    # Positions of the queries (nR, R, 1) and of the gathered keys (nR, 1, W*R).
    first = ops.arange(regions, dtype="int32") * R
    q_pos = first[:, None, None] + ops.arange(R, dtype="int32")[None, :, None]
    k_rel = ops.concatenate(
        [o * R + ops.arange(R, dtype="int32") for o in offsets], axis=0
    )
    k_pos = first[:, None, None] + k_rel[None, None, :]
    allowed = ops.logical_and(k_pos >= 0, k_pos < tk)
    if is_causal:
        allowed = ops.logical_and(allowed, k_pos <= q_pos)
    if window_size is not None:
        distance = q_pos - k_pos
        if is_causal:
            near = distance < window_size
        else:
            near = ops.abs(distance) < window_size
        allowed = ops.logical_and(allowed, near)
    if mask is not None:
        mask = ops.cast(ops.convert_to_tensor(mask), "bool")
        if len(mask.shape) > 4:
            _fail(
                "mask",
                "must broadcast to (batch, heads, Tq, Tk)",
                f"mask.shape={tuple(mask.shape)}",
            )
        allowed = ops.logical_and(
            allowed,
            _regional_mask(mask, kv_heads, groups, tq, tk, regions, R, offsets),
        )

    weights = _masked_softmax(logits, allowed)
    if training and dropout_rate:
        weights = random.dropout(weights, float(dropout_rate), seed=seed)
    out = ops.einsum("bhgrqk,brkhd->brqhgd", weights, v)
    out = ops.reshape(out, (batch, regions * R, heads, value_dim))
    if not (isinstance(tq, int) and regions * R == tq):
        out = out[:, :tq]
    return ops.cast(out, query.dtype)
