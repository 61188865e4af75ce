"""Tiled attention with an online softmax: linear memory, forward and back.

The queries and the keys/values are cut into blocks. For each query block the
forward pass walks the key/value blocks it can see, keeping a running maximum
`m`, a running normaliser `l` and a running output per query (the online
softmax of Milakov & Gimelshein, 2018), and stores only the output and the
log-sum-exp `m + log(l)` of each query. The backward pass walks the key/value
blocks, and for each one the query blocks that see it, recomputing the tile's
probabilities from the stored log-sum-exp (FlashAttention-2's schedule), so
no score matrix larger than one tile ever exists.

Causal and sliding-window attention skip the tiles they cannot see: their
cost grows with the visible part of the score matrix, not with its area.
"""

from keras import ops

from keras_attention.ops import scores as sc
from keras_attention.ops.tiling import ceil_div
from keras_attention.ops.tiling import merge_blocks
from keras_attention.ops.tiling import split_blocks
from keras_attention.ops.tiling import write


def _blocked(x, axis, blocks, block):
    """Pads `axis` to `blocks * block`, splits it and moves the block index
    to the front: `(..., blocks * block, ...)` -> `(blocks, ..., block, ...)`.
    """
    return ops.moveaxis(split_blocks(x, axis, blocks, block), axis, 0)


def _unblocked(x, axis, length):
    """Inverse of `_blocked` for a tensor whose block axis is first."""
    return merge_blocks(ops.moveaxis(x, 0, axis), axis, length)


class _Tiles:
    """A rank-5 mask or bias `(b, kv, g, tq|1, tk|1)`, pre-cut into tiles.

    Axes of size 1 broadcast and are not cut; the others are split into the
    query and key blocks, with the block indices moved to the front.
    """

    def __init__(self, x, query_blocks, query_block, key_blocks, key_block):
        self.by_query = x.shape[3] != 1
        self.by_key = x.shape[4] != 1
        if self.by_key:
            x = _blocked(x, 4, key_blocks, key_block)
        if self.by_query:
            x = _blocked(x, 3 + self.by_key, query_blocks, query_block)
        self.tiles = x

    def index(self, i, j):
        return ([i] if self.by_query else []) + ([j] if self.by_key else [])

    def get(self, i, j, source=None):
        x = self.tiles if source is None else source
        for n in self.index(i, j):
            x = x[n]
        return x

    def add(self, buffer, i, j, value):
        """`buffer[tile(i, j)] += value`, summing over broadcast axes."""
        tile = self.get(i, j, buffer)
        axes = [
            a
            for a, (have, want) in enumerate(zip(value.shape, tile.shape))
            if want == 1 and have != 1
        ]
        if axes:
            value = ops.sum(value, axis=axes, keepdims=True)
        index = self.index(i, j)
        if not index:
            return buffer + value
        return write(buffer, index, tile + value)

    def untile(self, x, query_length, key_length):
        if self.by_query:
            x = _unblocked(x, 3 + self.by_key, query_length)
        if self.by_key:
            x = _unblocked(x, 4, key_length)
        return x


