"""Attention on gathered blocks: one engine for local and sparse patterns.

Queries and keys are cut into blocks of `block_size` positions. A
`BlockLayout` names, for each query block, the `K` key blocks it attends
to; the engine gathers those key and value blocks next to their query
block and scores one `(block_size, K * block_size)` tile per query block.
The `(Tq, Tk)` score matrix never exists: time and memory are
`O(Tq * K * block_size)`.

A pattern is two pieces, as in PyTorch's FlexAttention: the block layout
(which tiles are computed) and the position mask (which entries of a tile
are visible: causal, a window, the padding of the last block, a boolean
`mask`). Region-local attention (`ops.regional`) is the band layout
`key block = query block + offset`; block-sparse attention (`ops.sparse`)
gives explicit lists of key blocks.

Scores live in the tile layout `(batch, query_blocks, kv_heads, groups,
block_size, K * block_size)`, the batched matmul's own output layout, so
no score-sized transpose is made (or kept for the gradient). They, the
softmax and the weighted sum run in float32 (float16 scores overflow once
`|q . k| * scale` exceeds 65504); the output is cast to the query's dtype.
"""

import math

import keras  # noqa: F401  (used by the docstring examples)
import numpy as np
from keras import ops

from keras_attention.ops import scores as sc
from keras_attention.ops.tiling import is_static
from keras_attention.ops.tiling import merge_blocks
from keras_attention.ops.tiling import pad_axis
from keras_attention.ops.tiling import split_blocks


class BlockLayout:
    """The key blocks each query block attends to.

    Query block `i` sees key blocks `index[i, m]` where `valid[i, m]`; for a
    band (local attention), build it with `BlockLayout.band`.

    Args:
        index: int `(num_query_blocks, K)`, key block numbers. The valid
            entries of a row must be distinct (a repeated block would be
            counted twice by the softmax).
        valid: bool, same shape: which entries are attended. Entries
            outside `[0, num_key_blocks)` never are.
        num_key_blocks: int or scalar int tensor.
        offsets: `None`, or the tuple of ints of a band
            (`index[i, m] = i + offsets[m]`, as many query as key blocks),
            whose blocks are gathered by shifting the block axis instead
            of indexing it.

    Attributes:
        index: int32, `index` clipped to a real block (entries that are not
            valid read one, unused).
        valid: bool, `valid` and in range.
    """

    def __init__(self, index, valid, num_key_blocks, offsets=None):
        index = ops.cast(index, "int32")
        in_range = ops.logical_and(index >= 0, index < num_key_blocks)
        self.valid = ops.logical_and(ops.cast(valid, "bool"), in_range)
        if is_static(num_key_blocks):
            last = max(int(num_key_blocks) - 1, 0)
        else:
            last = ops.maximum(num_key_blocks - 1, 0)
        self.index = ops.clip(index, 0, last)
        self.num_key_blocks = num_key_blocks
        self.offsets = offsets

    @classmethod
    def band(cls, num_blocks, offsets):
        """Query block `i` sees key blocks `i + o` for `o` in `offsets`.

        Args:
            num_blocks: int or scalar int tensor, query and key blocks.
            offsets: sequence of ints.

        Returns:
            A `BlockLayout` with `K = len(offsets)`.

        Example:

        >>> layout = BlockLayout.band(3, (-1, 0))
        >>> keras.ops.convert_to_numpy(layout.valid).astype(int).tolist()
        [[0, 1], [1, 1], [1, 1]]
        """
        offsets = tuple(int(o) for o in offsets)
        rows = ops.arange(num_blocks, dtype="int32")[:, None]
        index = rows + ops.convert_to_tensor(np.array(offsets, "int32"))[None]
        valid = ops.ones_like(index, dtype="bool")
        return cls(index, valid, num_blocks, offsets)

    @property
    def num_query_blocks(self):
        return sc.static_or_dynamic(self.index, 0)

    @property
    def width(self):
        """`K`, the key blocks gathered per query block."""
        return sc.static_or_dynamic(self.index, 1)

    def gather(self, x, axis):
        """Each query block's key blocks, side by side.

        Args:
            x: tensor with the `num_key_blocks` key blocks on `axis` and the
                positions of a block on `axis + 1`.
            axis: int.

        Returns:
            `x` with those two axes replaced by `(num_query_blocks,
            K * block)`: entry `(i, m * block + c)` is position `c` of key
            block `index[i, m]`.
        """
        if self.offsets is not None:
            # A band: shifted copies of the block axis (cheaper than a
            # gather, and so is their gradient).
            blocks = sc.static_or_dynamic(x, axis)
            before, after = -min(self.offsets), max(self.offsets)
            x = pad_axis(x, axis, max(after, 0), before=max(before, 0))
            start = max(before, 0)
            lead = (slice(None),) * axis
            copies = [
                x[lead + (slice(start + o, start + o + blocks),)]
                for o in self.offsets
            ]
            if len(copies) == 1:
                return copies[0]
            return ops.concatenate(copies, axis=axis + 1)
        picked = ops.take(x, ops.reshape(self.index, (-1,)), axis=axis)
        dims = [sc.static_or_dynamic(picked, i) for i in range(len(x.shape))]
        rows = [self.num_query_blocks, self.width * dims[axis + 1]]
        return ops.reshape(picked, dims[:axis] + rows + dims[axis + 2 :])

    def positions(self, block, first_query_block=0):
        """Positions of the queries and of the gathered keys.

        Returns:
            `(query_pos, key_pos, key_valid)`: int32 `(num_query_blocks,
            block)`, int32 and bool `(num_query_blocks, K * block)`.
        """
        nq = self.num_query_blocks
        within = ops.arange(block, dtype="int32")
        first = first_query_block + ops.arange(nq, dtype="int32")
        query_pos = first[:, None] * block + within
        key_pos = ops.reshape(self.index[:, :, None] * block + within, (nq, -1))
        key_valid = ops.reshape(
            ops.repeat(self.valid[:, :, None], block, axis=2), (nq, -1)
        )
        return query_pos, key_pos, key_valid

    def dense_weights(self, weights, query_length, key_length):
        """Tile weights as a dense `(batch, heads, Tq, Tk)` view.

        Zero outside the layout; building it costs `O(Tq * Tk)` memory.

        Args:
            weights: `(batch, nq, kv_heads, groups, block, K * block)`, as
                `block_attention` returns them.
            query_length: int or scalar tensor, `Tq`.
            key_length: int or scalar tensor, `Tk`.

        Returns:
            float `(batch, kv_heads * groups, Tq, Tk)`.
        """
        batch, nq, kv, groups, block = (
            sc.static_or_dynamic(weights, i) for i in range(5)
        )
        nk = self.num_key_blocks
        hit = ops.logical_and(
            self.valid[:, :, None],
            self.index[:, :, None] == ops.arange(nk, dtype="int32")[None, None],
        )
        w = ops.reshape(weights, (batch, nq, kv, groups, block, self.width, block))
        dense = ops.einsum("bnhgqmk,nmj->bhgnqjk", w, ops.cast(hit, w.dtype))
        dense = ops.reshape(dense, (batch, kv * groups, nq * block, nk * block))
        return dense[:, :, :query_length, :key_length]


