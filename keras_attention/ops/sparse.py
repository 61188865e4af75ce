"""Sparse attention cores whose cost follows the attended entries only.

Two cores, both on `(batch, seq, heads, head_dim)` tensors, written with
`keras.ops` and working with static or dynamic sequence lengths:

- `block_sparse_attention`: the sequence is cut into blocks of `block_size`
  positions and every query block attends to a short list of key blocks
  (`block_index`, `(num_query_blocks, K)`). Only those `K` key blocks are
  gathered and scored (by the block engine, `keras_attention.ops.blocks`),
  so time and memory are `O(Tq * K * block_size)`, never `O(Tq * Tk)`.
- `top_k_attention`: every query keeps its `top_k` highest-scoring keys
  (dynamic sparsity). The selection scans the scores chunk by chunk without
  gradients (time `O(Tq * Tk)`, memory `O(chunk * Tk)`); the softmax and its
  gradient then run on the `top_k` selected keys only (`O(Tq * top_k)`).

And the block lists of the fixed patterns (`strided_blocks`, `fixed_blocks`,
`bigbird_blocks`, `layout_blocks`), plus `block_layout` to view any of them
as a dense boolean `(num_query_blocks, num_key_blocks)` array.

A query row with nothing to attend to (also when there are no keys at all)
gets a zero output and zero weights, and keys and values that the mask hides
from every query are never read, as in `dot_product_attention`; the scores,
the softmax and the weighted sum run in float32 (float16 scores overflow
once `|q . k| * scale` exceeds 65504), and the results are cast to the
query's dtype.
"""

import numpy as np
from keras import ops

from keras_attention.ops import scores as sc
from keras_attention.ops.as_written import as_written
from keras_attention.ops.blocks import BlockLayout
from keras_attention.ops.blocks import block_attention
from keras_attention.ops.tiling import ceil_div
from keras_attention.ops.tiling import is_static
from keras_attention.ops.tiling import pad_axis
from keras_attention.ops.tiling import split_blocks
from keras_attention.ops.tiling import write

NEG = sc.NEG


def _size(x, axis):
    return sc.static_or_dynamic(x, axis)


def _arange(n):
    return ops.arange(n, dtype="int32")


def _int(x):
    return ops.cast(x, "int32")


def _pad_to(x, axis, length):
    """Pads `axis` of `x` at the end up to `length`."""
    return pad_axis(x, axis, length - _size(x, axis))


def _empty(query, key, value, return_weights):
    """The result with no query or no key: zeros (no key to attend to) or
    empty tensors, and weights of the matching shape."""
    batch, tq, heads = (_size(query, i) for i in range(3))
    out = ops.zeros((batch, tq, heads, value.shape[3]), query.dtype)
    if not return_weights:
        return out
    weights = ops.zeros((batch, heads, tq, _size(key, 1)), query.dtype)
    return out, weights


# --------------------------------------------------------------------------
# block-sparse core
# --------------------------------------------------------------------------
@as_written
def block_sparse_attention(
    query,
    key,
    value,
    block_index,
    block_valid,
    *,
    block_size,
    mask=None,
    is_causal=False,
    scale=None,
    first_query_block=0,
    dropout=None,
    return_weights=False,
):
    """Attention computed on a list of key blocks per query block.

    Queries and keys are cut into blocks of `block_size` positions (the last
    one padded). Query block `i` (global index `first_query_block + i`)
    attends to the key blocks `block_index[i, m]` for which
    `block_valid[i, m]` is true; everything else gets zero weight. Only those
    tiles are gathered and scored: time and memory are
    `O(Tq * K * block_size)` for `K = block_index.shape[1]`.

    Args:
        query: `(batch, Tq, heads, d)`.
        key: `(batch, Tk, kv_heads, d)`; `heads` a multiple of `kv_heads`.
        value: `(batch, Tk, kv_heads, dv)`.
        block_index: int `(ceil(Tq / block_size), K)`, key block numbers.
            The valid entries of a row must be distinct (a repeated block
            would be counted twice by the softmax).
        block_valid: bool, same shape: which entries are real.
        block_size: int, positions per block.
        mask: optional boolean broadcastable to `(batch, heads, Tq, Tk)`.
        is_causal: hide keys `j > i` from query `i` (positions, top-left).
        scale: score multiplier, default `1 / sqrt(d)`.
        first_query_block: int, global block number of the first query
            block (only positions depend on it: causality).
        dropout: `None` or `(rate, seed)` for dropout on the weights.
        return_weights: also return the dense `(batch, heads, Tq, Tk)`
            weights (this view costs `O(Tq * Tk)` memory).

    Returns:
        `(batch, Tq, heads, dv)` in the query's dtype, or `(output, weights)`.
    """
    if key.shape[1] == 0:
        return _empty(query, key, value, return_weights)
    num_key_blocks = ceil_div(_size(key, 1), int(block_size))
    layout = BlockLayout(block_index, block_valid, num_key_blocks)
    out, weights = block_attention(
        query,
        key,
        value,
        layout,
        block_size=block_size,
        mask=mask,
        is_causal=is_causal,
        scale=scale,
        first_query_block=first_query_block,
        dropout=dropout,
    )
    if not return_weights:
        return out
    dense = layout.dense_weights(weights, _size(query, 1), _size(key, 1))
    return out, ops.cast(dense, query.dtype)


