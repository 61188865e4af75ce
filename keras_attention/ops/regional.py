"""Region-local (blocked) attention: each query sees a few regions of keys.

The sequence is cut into consecutive regions of `region_size` positions.
A query in region `r` may see the keys of regions `r - n ... r + n`
(`n = num_neighbors`); with `is_causal`, those of regions `r - n ... r` that
are not after the query. Optional `window_size` and boolean masks narrow
that further.

The computation never forms a `(Tq, Tk)` score matrix: regions are the
blocks of the block engine (`keras_attention.ops.blocks`) and the
neighbourhood is its band layout, `key region = query region + offset`.
The scores of a region are a `(region_size, (2n + 1) * region_size)` tile.
Time and memory therefore grow as `O(T * (2n + 1) * region_size)`, linearly
in the sequence length `T`.

Tensors follow `keras.ops.dot_product_attention`: `(batch, seq, heads,
dim)`. Grouped-query attention works as in `dot_product_attention`: query
head `i` reads key/value head `i // (heads // kv_heads)`.
"""

from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_int
from keras_attention.arguments import check_positive_int
from keras_attention.ops import scores as sc
from keras_attention.ops.as_written import as_written
from keras_attention.ops.blocks import BlockLayout
from keras_attention.ops.blocks import block_attention
from keras_attention.ops.tiling import ceil_div


def region_offsets(num_neighbors, is_causal):
    """Region offsets a query region sees: `-n..n`, or `-n..0` if causal."""
    return tuple(range(-num_neighbors, 1 if is_causal else num_neighbors + 1))


@as_written
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
    check_positive_int("region_mask", "region_size", region_size)
    check_int("region_mask", "num_neighbors", num_neighbors, 0)
    key_length = query_length if key_length is None else key_length
    q = ops.arange(query_length, dtype="int32")
    k = ops.arange(key_length, dtype="int32")
    distance = q[:, None] // region_size - k[None, :] // region_size
    near = ops.abs(distance) <= num_neighbors
    return sc.both(near, sc.position_mask(q, k, is_causal=is_causal))


@as_written
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
    check_positive_int("regional_attention", "region_size", region_size)
    check_int("regional_attention", "num_neighbors", num_neighbors, 0)
    if window_size is not None:
        check_positive_int("regional_attention", "window_size", window_size)
    for name, x in (("query", query), ("key", key), ("value", value)):
        if len(x.shape) != 4:
            raise argument_error(
                "regional_attention",
                name,
                "must have rank 4: (batch, seq, heads, head_dim)",
                f"{name}.shape={tuple(x.shape)}",
            )
    heads, head_dim = query.shape[2], query.shape[3]
    kv_heads, value_dim = key.shape[2], value.shape[3]
    if heads is None or kv_heads is None or head_dim is None or value_dim is None:
        raise argument_error(
            "regional_attention",
            "query",
            "must have static heads and head dimensions",
            f"query.shape={tuple(query.shape)}, key.shape={tuple(key.shape)}",
        )
    if heads % kv_heads or value.shape[2] != kv_heads or key.shape[3] != head_dim:
        raise argument_error(
            "regional_attention",
            "key",
            "must have the query's head_dim and a number of heads dividing "
            "the query's, shared with value",
            f"query.shape={tuple(query.shape)}, key.shape={tuple(key.shape)}, "
            f"value.shape={tuple(value.shape)}",
        )
    if mask is not None:
        mask = ops.convert_to_tensor(mask)
        if len(mask.shape) > 4:
            raise argument_error(
                "regional_attention",
                "mask",
                "must broadcast to (batch, heads, Tq, Tk)",
                f"mask.shape={tuple(mask.shape)}",
            )
    # Queries and keys are cut into the same regions (the band layout is
    # square): enough for the longer of the two.
    tq, tk = sc.static_or_dynamic(query, 1), sc.static_or_dynamic(key, 1)
    if isinstance(tq, int) and isinstance(tk, int):
        longest = max(tq, tk)
    else:
        longest = ops.maximum(tq, tk)
    layout = BlockLayout.band(
        ceil_div(longest, region_size), region_offsets(num_neighbors, is_causal)
    )
    out, _ = block_attention(
        query,
        key,
        value,
        layout,
        block_size=region_size,
        mask=mask,
        is_causal=is_causal,
        window_size=window_size,
        scale=scale,
        dropout=(float(dropout_rate), seed) if training and dropout_rate else None,
    )
    return out