def _gathered_mask(mask5, layout, block):
    """The entries of a rank-5 mask that the gathered tiles see.

    Args:
        mask5: boolean `(b|1, kv|1, g|1, Tq|1, Tk|1)`.
        layout: the `BlockLayout`.
        block: int, positions per block.

    Returns:
        Boolean broadcastable to the tile layout `(b, nq, kv, g, block,
        K * block)`.
    """
    lead = [sc.static_or_dynamic(mask5, i) for i in range(3)]
    nq, nk = layout.num_query_blocks, layout.num_key_blocks
    by_query, by_key = mask5.shape[3] != 1, mask5.shape[4] != 1
    if not by_key:
        if not by_query:
            return mask5[:, None]  # (b, 1, kv, g, 1, 1)
        m = split_blocks(mask5, 3, nq, block)  # (.., nq, block, 1)
        return ops.transpose(m, (0, 3, 1, 2, 4, 5))
    keys = split_blocks(mask5, 4, nk, block)  # (.., Tq|1, nk, block)
    if not by_query:
        m = layout.gather(keys[:, :, :, 0], 3)  # (.., nq, K * block)
        return ops.expand_dims(ops.transpose(m, (0, 3, 1, 2, 4)), -2)
    # (.., nq, bq, nk, bk) -> (.., nq * nk, bq, bk): pick tile (i, index[i, m]).
    m = split_blocks(keys, 3, nq, block)
    m = ops.transpose(m, (0, 1, 2, 3, 5, 4, 6))
    m = ops.reshape(m, lead + [nq * nk, block, block])
    flat = ops.arange(nq, dtype="int32")[:, None] * nk + layout.index
    m = ops.take(m, ops.reshape(flat, (-1,)), axis=3)
    m = ops.reshape(m, lead + [nq, layout.width, block, block])
    m = ops.transpose(m, (0, 3, 1, 2, 5, 4, 6))
    return ops.reshape(
        m, [lead[0], nq] + lead[1:] + [block, layout.width * block]
    )