# --------------------------------------------------------------------------
# fixed block patterns: (index, valid) of shape (num_query_blocks, K)
# --------------------------------------------------------------------------
def _default_stride(num_key_blocks):
    """`ceil(sqrt(num_key_blocks))`, at least 1."""
    if is_static(num_key_blocks):
        return max(1, int(np.ceil(np.sqrt(num_key_blocks))))
    root = ops.ceil(ops.sqrt(ops.cast(num_key_blocks, "float32")))
    return ops.maximum(_int(root), 1)


def _broadcast_rows(x, num_rows):
    return ops.broadcast_to(x, (num_rows, _size(x, 1)))


def strided_blocks(
    num_query_blocks, num_key_blocks, *, stride=None, num_local_blocks=1,
    is_causal=False,
):
    """Sparse Transformer "strided" pattern, on blocks.

    Query block `i` sees key block `j` when `|i - j| < num_local_blocks`
    (the local band) or `(i - j) % stride == 0` (the strided columns); when
    causal, only `j <= i`. `stride` defaults to
    `ceil(sqrt(num_key_blocks))`, which makes the cost `O(T * sqrt(T))`.

    Returns:
        `(index, valid)`, int32 and bool, `(num_query_blocks, K)`.
    """
    nq, nk = num_query_blocks, num_key_blocks
    stride = _default_stride(nk) if stride is None else stride
    rows = _arange(nq)[:, None]
    local = rows + _arange(2 * num_local_blocks - 1)[None] - (
        num_local_blocks - 1
    )
    local_ok = ops.logical_and(local >= 0, local < nk)
    count = ceil_div(nk, stride)
    strided = ops.mod(rows, stride) + _arange(count)[None] * stride
    strided_ok = ops.logical_and(
        strided < nk, ops.abs(rows - strided) >= num_local_blocks
    )
    index = ops.concatenate([local, strided], axis=1)
    valid = ops.concatenate([local_ok, strided_ok], axis=1)
    if is_causal:
        valid = ops.logical_and(valid, index <= rows)
    return index, valid


def fixed_blocks(
    num_query_blocks, num_key_blocks, *, stride=None, num_summary_blocks=1,
    is_causal=False,
):
    """Sparse Transformer "fixed" pattern, on blocks.

    Blocks are grouped into chunks of `stride` blocks. Query block `i` sees
    every key block of its own chunk and the last `num_summary_blocks`
    blocks of every chunk (the "summary" blocks); when causal, only
    `j <= i`. `stride` defaults to `ceil(sqrt(num_key_blocks))`.

    Returns:
        `(index, valid)`, int32 and bool, `(num_query_blocks, K)`.
    """
    nq, nk = num_query_blocks, num_key_blocks
    stride = _default_stride(nk) if stride is None else stride
    rows = _arange(nq)[:, None]
    chunk = ops.floor_divide(rows, stride)
    own = chunk * stride + _arange(stride)[None]
    own_ok = own < nk
    count = ceil_div(nk, stride)
    # Summary t of chunk c is block c * stride + stride - 1 - t.
    last = _arange(count)[:, None] * stride + stride - 1
    take = _arange(num_summary_blocks)[None]
    summary = ops.reshape(last - take, (1, -1))
    summary_ok = ops.reshape(
        ops.broadcast_to(take < stride, (count, num_summary_blocks)), (1, -1)
    )
    summary_ok = ops.logical_and(
        ops.logical_and(summary_ok, summary < nk),
        ops.floor_divide(summary, stride) != chunk,
    )
    summary = _broadcast_rows(summary, nq)
    index = ops.concatenate([own, summary], axis=1)
    valid = ops.concatenate([own_ok, summary_ok], axis=1)
    if is_causal:
        valid = ops.logical_and(valid, index <= rows)
    return index, valid


