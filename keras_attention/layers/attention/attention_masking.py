"""Masks in the attention layers: shape checks, merging every source of
masking into one boolean mask, and zeroing the rows of masked queries.

Keras keeps its mask-attribute helpers (`get_keras_mask`, `set_keras_mask`)
out of its public API; they are re-exported here for the layers, from one
place (the Keras version is pinned, and `keras.layers.MultiHeadAttention`
relies on the same calls).
"""

from keras import ops
from keras.src.backend.common.masking import get_keras_mask  # noqa: F401 (re-exported)
from keras.src.backend.common.masking import set_keras_mask  # noqa: F401 (re-exported)

from keras_attention.arguments import argument_error


def check_mask(layer, argument, mask, expected_shape, broadcast_axes=()):
    """Raises a clear ValueError unless `mask` has `expected_shape`.

    Axes listed in `broadcast_axes` may also have size 1.
    """
    shape = tuple(mask.shape)
    if len(shape) != len(expected_shape) or any(
        have is not None
        and want is not None
        and have != want
        and not (have == 1 and axis in broadcast_axes)
        for axis, (have, want) in enumerate(zip(shape, expected_shape))
    ):
        raise argument_error(
            layer,
            argument,
            f"must have shape {expected_shape}",
            f"{argument}.shape={shape}",
        )


def merge_masks(
    layer, num_heads, query, value, value_mask, key_mask, attention_mask
):
    """Merges the key-side Keras masks and `attention_mask` of a call.

    Query masks are not folded in: `mask_queries` zeroes masked query rows
    afterwards, which is equivalent (a query with nothing to attend to gets
    zeros) and keeps the mask at `(batch, 1, 1, Tv)` when only padding is
    involved. An `attention_mask` whose query axis has size 1 (e.g.
    `(batch, 1, Tv)`) is the same for every query, a key padding mask, and
    broadcasts over the queries.

    Returns:
        A boolean mask broadcastable to `(batch, heads, Tq, Tv)` (rank 4,
        heads axis of size 1 or `num_heads`), or `None`.
    """
    batch, tq, tv = query.shape[0], query.shape[1], value.shape[1]
    merged = None
    for argument, m in (("value_mask", value_mask), ("key_mask", key_mask)):
        if m is None:
            continue
        check_mask(layer, argument, m, (batch, tv))
        m = ops.cast(m, "bool")[:, None, None, :]
        merged = m if merged is None else ops.logical_and(merged, m)
    if attention_mask is None:
        return merged
    attention_mask = ops.convert_to_tensor(attention_mask)
    rank = len(attention_mask.shape)
    # The query axis may have size 1: the mask then holds for every query.
    if rank == 2:
        check_mask(layer, "attention_mask", attention_mask, (tq, tv), (0,))
        m = attention_mask[None, None]
    elif rank == 3:
        check_mask(
            layer, "attention_mask", attention_mask, (batch, tq, tv), (1,)
        )
        m = attention_mask[:, None]
    elif rank == 4:
        heads = attention_mask.shape[1]
        heads = heads if heads in (1, None) else num_heads
        check_mask(
            layer,
            "attention_mask",
            attention_mask,
            (batch, heads, tq, tv),
            (2,),
        )
        m = attention_mask
    else:
        raise argument_error(
            layer,
            "attention_mask",
            "must have shape (batch, Tq, Tv), (Tq, Tv) or "
            "(batch, heads, Tq, Tv)",
            f"attention_mask.shape={tuple(attention_mask.shape)}",
        )
    m = ops.cast(m, "bool")
    return m if merged is None else ops.logical_and(merged, m)


def mask_queries(layer, query, query_mask, output, scores=None):
    """Zeroes the output rows (and weights) of masked queries.

    Args:
        layer: the calling layer (for error messages).
        query: the layer's query input `(batch, Tq, ...)`.
        query_mask: boolean `(batch, Tq)` or `None`.
        output: `(batch, Tq, ...)` attended values.
        scores: optional `(batch, heads, Tq, Tv)` weights.

    Returns:
        `(output, scores)` with masked query rows set to zero (selected, not
        multiplied: a padded query may hold NaN or inf).
    """
    if query_mask is None:
        return output, scores
    check_mask(layer, "query_mask", query_mask, tuple(query.shape[:2]))
    keep = ops.cast(query_mask, "bool")
    for _ in range(len(output.shape) - 2):
        keep = ops.expand_dims(keep, -1)
    output = ops.where(keep, output, 0.0)
    if scores is not None:
        keep = ops.cast(query_mask, "bool")[:, None, :, None]
        scores = ops.where(keep, scores, 0.0)
    return output, scores