def block_attention(
    query,
    key,
    value,
    layout,
    *,
    block_size,
    mask=None,
    is_causal=False,
    window_size=None,
    scale=None,
    first_query_block=0,
    dropout=None,
):
    """Attention of each query block over the key blocks `layout` names.

    Query `i` (in query block `i // block_size`) sees key `j` when `j`'s
    block is one of its block's valid layout entries, `j < Tk`, and the
    position and `mask` conditions allow it. Positions count from the
    start of both sequences (top-left aligned, like `is_causal`). A query
    that sees no key gets a zero output. Keys and values that `mask` hides
    from every query are never read (they may be NaN).

    Args:
        query: `(batch, Tq, heads, head_dim)`.
        key: `(batch, Tk, kv_heads, head_dim)`, `kv_heads` dividing `heads`.
        value: `(batch, Tk, kv_heads, value_dim)`.
        layout: a `BlockLayout` with at least `ceil(Tq / block_size)` query
            blocks and `ceil(Tk / block_size)` key blocks.
        block_size: int, positions per block.
        mask: optional boolean broadcastable to `(batch, heads, Tq, Tk)`;
            `True` = may attend.
        is_causal: bool, hide keys after the query.
        window_size: optional int, keep `|i - j| < window_size` (with
            `is_causal`, `0 <= i - j < window_size`).
        scale: score multiplier; defaults to `1 / sqrt(head_dim)`.
        first_query_block: int, global number of the first query block
            (only positions depend on it).
        dropout: `None` or `(rate, seed)`, dropout on the weights.

    Returns:
        `(output, weights)`: `(batch, Tq, heads, value_dim)` in the query's
        dtype, and the float32 weights in the tile layout `(batch, nq,
        kv_heads, groups, block_size, K * block_size)`.

    Example:

    >>> x = keras.random.normal((2, 10, 4, 8))
    >>> layout = BlockLayout.band(3, (-1, 0, 1))
    >>> out, _ = block_attention(x, x, x, layout, block_size=4)
    >>> tuple(out.shape)
    (2, 10, 4, 8)
    """
    block = int(block_size)
    if mask is not None:
        mask = ops.cast(mask, "bool")
        # Padding may hold anything (NaN, inf): keep it out of the products.
        key, value = sc.hide_unseen(mask, key, value)
    batch, tq = sc.static_or_dynamic(query, 0), sc.static_or_dynamic(query, 1)
    heads, head_dim = query.shape[2], query.shape[3]
    tk, kv_heads, value_dim = sc.static_or_dynamic(key, 1), key.shape[2], value.shape[3]
    groups = heads // kv_heads
    nq, nk = layout.num_query_blocks, layout.num_key_blocks
    if scale is None:
        scale = 1.0 / math.sqrt(head_dim)

    # (b, nq, block, kv, g, d) queries; (b, nq, K * block, kv, d) keys and
    # values.
    q = split_blocks(ops.cast(query, "float32") * scale, 1, nq, block)
    q = ops.reshape(q, (batch, nq, block, kv_heads, groups, head_dim))
    k, v = (
        layout.gather(split_blocks(ops.cast(x, "float32"), 1, nk, block), 1)
        for x in (key, value)
    )
    logits = ops.einsum("bnqhgd,bnkhd->bnhgqk", q, k)

    query_pos, key_pos, key_valid = layout.positions(block, first_query_block)
    allowed = sc.position_mask(
        query_pos,
        key_pos,
        is_causal=is_causal,
        window_size=window_size,
        key_length=tk,
    )
    allowed = ops.logical_and(allowed, key_valid[:, None, :])
    allowed = allowed[:, None, None]  # (nq, 1, 1, block|1, K * block)
    if mask is not None:
        mask5 = sc.group_heads(mask, kv_heads, groups)
        allowed = ops.logical_and(allowed, _gathered_mask(mask5, layout, block))

    weights = sc.masked_softmax(logits, allowed)
    attended = sc.dropout_weights(weights, dropout)
    out = ops.einsum("bnhgqk,bnkhd->bnqhgd", attended, v)
    out = ops.reshape(out, (batch, nq, block, heads, value_dim))
    return ops.cast(merge_blocks(out, 1, tq), query.dtype), weights
