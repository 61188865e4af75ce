"""Boolean attention masks.

Every helper returns a boolean tensor where `True` means "may attend". The
results broadcast against attention scores of shape
`(batch, heads, query_length, key_length)` and combine with `&` (both must
allow) and `|` (either allows):

```python
mask = ops.causal_mask(8) & ops.padding_mask(lengths, max_length=8)
```
"""

import keras  # noqa: F401  (used by the docstring examples)
from keras import ops

from keras_attention.arguments import check_positive_int
from keras_attention.ops.as_written import as_written
from keras_attention.ops.scores import position_mask


def _positions(query_length, key_length, offset):
    """Query positions (in key coordinates) and key positions."""
    q = ops.arange(query_length, dtype="int32") + offset
    return q, ops.arange(key_length, dtype="int32")


@as_written
def causal_mask(query_length, key_length=None, *, offset=0):
    """Mask that lets query `i` see keys `j <= i + offset`.

    With the default `offset=0` the mask is aligned at the top-left corner,
    the convention of `keras.ops.dot_product_attention(is_causal=True)`. When
    the queries are the last `query_length` positions of a longer key
    sequence (decoding with a cache), pass
    `offset=key_length - query_length` to align it at the bottom-right.

    Args:
        query_length: int, number of queries.
        key_length: int, number of keys. Defaults to `query_length`.
        offset: int, position of the first query in key coordinates.

    Returns:
        Boolean tensor of shape `(query_length, key_length)`.

    Example:

    >>> m = causal_mask(3)
    >>> keras.ops.convert_to_numpy(m).astype(int).tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    key_length = query_length if key_length is None else key_length
    check_positive_int("causal_mask", "query_length", query_length)
    check_positive_int("causal_mask", "key_length", key_length)
    q, k = _positions(query_length, key_length, offset)
    return position_mask(q, k, is_causal=True)


@as_written
def sliding_window_mask(
    query_length, key_length=None, *, window_size, causal=False, offset=0
):
    """Mask that lets each query see only keys within `window_size`.

    Query `i` (at key position `p = i + offset`) may see key `j` when
    `|p - j| < window_size`; with `causal=True`, when `0 <= p - j <
    window_size` (the query itself and the `window_size - 1` keys before it).

    Args:
        query_length: int, number of queries.
        key_length: int, number of keys. Defaults to `query_length`.
        window_size: positive int, the window's reach (see above).
        causal: bool, whether to also hide future keys.
        offset: int, position of the first query in key coordinates.

    Returns:
        Boolean tensor of shape `(query_length, key_length)`.

    Example:

    >>> m = sliding_window_mask(4, window_size=2, causal=True)
    >>> keras.ops.convert_to_numpy(m).astype(int).tolist()
    [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    """
    key_length = query_length if key_length is None else key_length
    check_positive_int("sliding_window_mask", "query_length", query_length)
    check_positive_int("sliding_window_mask", "key_length", key_length)
    check_positive_int("sliding_window_mask", "window_size", window_size)
    q, k = _positions(query_length, key_length, offset)
    return position_mask(q, k, is_causal=causal, window_size=window_size)


@as_written
def padding_mask(lengths_or_mask, max_length=None):
    """Key padding mask from sequence lengths or a Keras `(batch, T)` mask.

    Args:
        lengths_or_mask: either an integer tensor of shape `(batch,)` with the
            number of valid tokens of each sequence (then `max_length` is
            required), or a boolean/0-1 tensor of shape `(batch, T)` such as
            the mask `keras.layers.Embedding(mask_zero=True)` produces.
        max_length: int, the padded length, required with lengths.

    Returns:
        Boolean tensor of shape `(batch, 1, 1, T)`: it hides padded keys from
        every head and every query.

    Example:

    >>> m = padding_mask(keras.ops.array([1, 3]), max_length=3)
    >>> keras.ops.convert_to_numpy(m)[:, 0, 0].astype(int).tolist()
    [[1, 0, 0], [1, 1, 1]]
    """
    x = ops.convert_to_tensor(lengths_or_mask)
    rank = len(x.shape)
    if rank == 1:
        if "int" not in str(x.dtype):
            raise ValueError(
                "`padding_mask`: lengths must be an integer tensor of shape "
                f"(batch,). Received dtype={x.dtype}"
            )
        if max_length is None:
            raise ValueError(
                "`padding_mask`: `max_length` is required when passing "
                "lengths. Received: max_length=None"
            )
        check_positive_int("padding_mask", "max_length", max_length)
        positions = ops.arange(max_length, dtype=x.dtype)
        valid = ops.less(positions[None, :], x[:, None])
    elif rank == 2:
        if max_length is not None and x.shape[1] is not None:
            if x.shape[1] != max_length:
                raise ValueError(
                    "`padding_mask`: the mask's length must equal "
                    f"`max_length`. Received: mask shape={tuple(x.shape)}, "
                    f"max_length={max_length}"
                )
        valid = ops.cast(x, "bool")
    else:
        raise ValueError(
            "`padding_mask`: expected lengths of shape (batch,) or a mask of "
            f"shape (batch, T). Received shape={tuple(x.shape)}"
        )
    return valid[:, None, None, :]


@as_written
def segment_mask(query_segment_ids, key_segment_ids=None):
    """Block-diagonal (document) mask: a query sees keys of its own segment.

    Use it to pack several documents into one sequence. Segment id `0` is not
    special; to also hide padding, combine with `padding_mask`.

    Args:
        query_segment_ids: integer tensor `(batch, Tq)`.
        key_segment_ids: integer tensor `(batch, Tk)`; defaults to the query
            ids (self-attention).

    Returns:
        Boolean tensor of shape `(batch, 1, Tq, Tk)`.

    Example:

    >>> ids = keras.ops.array([[0, 0, 1]])
    >>> keras.ops.convert_to_numpy(segment_mask(ids))[0, 0].astype(int).tolist()
    [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    """
    q = ops.convert_to_tensor(query_segment_ids)
    k = q if key_segment_ids is None else ops.convert_to_tensor(key_segment_ids)
    for name, x in (("query_segment_ids", q), ("key_segment_ids", k)):
        if len(x.shape) != 2:
            raise ValueError(
                f"`segment_mask`: `{name}` must have shape (batch, T). "
                f"Received shape={tuple(x.shape)}"
            )
    return ops.equal(q[:, None, :, None], k[:, None, None, :])


@as_written
def prefix_lm_mask(query_length, prefix_length, key_length=None):
    """Prefix-LM mask: the prefix is fully visible, the rest is causal.

    Query `i` sees key `j` when `j < prefix_length` or `j <= i`.

    Args:
        query_length: int, number of queries.
        prefix_length: int, or integer tensor `(batch,)` of per-example
            prefix lengths.
        key_length: int, number of keys. Defaults to `query_length`.

    Returns:
        Boolean tensor `(query_length, key_length)` for an int prefix, or
        `(batch, 1, query_length, key_length)` for per-example prefixes.

    Example:

    >>> m = prefix_lm_mask(3, prefix_length=2)
    >>> keras.ops.convert_to_numpy(m).astype(int).tolist()
    [[1, 1, 0], [1, 1, 0], [1, 1, 1]]
    """
    key_length = query_length if key_length is None else key_length
    causal = causal_mask(query_length, key_length)
    k = ops.arange(key_length, dtype="int32")
    if isinstance(prefix_length, int) and not isinstance(prefix_length, bool):
        if prefix_length < 0:
            raise ValueError(
                "`prefix_lm_mask`: `prefix_length` must be >= 0. "
                f"Received: prefix_length={prefix_length}"
            )
        return ops.logical_or(causal, (k < prefix_length)[None, :])
    prefix = ops.convert_to_tensor(prefix_length)
    if len(prefix.shape) != 1 or "int" not in str(prefix.dtype):
        raise ValueError(
            "`prefix_lm_mask`: `prefix_length` must be an int or an integer "
            f"tensor of shape (batch,). Received: shape={tuple(prefix.shape)}, "
            f"dtype={prefix.dtype}"
        )
    in_prefix = ops.less(k[None, :], ops.cast(prefix, "int32")[:, None])
    return ops.logical_or(causal[None, None], in_prefix[:, None, None, :])


__all__ = [
    "causal_mask",
    "padding_mask",
    "prefix_lm_mask",
    "segment_mask",
    "sliding_window_mask",
]