_HASH_MODULUS = 65537


def block_hash(rows, draws, seed):
    """Deterministic pseudo-random ints in `[0, 65537)` per (row, draw).

    Integer arithmetic only (int32, no overflow), so the same blocks come out
    eagerly, under XLA and in an exported SavedModel: an affine mix of the
    row, the draw number and the seed, then three rounds of the
    `x -> (75 x + 74) mod 65537` generator.
    """
    seed = int(seed) % 65521
    x = ops.mod(rows * 7919 + draws * 104729 + (seed * 31 + 12345), 65521)
    for _ in range(3):
        x = ops.mod(x * 75 + 74, _HASH_MODULUS)
    return x


def bigbird_blocks(
    num_query_blocks, num_key_blocks, *, num_window_blocks=3,
    num_global_blocks=1, num_random_blocks=2, seed=0, is_causal=False,
):
    """BigBird's pattern on blocks: window + global + random key blocks.

    Query block `i` sees key blocks `j` with `|i - j| <= r`,
    `r = num_window_blocks // 2` (when causal: `0 <= i - j <= r`), the first
    `num_global_blocks` key blocks, and up to `num_random_blocks` blocks
    drawn by `block_hash` from `[0, num_key_blocks)` (when causal, from
    `[0, i]`), a draw that repeats a block already seen being dropped.
    Causal patterns only ever keep `j <= i`.

    The global *query* rows (the first `num_global_blocks` blocks see every
    key when not causal) are not part of this list: see `SparseAttention`,
    which computes them apart.

    Returns:
        `(index, valid)`, int32 and bool, `(num_query_blocks, K)`.
    """
    nq, nk = num_query_blocks, num_key_blocks
    radius = num_window_blocks // 2
    rows = _arange(nq)[:, None]
    if is_causal:
        offsets = _arange(radius + 1)[None] - radius
    else:
        offsets = _arange(2 * radius + 1)[None] - radius
    window = rows + offsets
    window_ok = ops.logical_and(window >= 0, window < nk)

    def in_window(j):
        distance = rows - j
        if is_causal:
            return ops.logical_and(distance >= 0, distance <= radius)
        return ops.abs(distance) <= radius

    parts = [(window, window_ok)]
    if num_global_blocks:
        glob = _broadcast_rows(_arange(num_global_blocks)[None], nq)
        glob_ok = ops.logical_and(
            glob < nk, ops.logical_not(in_window(glob))
        )
        parts.append((glob, glob_ok))
    if num_random_blocks:
        draws = _arange(num_random_blocks)[None]
        h = block_hash(rows, draws, seed)
        span = rows + 1 if is_causal else ops.maximum(
            ops.zeros_like(rows) + nk, 1
        )
        rand = ops.mod(h, span)
        rand_ok = ops.logical_and(rand < nk, ops.logical_not(in_window(rand)))
        rand_ok = ops.logical_and(rand_ok, rand >= num_global_blocks)
        # Drop a draw equal to an earlier draw of the same row.
        earlier = np.tril(np.ones((num_random_blocks,) * 2, bool), -1)
        repeat = ops.any(
            ops.logical_and(rand[:, :, None] == rand[:, None, :], earlier[None]),
            axis=2,
        )
        parts.append((rand, ops.logical_and(rand_ok, ops.logical_not(repeat))))
    index = ops.concatenate([p[0] for p in parts], axis=1)
    valid = ops.concatenate([p[1] for p in parts], axis=1)
    if is_causal:
        valid = ops.logical_and(valid, index <= rows)
    return index, valid


def layout_lists(layout):
    """A boolean `(nq, nk)` NumPy layout as NumPy `(index, valid)` lists."""
    layout = np.asarray(layout, bool)
    count = max(1, int(layout.sum(axis=1).max(initial=0)))
    index = np.zeros((layout.shape[0], count), "int32")
    valid = np.zeros((layout.shape[0], count), bool)
    for i, row in enumerate(layout):
        cols = np.flatnonzero(row)
        index[i, : len(cols)] = cols
        valid[i, : len(cols)] = True
    return index, valid


