"""Sparse attention: fixed block-sparse patterns and top-k selection."""

import numpy as np
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.layers.attention.base import BaseAttention
from keras_attention.layers.attention.registry import Tunable
from keras_attention.layers.attention.registry import register_attention
from keras_attention.ops import sparse as sparse_ops
from keras_attention.ops.scores import static_or_dynamic
from keras_attention.ops.tiling import ceil_div

PATTERNS = ("bigbird", "strided", "fixed", "layout", "topk")

# Pattern-specific arguments: which patterns take them, and their defaults.
_PATTERN_ARGUMENTS = {
    "block_size": (("bigbird", "strided", "fixed", "layout"), 64),
    "num_window_blocks": (("bigbird",), 3),
    "num_global_blocks": (("bigbird",), 1),
    "num_random_blocks": (("bigbird",), 2),
    "random_seed": (("bigbird",), 0),
    "stride": (("strided", "fixed"), None),
    "num_local_blocks": (("strided",), 1),
    "num_summary_blocks": (("fixed",), 1),
    "layout": (("layout",), None),
    "top_k": (("topk",), 32),
    "chunk_size": (("topk",), 512),
}


def _check_non_negative_int(cls, argument, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"{cls.__name__}: `{argument}` must be a non-negative integer. "
            f"Received: {argument}={value!r}"
        )