class _Grid:
    """How a `(Tq, Tk)` score matrix is cut: `nq` query blocks of `bq`
    queries by `nk` key blocks of `bk` keys, and which tiles a position
    pattern (causal, window) lets each block see."""

    def __init__(self, tq, tk, block_size, is_causal, window_size):
        self.tq, self.tk = tq, tk
        self.bq, self.bk = min(block_size, tq), min(block_size, tk)
        self.nq, self.nk = -(-tq // self.bq), -(-tk // self.bk)
        # Keys past `tk` are padding, hidden by position.
        self.key_length = tk if self.nk * self.bk != tk else None
        self.is_causal, self.window_size = is_causal, window_size

    def query_positions(self, i):
        return i * self.bq + ops.arange(self.bq, dtype="int32")

    def key_positions(self, j):
        return j * self.bk + ops.arange(self.bk, dtype="int32")

    def key_blocks_seen_by(self, i):
        """Key block range `[lo, hi)` visible from query block `i`."""
        first, last = i * self.bq, (i + 1) * self.bq - 1
        lo_key, hi_key = 0, self.tk
        if self.window_size is not None:
            lo_key = ops.maximum(first - self.window_size + 1, 0)
            if not self.is_causal:
                hi_key = ops.minimum(last + self.window_size, self.tk)
        if self.is_causal:
            hi_key = ops.minimum(last + 1, self.tk)
        return lo_key // self.bk, ceil_div(hi_key, self.bk)

    def query_blocks_seeing(self, j):
        """Query block range `[lo, hi)` that sees key block `j`."""
        first, last = j * self.bk, (j + 1) * self.bk - 1
        lo_query, hi_query = 0, self.tq
        if self.is_causal:
            lo_query = ops.minimum(first, self.tq)
        if self.window_size is not None:
            hi_query = ops.minimum(last + self.window_size, self.tq)
            if not self.is_causal:
                lo_query = ops.maximum(first - self.window_size + 1, 0)
        return lo_query // self.bq, ceil_div(hi_query, self.bq)

    def tiles(self, x):
        """`_Tiles` of a rank-5 mask or bias on this grid (None for None)."""
        return None if x is None else _Tiles(x, self.nq, self.bq, self.nk, self.bk)


def chunked_attention(
    query,
    key,
    value,
    *,
    mask5=None,
    bias5=None,
    slopes5=None,
    is_causal=False,
    window_size=None,
    scale,
    block_size=512,
    backward_block_size=None,
):
    """Tiled attention core (see the module docstring).

    Args:
        query: `(batch, Tq, heads, d)` with static Tq, heads and d.
        key: `(batch, Tk, kv_heads, d)` with static Tk.
        value: `(batch, Tk, kv_heads, dv)`.
        mask5: optional boolean `(b|1, kv|1, g|1, Tq|1, Tk|1)`.
        bias5: optional float bias in the same layout (differentiable).
        slopes5: optional ALiBi slopes `(1, kv, g, 1, 1)`.
        is_causal: hide keys after each query (top-left aligned).
        window_size: optional int, see `scores.position_mask`.
        scale: float multiplier of the scores.
        block_size: int, queries and keys per tile of the forward pass.
        backward_block_size: int, queries and keys per tile of the backward
            pass (default: `block_size`). The two passes tile independently:
            the backward pass keeps more per tile (the gradients of its
            keys, values and queries), and on the 2-core CPU it ran fastest
            with tiles of 256 while the forward pass ran fastest with 512-1024
            (benchmarks/attention.py; docs/benchmark_attention_backward_cpu.md).

    Returns:
        `(batch, Tq, heads, dv)` in the query's dtype.
    """
    tq, heads, d = query.shape[1:]
    tk, kv_heads, dv = key.shape[1], key.shape[2], value.shape[3]
    groups = heads // kv_heads
    forward = _Grid(tq, tk, block_size, is_causal, window_size)
    backward = _Grid(tq, tk, backward_block_size or block_size, is_causal, window_size)
    neg = sc.NEG

    # Layouts: query-side (nq, b, kv, g, bq, .), key-side (nk, b, kv, bk, .).
    # Reshapes name every size but the batch: the gradient function is also
    # traced on its own (SavedModel export), where the batch is unknown.
    def query_major(x, last):
        """`(b, tq, heads, last)` -> float32 `(b, kv, g, tq, last)`."""
        x = ops.reshape(ops.cast(x, "float32"), (-1, tq, kv_heads, groups, last))
        return ops.transpose(x, (0, 2, 3, 1, 4))

    def query_side(x, grid):
        """`(b, kv, g, tq, ...)` -> `(nq, b, kv, g, bq, ...)`."""
        return _blocked(x, 3, grid.nq, grid.bq)

    def from_query_major(x, last):
        """`(b, kv, g, tq, last)` -> `(b, tq, heads, last)`."""
        x = ops.transpose(x, (0, 3, 1, 2, 4))
        return ops.reshape(x, (-1, tq, heads, last))

    def key_side(x, grid):
        x = ops.transpose(ops.cast(x, "float32"), (0, 2, 1, 3))
        return _blocked(x, 2, grid.nk, grid.bk)

    def from_key_side(x):
        return ops.transpose(_unblocked(x, 2, tk), (0, 2, 1, 3))

    def tile_logits(grid, q_i, k_j, i, j, mask_tiles, bias_tiles):
        query_pos, key_pos = grid.query_positions(i), grid.key_positions(j)
        s = ops.einsum("bhgqd,bhkd->bhgqk", q_i, k_j)
        allowed = sc.position_mask(
            query_pos,
            key_pos,
            is_causal=is_causal,
            window_size=window_size,
            key_length=grid.key_length,
        )
        if mask_tiles is not None:
            allowed = sc.both(mask_tiles.get(i, j), allowed)
        bias = None if bias_tiles is None else bias_tiles.get(i, j)
        s = sc.finish_logits(s, bias, slopes5, query_pos, key_pos, allowed)
        return s, allowed

    def core(q_in, k_in, v_in, *bias_in):
        # The forward pass is read through `stop_gradient`: its gradient is
        # `grad` below. Outside a compiled function TensorFlow's tape would
        # otherwise also record every tile's ops (custom_gradient does not
        # stop it) and keep every tile's scores alive until the backward
        # pass: quadratic memory in eager mode.
        q_major = query_major(ops.stop_gradient(q_in), d) * scale
        k_const, v_const = ops.stop_gradient(k_in), ops.stop_gradient(v_in)
        bias_const = None
        if bias_in:
            bias_const = ops.cast(ops.stop_gradient(bias_in[0]), "float32")
        qb = query_side(q_major, forward)
        kb, vb = key_side(k_const, forward), key_side(v_const, forward)
        mask_tiles, bias_tiles = forward.tiles(mask5), forward.tiles(bias_const)

        def query_block(i, carry):
            out_buf, lse_buf = carry
            q_i = qb[i]
            zeros = ops.zeros_like(q_i[..., 0])

            def key_block(j, state):
                m, l, acc = state
                s, allowed = tile_logits(forward, q_i, kb[j], i, j, mask_tiles, bias_tiles)
                m_new = ops.maximum(m, sc.row_max(s)[..., 0])
                alpha = ops.exp(m - m_new)
                p = ops.exp(s - m_new[..., None])
                if allowed is not None:
                    p = ops.where(allowed, p, 0.0)
                l = l * alpha + ops.sum(p, axis=-1)
                acc = acc * alpha[..., None] + ops.einsum(
                    "bhgqk,bhkd->bhgqd", p, vb[j]
                )
                return m_new, l, acc

            lo, hi = forward.key_blocks_seen_by(i)
            init = (zeros + neg, zeros, ops.repeat(zeros[..., None], dv, axis=-1))
            m, l, acc = ops.fori_loop(lo, hi, key_block, init)
            seen = l > 0.0
            safe_l = ops.where(seen, l, 1.0)
            out_i = acc / safe_l[..., None]
            # Queries that see no key output zeros and never use their lse.
            lse_i = ops.where(seen, m + ops.log(safe_l), 0.0)
            return write(out_buf, [i], out_i), write(lse_buf, [i], lse_i)

        out_buf = ops.repeat(ops.zeros_like(qb[..., :1]), dv, axis=-1)
        lse_buf = ops.zeros_like(qb[..., 0])
        out_buf, lse_buf = ops.fori_loop(0, forward.nq, query_block, (out_buf, lse_buf))
        # Query-major `(b, kv, g, tq, .)`: the output, and what the backward
        # pass cuts into its own blocks.
        out_major = _unblocked(out_buf, 3, tq)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            do_major = query_major(upstream, dv)
            delta_buf = query_side(ops.sum(do_major * out_major, axis=-1), backward)
            do_buf = query_side(do_major, backward)
            lse_b = query_side(_unblocked(lse_buf, 3, tq), backward)
            if backward.bq == forward.bq and backward.bk == forward.bk:
                qg, kg, vg = qb, kb, vb
                mask_g, bias_g = mask_tiles, bias_tiles
            else:
                qg = query_side(q_major, backward)
                kg, vg = key_side(k_const, backward), key_side(v_const, backward)
                mask_g, bias_g = backward.tiles(mask5), backward.tiles(bias_const)
            carry = (ops.zeros_like(qg), ops.zeros_like(kg), ops.zeros_like(vg))
            if bias_g is not None:
                carry += (ops.zeros_like(bias_g.tiles),)

            def key_block(j, carry):
                dq_buf, dk_buf, dv_buf = carry[:3]
                k_j, v_j = kg[j], vg[j]

                def query_block(i, state):
                    dq_buf, dk_j, dv_j = state[:3]
                    q_i, do_i = qg[i], do_buf[i]
                    s, allowed = tile_logits(backward, q_i, k_j, i, j, mask_g, bias_g)
                    p = ops.exp(s - lse_b[i][..., None])
                    if allowed is not None:
                        p = ops.where(allowed, p, 0.0)
                    dv_j = dv_j + ops.einsum("bhgqk,bhgqd->bhkd", p, do_i)
                    dp = ops.einsum("bhgqd,bhkd->bhgqk", do_i, v_j)
                    ds = p * (dp - delta_buf[i][..., None])
                    dq_i = dq_buf[i] + ops.einsum("bhgqk,bhkd->bhgqd", ds, k_j)
                    dk_j = dk_j + ops.einsum("bhgqk,bhgqd->bhkd", ds, q_i)
                    new = (write(dq_buf, [i], dq_i), dk_j, dv_j)
                    if bias_g is not None:
                        new += (bias_g.add(state[3], i, j, ds),)
                    return new

                lo, hi = backward.query_blocks_seeing(j)
                state = (dq_buf, ops.zeros_like(k_j), ops.zeros_like(v_j))
                state += tuple(carry[3:])
                state = ops.fori_loop(lo, hi, query_block, state)
                dq_buf, dk_j, dv_j = state[:3]
                new = (dq_buf, write(dk_buf, [j], dk_j), write(dv_buf, [j], dv_j))
                return new + tuple(state[3:])

            carry = ops.fori_loop(0, backward.nk, key_block, carry)
            grads = [
                ops.cast(from_query_major(_unblocked(carry[0] * scale, 3, tq), d), q_in.dtype),
                ops.cast(from_key_side(carry[1]), k_in.dtype),
                ops.cast(from_key_side(carry[2]), v_in.dtype),
            ]
            if bias_g is not None:
                db = bias_g.untile(carry[3], tq, tk)
                grads.append(ops.cast(db, bias_in[0].dtype))
            return tuple(grads)

        return from_query_major(out_major, dv), grad

    args = (query, key, value) + (() if bias5 is None else (bias5,))
    out = ops.custom_gradient(core)(*args)
    return ops.cast(out, query.dtype)