def layout_blocks(num_query_blocks, num_key_blocks, layout, *, is_causal=False):
    """A user layout's key blocks: its top-left `(nq, nk)` corner.

    Rows hold the layout's nonzero columns, padded to the busiest row (the
    cost is set by the busiest row). Columns beyond `num_key_blocks` are
    dropped; when causal, only `j <= i` is kept.

    Returns:
        `(index, valid)`, int32 and bool, `(num_query_blocks, K)`.
    """
    index, valid = layout_lists(layout)
    index = ops.convert_to_tensor(index)[:num_query_blocks]
    valid = ops.convert_to_tensor(valid)[:num_query_blocks]
    valid = ops.logical_and(valid, index < num_key_blocks)
    if is_causal:
        rows = _arange(_size(index, 0))[:, None]
        valid = ops.logical_and(valid, index <= rows)
    return index, valid


def block_layout(index, valid, num_key_blocks):
    """`(index, valid)` lists as a dense boolean NumPy `(nq, nk)` layout."""
    index = np.asarray(ops.convert_to_numpy(index))
    valid = np.asarray(ops.convert_to_numpy(valid), bool)
    layout = np.zeros((index.shape[0], num_key_blocks), bool)
    rows = np.repeat(np.arange(index.shape[0])[:, None], index.shape[1], 1)
    keep = valid & (index >= 0) & (index < num_key_blocks)
    layout[rows[keep], index[keep]] = True
    return layout


# --------------------------------------------------------------------------
# top-k core
# --------------------------------------------------------------------------
def _grouped_query(x, kv_heads, groups):
    """`(b, t, h, d)` -> `(b, kv, g, t, d)`."""
    b, t = _size(x, 0), _size(x, 1)
    x = ops.reshape(x, (b, t, kv_heads, groups, x.shape[3]))
    return ops.transpose(x, (0, 2, 3, 1, 4))


def _select_top_k(q5, k4, mask5, *, top_k, tk, is_causal, chunk):
    """Indices and validity of each query's `top_k` best keys.

    Args:
        q5: scaled queries `(b, kv, g, Tq, d)` (no gradient needed).
        k4: keys `(b, kv, Tkp, d)`, `Tkp >= top_k` (padded).
        mask5: boolean `(b|1, kv|1, g|1, Tq|1, Tk|1)` or None.

    Returns:
        `(index, valid)`: int32 and bool, `(b, kv, g, Tq, top_k)`.
    """
    batch, kv_heads, groups = _size(q5, 0), q5.shape[1], q5.shape[2]
    tq = _size(q5, 3)
    tkp = _size(k4, 2)
    chunk = int(chunk) if not is_static(tq) else max(1, min(int(chunk), tq))
    n_chunks = ceil_div(tq, chunk)
    q_chunks = ops.moveaxis(split_blocks(q5, 3, n_chunks, chunk), 3, 0)
    by_query = False
    if mask5 is not None:
        if mask5.shape[4] != 1:
            mask5 = _pad_to(mask5, 4, tkp)
        by_query = mask5.shape[3] != 1
        if by_query:
            mask5 = ops.moveaxis(split_blocks(mask5, 3, n_chunks, chunk), 3, 0)

    def body(i, carry):
        index_buf, value_buf = carry
        s = ops.einsum("bhgqd,bhkd->bhgqk", q_chunks[i], k4)
        allowed = sc.position_mask(
            i * chunk + _arange(chunk),
            _arange(tkp),
            is_causal=is_causal,
            key_length=tk,
        )
        if mask5 is not None:
            allowed = ops.logical_and(
                allowed, mask5[i] if by_query else mask5
            )
        s = ops.where(allowed, s, NEG)
        values, index = ops.top_k(s, top_k, sorted=True)
        return (
            write(index_buf, [i], _int(index)),
            write(value_buf, [i], values),
        )

    shape = (n_chunks, batch, kv_heads, groups, chunk, top_k)
    init = (ops.zeros(shape, "int32"), ops.zeros(shape, "float32"))
    index, values = ops.fori_loop(0, n_chunks, body, init)

    def unchunk(x):
        x = ops.moveaxis(x, 0, 3)
        x = ops.reshape(x, (batch, kv_heads, groups, n_chunks * chunk, top_k))
        return x[:, :, :, :tq]

    return unchunk(index), unchunk(values) > 0.5 * NEG