@register_attention("sparse")
class SparseAttention(BaseAttention):
    """Block-sparse (Sparse Transformer, BigBird) or top-k attention.

    The shared multi-head shell (projections, heads, masks) around a sparse
    core. For the block patterns, queries and keys are cut into blocks of
    `block_size` positions and query block `i` attends to a fixed, short list
    of key blocks; only those tiles are gathered and scored, so the cost is
    `O(T * K * block_size)` for `K` key blocks per query block, not
    `O(T^2)`. Inside the chosen tiles, the usual masks (padding,
    `attention_mask`, `use_causal_mask`) still apply position by position.
    Blocks are counted from position 0 of the query and of the key sequence.

    Patterns (`i` a query block, `j` a key block, `nk` the number of key
    blocks; with `use_causal_mask`, every pattern also keeps `j <= i` only):

    - `"bigbird"` (default; Zaheer et al., 2020): a window
      `|i - j| <= num_window_blocks // 2` (causal: the blocks before), the
      first `num_global_blocks` key blocks, and `num_random_blocks` key
      blocks per row drawn by a seeded integer hash (`random_seed`; a draw
      that repeats a block already seen is dropped, so "up to"). Without the
      causal mask the first `num_global_blocks` query blocks are global too:
      they attend to every key (computed apart, in `O(global * T)`).
      K = window + global + random: O(T) time and memory.
    - `"strided"` (Child et al., 2019, on blocks): `|i - j| <
      num_local_blocks` or `(i - j) % stride == 0`.
    - `"fixed"` (Child et al., 2019, on blocks): the blocks of `i`'s own
      chunk of `stride` blocks, and the last `num_summary_blocks` blocks of
      every chunk.
      For both, `stride` defaults to `ceil(sqrt(nk))`, so K ~ sqrt(nk) and
      the cost is O(T * sqrt(T)).
    - `"layout"`: a user boolean `layout` of shape
      `(num_query_blocks, num_key_blocks)`; inputs may be shorter (its
      top-left corner is used) but not longer. Rows are padded to the busiest
      one, which sets the cost.
    - `"topk"` (dynamic sparsity; Gupta et al., 2021): each query keeps its
      `top_k` highest-scoring allowed keys (of equal scores, the earlier
      key) and the softmax runs over them.
      Selecting them still scores every pair, chunk by chunk and without
      gradients (time O(T^2 d), memory O(chunk_size * T)); the attention and
      its gradient run on the gathered selection, O(T * top_k * key_dim)
      time and memory.

    When to use it: long sequences where a fixed sparsity structure fits the
    data: BigBird for long documents in encoders (local context, a few
    global summary blocks and random shortcuts), strided/fixed for data with a period (images
    flattened row by row, music, audio frames), a custom `layout` when you
    know which blocks must talk. `"topk"` keeps full attention's reach with
    sparse weights and linear memory, but not its time savings; prefer it
    when memory, not compute, is the limit. For purely local structure,
    `RegionalAttention` is simpler; when every token may matter, use
    `MultiHeadAttention` (its chunked core has linear memory too).

    Args:
        num_heads: int, number of query heads.
        key_dim: int, size of each query/key head.
        value_dim: int, size of each value head; defaults to `key_dim`.
        num_key_value_heads: int dividing `num_heads`; defaults to
            `num_heads` (`1` gives multi-query attention). All heads share
            the pattern.
        pattern: one of `"bigbird"` (default), `"strided"`, `"fixed"`,
            `"layout"`, `"topk"`.
        block_size: int, positions per block (block patterns; default 64).
        num_window_blocks: odd int, width of BigBird's window in blocks
            (default 3: the block itself and one on each side).
        num_global_blocks: int >= 0, BigBird's global blocks (default 1).
        num_random_blocks: int >= 0, BigBird's random blocks per query block
            (default 2).
        random_seed: int >= 0, seed of BigBird's random blocks (default 0).
        stride: int, `"strided"`/`"fixed"` period in blocks; defaults to
            `ceil(sqrt(number of key blocks))`.
        num_local_blocks: int, `"strided"` local band (default 1: the
            block itself).
        num_summary_blocks: int, `"fixed"` summary blocks per chunk
            (default 1; at most `stride`).
        layout: boolean array-like `(num_query_blocks, num_key_blocks)`
            (`"layout"` only, required there).
        top_k: int, keys kept per query (`"topk"`; default 32).
        chunk_size: int, queries scored per selection step (`"topk"`;
            default 512).
        **kwargs: the arguments of `BaseAttention` (`dropout`, `use_bias`,
            `output_shape`, initializers, regularizers, constraints, `seed`)
            and of `keras.layers.Layer`.

    Giving an argument that the chosen pattern does not use is an error
    (e.g. `num_random_blocks` with `pattern="strided"`).

    Call arguments:
        Those of `keras.layers.MultiHeadAttention` (see `BaseAttention`).
        Cross-attention with `Tq != Tv` is allowed: block `i` of the queries
        and block `j` of the keys are compared by number (top-left aligned,
        like `use_causal_mask`).

    Returns:
        `(batch, Tq, output_shape)`, and with `return_attention_scores=True`
        also the weights `(batch, num_heads, Tq, Tv)`: a dense view of the
        sparse weights, zero outside the pattern. Building that view costs
        O(Tq * Tv) memory, so only ask for it on inputs of moderate length.

    Example:

    >>> layer = SparseAttention(num_heads=2, key_dim=8, pattern="bigbird",
    ...                         block_size=4)
    >>> x = keras.random.normal((2, 32, 16))
    >>> out, weights = layer(x, x, return_attention_scores=True)
    >>> tuple(out.shape), tuple(weights.shape)
    ((2, 32, 16), (2, 2, 32, 32))
    >>> layer.block_layout(32, 32).astype(int)[5]   # query block 5
    array([1, 0, 0, 0, 1, 1, 1, 1])

    Reference:
        - Child et al., 2019, "Generating Long Sequences with Sparse
          Transformers".
        - Zaheer et al., 2020, "Big Bird: Transformers for Longer
          Sequences".
        - Gupta et al., 2021, "Memory-efficient Transformers via Top-k
          Attention".
    """

    search_space = {
        "pattern": Tunable(["bigbird", "strided", "topk"], "bigbird"),
        "block_size": Tunable("length", "length", when=("pattern", ["bigbird", "strided"])),
        "num_window_blocks": Tunable([1, 3], 3, when=("pattern", ["bigbird"])),
        "top_k": Tunable("length", lambda length: min(32, length or 32), when=("pattern", ["topk"])),
    }

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        num_key_value_heads=None,
        pattern="bigbird",
        block_size=None,
        num_window_blocks=None,
        num_global_blocks=None,
        num_random_blocks=None,
        random_seed=None,
        stride=None,
        num_local_blocks=None,
        num_summary_blocks=None,
        layout=None,
        top_k=None,
        chunk_size=None,
        **kwargs,
    ):
        super().__init__(
            num_heads=num_heads,
            key_dim=key_dim,
            value_dim=value_dim,
            num_key_value_heads=num_key_value_heads,
            **kwargs,
        )
        cls = type(self)
        if pattern not in PATTERNS:
            raise ValueError(
                f"{cls.__name__}: `pattern` must be one of {PATTERNS}. "
                f"Received: pattern={pattern!r}"
            )
        given = {
            "block_size": block_size,
            "num_window_blocks": num_window_blocks,
            "num_global_blocks": num_global_blocks,
            "num_random_blocks": num_random_blocks,
            "random_seed": random_seed,
            "stride": stride,
            "num_local_blocks": num_local_blocks,
            "num_summary_blocks": num_summary_blocks,
            "layout": layout,
            "top_k": top_k,
            "chunk_size": chunk_size,
        }
        resolved = {}
        for argument, value in given.items():
            patterns, default = _PATTERN_ARGUMENTS[argument]
            if pattern in patterns:
                resolved[argument] = default if value is None else value
            elif value is not None:
                raise ValueError(
                    f"{cls.__name__}: `{argument}` only applies to pattern "
                    f"{' or '.join(repr(p) for p in patterns)}. Received: "
                    f"{argument}={value!r} with pattern={pattern!r}"
                )
            else:
                resolved[argument] = None
        for argument in (
            "block_size",
            "num_window_blocks",
            "stride",
            "num_local_blocks",
            "num_summary_blocks",
            "top_k",
            "chunk_size",
        ):
            check_positive_int(
                cls, argument, resolved[argument], allow_none=True
            )
        for argument in (
            "num_global_blocks",
            "num_random_blocks",
            "random_seed",
        ):
            if resolved[argument] is not None:
                _check_non_negative_int(cls, argument, resolved[argument])
        if pattern == "bigbird" and resolved["num_window_blocks"] % 2 == 0:
            raise ValueError(
                f"{cls.__name__}: `num_window_blocks` must be odd (the block "
                "itself and as many on each side). Received: "
                f"num_window_blocks={resolved['num_window_blocks']}"
            )
        if (
            pattern == "fixed"
            and resolved["stride"] is not None
            and resolved["num_summary_blocks"] > resolved["stride"]
        ):
            raise ValueError(
                f"{cls.__name__}: `num_summary_blocks` must be at most "
                f"`stride`. Received: "
                f"num_summary_blocks={resolved['num_summary_blocks']}, "
                f"stride={resolved['stride']}"
            )
        if pattern == "layout":
            resolved["layout"] = self._check_layout(resolved["layout"])
        self.pattern = pattern
        for argument, value in resolved.items():
            setattr(self, argument, value)

    def _check_layout(self, layout):
        cls = type(self)
        if layout is None:
            raise ValueError(
                f"{cls.__name__}: pattern='layout' needs a `layout`: a "
                "boolean array of shape (num_query_blocks, num_key_blocks). "
                "Received: layout=None"
            )
        array = np.asarray(layout)
        if array.ndim != 2 or array.size == 0:
            raise ValueError(
                f"{cls.__name__}: `layout` must be a non-empty 2D boolean "
                "array (num_query_blocks, num_key_blocks). Received: an "
                f"array of shape {array.shape}"
            )
        if array.dtype != bool:
            if not np.isin(array, (0, 1)).all():
                raise ValueError(
                    f"{cls.__name__}: `layout` must hold booleans (or 0/1). "
                    f"Received values {sorted(set(array.ravel().tolist()))[:5]}"
                )
            array = array.astype(bool)
        return array.tolist()

    # ------------------------------------------------------------------
    # patterns
    # ------------------------------------------------------------------
    def _blocks(self, num_query_blocks, num_key_blocks, is_causal):
        """`(index, valid)` of the block pattern (see `ops.sparse`)."""
        if self.pattern == "bigbird":
            return sparse_ops.bigbird_blocks(
                num_query_blocks,
                num_key_blocks,
                num_window_blocks=self.num_window_blocks,
                num_global_blocks=self.num_global_blocks,
                num_random_blocks=self.num_random_blocks,
                seed=self.random_seed,
                is_causal=is_causal,
            )
        if self.pattern == "strided":
            return sparse_ops.strided_blocks(
                num_query_blocks,
                num_key_blocks,
                stride=self.stride,
                num_local_blocks=self.num_local_blocks,
                is_causal=is_causal,
            )
        if self.pattern == "fixed":
            return sparse_ops.fixed_blocks(
                num_query_blocks,
                num_key_blocks,
                stride=self.stride,
                num_summary_blocks=self.num_summary_blocks,
                is_causal=is_causal,
            )
        return sparse_ops.layout_blocks(
            num_query_blocks, num_key_blocks, self.layout, is_causal=is_causal
        )

    def _global_rows(self, is_causal):
        if self.pattern == "bigbird" and not is_causal:
            return self.num_global_blocks
        return 0

    def block_layout(self, query_length, key_length=None, use_causal_mask=False):
        """The block pattern for given lengths, as a NumPy boolean array.

        Args:
            query_length: int, number of query positions.
            key_length: int, number of key positions (default: the same).
            use_causal_mask: bool, the pattern of a causal call.

        Returns:
            Boolean `(ceil(Tq / block_size), ceil(Tk / block_size))`: which
            key blocks each query block attends to (before position masks).
        """
        if self.pattern == "topk":
            raise ValueError(
                f"Layer '{self.name}' (SparseAttention): pattern='topk' has "
                "no fixed block layout; its keys depend on the scores."
            )
        key_length = query_length if key_length is None else key_length
        nq = -(-query_length // self.block_size)
        nk = -(-key_length // self.block_size)
        index, valid = self._blocks(nq, nk, use_causal_mask)
        layout = sparse_ops.block_layout(index, valid, nk)
        rows = min(self._global_rows(use_causal_mask), nq)
        layout[:rows] = True
        return layout

    def _check_input_shapes(self, query_shape, value_shape, key_shape):
        super()._check_input_shapes(query_shape, value_shape, key_shape)
        if self.pattern != "layout":
            return
        rows, cols = len(self.layout), len(self.layout[0])
        for argument, shape, blocks in (
            ("query", query_shape, rows),
            ("key", key_shape, cols),
        ):
            length = shape[1]
            if length is not None and -(-length // self.block_size) > blocks:
                raise argument_error(
                    self,
                    argument,
                    f"must have at most {blocks * self.block_size} positions "
                    f"(the layout has {blocks} blocks of {self.block_size})",
                    f"{argument}.shape={tuple(shape)}",
                )

    # ------------------------------------------------------------------
    # the variant
    # ------------------------------------------------------------------
    def attend(
        self,
        query,
        key,
        value,
        mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
    ):
        dropout = None
        if training and self.dropout > 0:
            dropout = (self.dropout, self.seed_generator)
        if self.pattern == "topk":
            result = sparse_ops.top_k_attention(
                query,
                key,
                value,
                top_k=self.top_k,
                mask=mask,
                is_causal=use_causal_mask,
                chunk_size=self.chunk_size,
                dropout=dropout,
                return_weights=return_attention_scores,
            )
            return result if return_attention_scores else (result, None)

        b = self.block_size
        tq = static_or_dynamic(query, 1)
        tk = static_or_dynamic(key, 1)
        nq, nk = ceil_div(tq, b), ceil_div(tk, b)
        index, valid = self._blocks(nq, nk, use_causal_mask)
        global_rows = self._global_rows(use_causal_mask)
        if not global_rows:
            result = sparse_ops.block_sparse_attention(
                query,
                key,
                value,
                index,
                valid,
                block_size=b,
                mask=mask,
                is_causal=use_causal_mask,
                dropout=dropout,
                return_weights=return_attention_scores,
            )
            return result if return_attention_scores else (result, None)
        return self._attend_with_global_rows(
            query,
            key,
            value,
            index,
            valid,
            nk,
            mask,
            global_rows,
            dropout,
            return_attention_scores,
        )

    def _attend_with_global_rows(
        self,
        query,
        key,
        value,
        index,
        valid,
        nk,
        mask,
        global_rows,
        dropout,
        return_weights,
    ):
        """BigBird without the causal mask: global query blocks see all."""
        b = self.block_size
        split = global_rows * b
        q_global, q_rest = query[:, :split], query[:, split:]
        mask_global = mask_rest = mask
        if mask is not None and len(mask.shape) >= 2 and mask.shape[-2] != 1:
            mask_global, mask_rest = mask[..., :split, :], mask[..., split:, :]
        rows = ceil_div(static_or_dynamic(q_global, 1), b)
        everything = ops.broadcast_to(
            ops.arange(nk, dtype="int32")[None], (rows, nk)
        )
        if query.shape[1] is not None and query.shape[1] <= split:
            # Every query block is global.
            result = sparse_ops.block_sparse_attention(
                query,
                key,
                value,
                everything,
                ops.ones_like(everything, dtype="bool"),
                block_size=b,
                mask=mask,
                dropout=dropout,
                return_weights=return_weights,
            )
            return result if return_weights else (result, None)
        parts = [
            sparse_ops.block_sparse_attention(
                q_global,
                key,
                value,
                everything,
                ops.ones_like(everything, dtype="bool"),
                block_size=b,
                mask=mask_global,
                dropout=dropout,
                return_weights=return_weights,
            ),
            sparse_ops.block_sparse_attention(
                q_rest,
                key,
                value,
                index[global_rows:],
                valid[global_rows:],
                block_size=b,
                mask=mask_rest,
                first_query_block=global_rows,
                dropout=dropout,
                return_weights=return_weights,
            ),
        ]
        if not return_weights:
            return ops.concatenate(parts, axis=1), None
        out = ops.concatenate([p[0] for p in parts], axis=1)
        weights = ops.concatenate([p[1] for p in parts], axis=2)
        return out, weights

    def cache_limitation(self, query_length, causal):
        """See `BaseAttention.cache_limitation`: top-k only (block patterns
        are laid out on call indices)."""
        if self.pattern == "topk":
            return None
        return (
            f"its block pattern (`pattern={self.pattern!r}`) is laid out on "
            "the indices of queries and keys in the call"
        )

    def get_config(self):
        config = super().get_config()
        config["pattern"] = self.pattern
        for argument in _PATTERN_ARGUMENTS:
            config[argument] = getattr(self, argument)
        return config
