"""Sparse attention cores whose cost follows the attended entries only.

Two cores, both on `(batch, seq, heads, head_dim)` tensors, written with
`keras.ops` and working with static or dynamic sequence lengths:

- `block_sparse_attention`: the sequence is cut into blocks of `block_size`
  positions and every query block attends to a short list of key blocks
  (`block_index`, `(num_query_blocks, K)`). Only those `K` key blocks are
  gathered and scored, so time and memory are
  `O(Tq * K * block_size)`, never `O(Tq * Tk)`.
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
from keras import random

from keras_attention.ops import scores as sc

NEG = sc.NEG


# --------------------------------------------------------------------------
# small helpers (sizes may be Python ints or scalar tensors)
# --------------------------------------------------------------------------
def _is_int(x):
    return isinstance(x, (int, np.integer))


def _ceil_div(a, b):
    if _is_int(a) and _is_int(b):
        return -(-int(a) // int(b))
    return -ops.floor_divide(-a, b)


def _minimum(a, b):
    if _is_int(a) and _is_int(b):
        return min(int(a), int(b))
    return ops.minimum(a, b)


def _size(x, axis):
    return sc.static_or_dynamic(x, axis)


def _pad_axis(x, axis, length, value=0):
    """Pads `axis` of `x` at the end up to `length` with `value`."""
    size = _size(x, axis)
    if _is_int(size) and _is_int(length) and size == length:
        return x
    widths = [[0, 0] for _ in x.shape]
    widths[axis] = [0, length - size]
    return ops.pad(x, widths, constant_values=value)


def _arange(n):
    return ops.arange(n, dtype="int32")


def _int(x):
    return ops.cast(x, "int32")


def _softmax_rows(logits, allowed):
    """Masked float32 softmax over the last axis; empty rows give zeros.

    Hidden logits become `NEG`, whose `exp(NEG - row_max)` is exactly 0 as
    soon as the row has one allowed logit; a row with none (its maximum is
    `NEG`) is zeroed by a per-row factor, which saves a second full-size
    `where` (and its saved copy for the gradient).
    """
    if allowed is None:
        return ops.softmax(logits, axis=-1)
    logits = ops.where(allowed, logits, NEG)
    # `initial` also lets an empty tensor through (no query rows).
    row_max = sc.row_max(logits)
    p = ops.exp(logits - row_max)
    total = ops.sum(p, axis=-1, keepdims=True)
    seen = row_max > 0.5 * NEG
    return p * ops.where(seen, 1.0 / total, 0.0)


def _empty(query, key, value, return_weights):
    """The result with no query or no key: zeros (no key to attend to) or
    empty tensors, and weights of the matching shape."""
    batch, tq, heads = (_size(query, i) for i in range(3))
    out = ops.zeros((batch, tq, heads, value.shape[3]), query.dtype)
    if not return_weights:
        return out
    weights = ops.zeros((batch, heads, tq, _size(key, 1)), query.dtype)
    return out, weights


def _dropout(weights, dropout):
    if dropout is None:
        return weights
    rate, seed = dropout
    return random.dropout(weights, rate, seed=seed)


# --------------------------------------------------------------------------
# block-sparse core
# --------------------------------------------------------------------------
def _gathered_mask(mask5, index, nq, nk, block):
    """The part of a rank-5 mask that the gathered tiles see.

    Args:
        mask5: boolean `(b|1, kv|1, g|1, Tq|1, Tk|1)`.
        index: int `(nq, K)`, clipped to `[0, nk)`.

    Returns:
        Boolean broadcastable to the tile layout
        `(b, nq, kv, g, block, K * block)`.
    """
    lead = [_size(mask5, i) for i in range(3)]
    k_count = _size(index, 1)
    by_query = mask5.shape[3] != 1
    by_key = mask5.shape[4] != 1
    if by_query:
        mask5 = _pad_axis(mask5, 3, nq * block, False)
    if not by_key:
        if not by_query:
            return mask5[:, None]  # (b, 1, kv, g, 1, 1)
        m = ops.reshape(mask5, lead + [nq, block, 1])
        return ops.transpose(m, (0, 3, 1, 2, 4, 5))
    mask5 = _pad_axis(mask5, 4, nk * block, False)
    if not by_query:
        m = ops.reshape(mask5, lead + [nk, block])
        m = ops.take(m, ops.reshape(index, (-1,)), axis=3)
        m = ops.reshape(m, lead + [nq, 1, k_count * block])
        return ops.transpose(m, (0, 3, 1, 2, 4, 5))
    # (.., nq, bq, nk, bk) -> (.., nq * nk, bq, bk): pick tile (i, index[i, m]).
    m = ops.reshape(mask5, lead + [nq, block, nk, block])
    m = ops.transpose(m, (0, 1, 2, 3, 5, 4, 6))
    m = ops.reshape(m, lead + [nq * nk, block, block])
    flat = _arange(nq)[:, None] * nk + index
    m = ops.take(m, ops.reshape(flat, (-1,)), axis=3)
    m = ops.reshape(m, lead + [nq, k_count, block, block])
    m = ops.transpose(m, (0, 3, 1, 2, 5, 4, 6))
    return ops.reshape(m, [lead[0], nq] + lead[1:] + [block, k_count * block])


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
    b = int(block_size)
    if key.shape[1] == 0:
        return _empty(query, key, value, return_weights)
    # Padding may hold anything (NaN, inf): keep it out of the products.
    key, value = sc.hide_unseen(mask, key, value)
    batch = _size(query, 0)
    tq, heads, d = _size(query, 1), query.shape[2], query.shape[3]
    tk, kv_heads, dv = _size(key, 1), key.shape[2], value.shape[3]
    groups = heads // kv_heads
    nq, nk = _ceil_div(tq, b), _ceil_div(tk, b)
    k_count = _size(block_index, 1)
    if scale is None:
        scale = 1.0 / float(np.sqrt(d))
    block_index = _int(block_index)
    index = ops.clip(block_index, 0, ops.maximum(nk - 1, 0))

    # Float32 scores: float16 ones overflow once |q . k| * scale > 65504.
    q = _pad_axis(ops.cast(query, "float32") * scale, 1, nq * b)
    q = ops.reshape(q, (batch, nq, b, kv_heads, groups, d))

    def gather(x, last):
        x = _pad_axis(ops.cast(x, "float32"), 1, nk * b)
        x = ops.reshape(x, (batch, nk, b, kv_heads, last))
        x = ops.take(x, ops.reshape(index, (-1,)), axis=1)
        return ops.reshape(x, (batch, nq, k_count * b, kv_heads, last))

    k_tiles, v_tiles = gather(key, d), gather(value, dv)
    # Tile layout (b, nq, kv, g, bq, K * bk): the batched matmul's own output
    # layout, so no score-sized transpose is made (or kept for the gradient).
    logits = ops.einsum("bnqhgd,bnkhd->bnhgqk", q, k_tiles)

    key_pos = ops.reshape(block_index[:, :, None] * b + _arange(b), (nq, -1))
    allowed = ops.logical_and(key_pos >= 0, key_pos < tk)
    valid = ops.reshape(
        ops.repeat(ops.cast(block_valid, "bool")[:, :, None], b, axis=2),
        (nq, -1),
    )
    allowed = ops.logical_and(allowed, valid)[:, None, :]  # (nq, 1, K*bk)
    if is_causal:
        query_pos = (first_query_block + _arange(nq))[:, None] * b + _arange(b)
        allowed = ops.logical_and(
            allowed, key_pos[:, None, :] <= query_pos[:, :, None]
        )
    allowed = allowed[:, None, None]  # (nq, 1, 1, bq|1, K*bk)
    if mask is not None:
        mask5 = sc.group_heads(ops.cast(mask, "bool"), kv_heads, groups)
        allowed = ops.logical_and(
            allowed, _gathered_mask(mask5, index, nq, nk, b)
        )
    weights = _softmax_rows(logits, allowed)
    attended = _dropout(weights, dropout)
    out = ops.einsum("bnhgqk,bnkhd->bnqhgd", attended, v_tiles)
    out = ops.reshape(out, (batch, nq * b, heads, dv))[:, :tq]
    out = ops.cast(out, query.dtype)
    if not return_weights:
        return out
    # Dense view: tile m of row i goes to key block index[i, m].
    hit = ops.logical_and(
        ops.cast(block_valid, "bool")[:, :, None],
        index[:, :, None] == _arange(nk)[None, None, :],
    )
    w = ops.reshape(weights, (batch, nq, kv_heads, groups, b, k_count, b))
    dense = ops.einsum("bnhgqmk,nmj->bhgnqjk", w, ops.cast(hit, w.dtype))
    dense = ops.reshape(dense, (batch, heads, nq * b, nk * b))[:, :, :tq, :tk]
    return out, ops.cast(dense, query.dtype)


# --------------------------------------------------------------------------
# fixed block patterns: (index, valid) of shape (num_query_blocks, K)
# --------------------------------------------------------------------------
def _default_stride(num_key_blocks):
    """`ceil(sqrt(num_key_blocks))`, at least 1."""
    if _is_int(num_key_blocks):
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
    count = _ceil_div(nk, stride)
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
    count = _ceil_div(nk, stride)
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
def _write(buffer, i, value):
    """`buffer[i] = value` for a loop index (in place under XLA)."""
    zero = ops.zeros((), "int32")
    starts = ops.stack([ops.cast(i, "int32")] + [zero] * len(value.shape))
    return ops.slice_update(buffer, starts, value[None])


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
    tq, d = _size(q5, 3), q5.shape[4]
    tkp = _size(k4, 2)
    chunk = int(chunk) if not _is_int(tq) else max(1, min(int(chunk), tq))
    n_chunks = _ceil_div(tq, chunk)
    q5 = _pad_axis(q5, 3, n_chunks * chunk)
    q_chunks = ops.moveaxis(
        ops.reshape(q5, (batch, kv_heads, groups, n_chunks, chunk, d)), 3, 0
    )
    key_ok = (_arange(tkp) < tk)[None, :]  # (1, Tkp)
    by_query = False
    if mask5 is not None:
        if mask5.shape[4] != 1:
            mask5 = _pad_axis(mask5, 4, tkp, False)
        by_query = mask5.shape[3] != 1
        if by_query:
            lead = [_size(mask5, i) for i in range(3)]
            mask5 = _pad_axis(mask5, 3, n_chunks * chunk, False)
            mask5 = ops.moveaxis(
                ops.reshape(
                    mask5, lead + [n_chunks, chunk, _size(mask5, 4)]
                ),
                3,
                0,
            )

    def body(i, carry):
        index_buf, value_buf = carry
        s = ops.einsum("bhgqd,bhkd->bhgqk", q_chunks[i], k4)
        allowed = key_ok
        if is_causal:
            query_pos = i * chunk + _arange(chunk)
            allowed = ops.logical_and(
                allowed, _arange(tkp)[None, :] <= query_pos[:, None]
            )
        if mask5 is not None:
            allowed = ops.logical_and(
                allowed, mask5[i] if by_query else mask5
            )
        s = ops.where(allowed, s, NEG)
        values, index = ops.top_k(s, top_k, sorted=True)
        return (
            _write(index_buf, i, _int(index)),
            _write(value_buf, i, values),
        )

    shape = (n_chunks, batch, kv_heads, groups, chunk, top_k)
    init = (ops.zeros(shape, "int32"), ops.zeros(shape, "float32"))
    index, values = ops.fori_loop(0, n_chunks, body, init)

    def unchunk(x):
        x = ops.moveaxis(x, 0, 3)
        x = ops.reshape(x, (batch, kv_heads, groups, n_chunks * chunk, top_k))
        return x[:, :, :, :tq]

    return unchunk(index), unchunk(values) > 0.5 * NEG


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
    tkp = max(tk, top_k) if _is_int(tk) else ops.maximum(tk, top_k)
    # Padding may hold anything (NaN, inf): keep it out of the products.
    key, value = sc.hide_unseen(mask, key, value)
    mask5 = None
    if mask is not None:
        mask5 = sc.group_heads(ops.cast(mask, "bool"), kv_heads, groups)

    # Float32 scores: float16 ones overflow once |q . k| * scale > 65504.
    q5 = _grouped_query(ops.cast(query, "float32") * scale, kv_heads, groups)
    k4, v4 = (
        ops.transpose(_pad_axis(ops.cast(x, "float32"), 1, tkp), (0, 2, 1, 3))
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
    weights = _softmax_rows(logits, valid)
    attended = _dropout(weights, dropout)
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