@as_written
def top_k_attention(
    query,
    key,
    value,
    *,
    top_k,
    mask=None,
    is_causal=False,
    scale=None,
    chunk_size=512,
    dropout=None,
    return_weights=False,
):
    """Each query attends to its `top_k` highest-scoring allowed keys.

    `softmax` over the kept keys only; a query with fewer than `top_k`
    allowed keys keeps all of them, and of equal scores the earlier key is
    kept first. The selection walks the queries in
    chunks of `chunk_size` without gradients (time `O(Tq * Tk * d)`, memory
    `O(chunk_size * Tk)`); the attention proper gathers the selected keys
    and values and runs in `O(Tq * top_k * d)` time and memory, forward and
    backward. The gradient is that of the top-k-masked softmax (the
    selection itself is piecewise constant).

    Args:
        query: `(batch, Tq, heads, d)`.
        key: `(batch, Tk, kv_heads, d)`.
        value: `(batch, Tk, kv_heads, dv)`.
        top_k: int, keys kept per query.
        mask: optional boolean broadcastable to `(batch, heads, Tq, Tk)`.
        is_causal: hide keys `j > i` from query `i`.
        scale: score multiplier, default `1 / sqrt(d)`.
        chunk_size: int, queries per selection step.
        dropout: `None` or `(rate, seed)`.
        return_weights: also return the dense `(batch, heads, Tq, Tk)`
            weights (zero outside the kept keys).

    Returns:
        `(batch, Tq, heads, dv)` in the query's dtype, or `(output, weights)`.
    """
    batch = _size(query, 0)
    tq, heads, d = _size(query, 1), query.shape[2], query.shape[3]
    tk, kv_heads, dv = _size(key, 1), key.shape[2], value.shape[3]
    groups = heads // kv_heads
    if scale is None:
        scale = 1.0 / float(np.sqrt(d))
    if 0 in (query.shape[1], key.shape[1]):
        # Nothing to select (and no chunk of queries to walk).
        return _empty(query, key, value, return_weights)
    tkp = max(tk, top_k) if is_static(tk) else ops.maximum(tk, top_k)
    # Padding may hold anything (NaN, inf): keep it out of the products.
    key, value = sc.hide_unseen(mask, key, value)
    mask5 = None
    if mask is not None:
        mask5 = sc.group_heads(ops.cast(mask, "bool"), kv_heads, groups)

    # Float32 scores: float16 ones overflow once |q . k| * scale > 65504.
    q5 = _grouped_query(ops.cast(query, "float32") * scale, kv_heads, groups)
    k4, v4 = (
        ops.transpose(_pad_to(ops.cast(x, "float32"), 1, tkp), (0, 2, 1, 3))
        for x in (key, value)
    )
    index, valid = _select_top_k(
        ops.stop_gradient(q5),
        ops.stop_gradient(k4),
        mask5,
        top_k=top_k,
        tk=tk,
        is_causal=is_causal,
        chunk=chunk_size,
    )
    index = ops.stop_gradient(index)
    valid = ops.stop_gradient(valid)

    # Gather rows of the flattened (b * kv * Tkp, .) keys and values.
    base = (_arange(batch)[:, None] * kv_heads + _arange(kv_heads)[None]) * tkp
    flat = index + base[:, :, None, None, None]  # (b, kv, g, tq, k)

    def gather(x4, last):
        rows = ops.reshape(x4, (-1, last))
        picked = ops.take(rows, ops.reshape(flat, (-1,)), axis=0)
        return ops.reshape(
            picked, (batch, kv_heads, groups, tq, top_k, last)
        )

    k_sel, v_sel = gather(k4, d), gather(v4, dv)
    logits = ops.einsum("bhgqd,bhgqkd->bhgqk", q5, k_sel)
    weights = sc.masked_softmax(logits, valid)
    attended = sc.dropout_weights(weights, dropout)
    out = ops.einsum("bhgqk,bhgqkd->bhgqd", attended, v_sel)
    out = ops.reshape(ops.transpose(out, (0, 3, 1, 2, 4)), (batch, tq, heads, dv))
    out = ops.cast(out, query.dtype)
    if not return_weights:
        return out
    # Scatter the kept weights into a dense (b, h, Tq, Tk) view.
    w = ops.reshape(weights, (batch, heads, tq, top_k))
    cols = ops.reshape(ops.minimum(index, tk - 1), (batch, heads, tq, top_k))
    grid = [
        ops.broadcast_to(
            ops.reshape(_arange(n), shape), (batch, heads, tq, top_k)
        )
        for n, shape in (
            (batch, (-1, 1, 1, 1)),
            (heads, (1, -1, 1, 1)),
            (tq, (1, 1, -1, 1)),
        )
    ]
    coords = ops.stack(grid + [cols], axis=-1)
    dense = ops.scatter(
        ops.reshape(coords, (-1, 4)),
        ops.reshape(w, (-1,)),
        (batch, heads, tq, tk),
    )
    return out, ops.cast(dense, query.dtype)
