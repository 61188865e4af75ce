"""Regional (local) attention: sliding windows and blocks of regions."""

from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.layers.attention.base import BaseAttention
from keras_attention.layers.attention.registry import Tunable
from keras_attention.layers.attention.registry import register_attention
from keras_attention.ops.attention import dot_product_attention
from keras_attention.ops.regional import region_mask
from keras_attention.ops.regional import regional_attention
from keras_attention.ops.scores import static_or_dynamic

MODES = ("sliding", "block")
# Tile sizes the chunked core may use for a sliding window.
MIN_BLOCK_SIZE, MAX_BLOCK_SIZE = 32, 512


def sliding_block_size(window_size):
    """Tile size of the chunked core for a window: the next power of two
    `>= window_size`, clamped to `[32, 512]`. A query tile then sees at most
    `2 + ceil(2 * (window_size - 1) / block)` key tiles."""
    size = 1 << max(window_size - 1, 0).bit_length()
    return min(max(size, MIN_BLOCK_SIZE), MAX_BLOCK_SIZE)


@register_attention("regional")
class RegionalAttention(BaseAttention):
    """Multi-head attention in which each query only sees its own region.

    Two definitions of "region", picked by `mode`:

    - `mode="sliding"`: query `i` sees the keys `j` with
      `|i - j| < window_size`; with `use_causal_mask=True`, the
      `window_size` keys up to and including itself
      (`0 <= i - j < window_size`). It computes what
      `MultiHeadAttention(window_size=window_size)` computes, but always on
      the tiled core, which skips the tiles outside the window:
      `O(T * window_size)` time and `O(T)` memory, forward and backward.
      Queries and keys may have different lengths (cross-attention); their
      positions are then compared by index from the start of both
      sequences, as `use_causal_mask` does.
    - `mode="block"`: the sequence is cut into consecutive regions of
      `region_size` positions; a query sees the keys of its own region and
      of `num_neighbors` regions on each side (`|i // region_size -
      j // region_size| <= num_neighbors`); with `use_causal_mask=True`,
      the keys of its own region up to itself and of the `num_neighbors`
      previous regions. It is computed region by region
      (`keras_attention.ops.regional.regional_attention`): `O(T * W *
      region_size)` time and memory, `W = 2 * num_neighbors + 1`
      (`num_neighbors + 1` when causal). Self-attention only: queries and
      keys must have the same length.

    Masks: Keras masks (`Embedding(mask_zero=True)`), `query_mask`,
    `value_mask` and `attention_mask` all apply in both modes, on top of the
    region. A general `attention_mask` `(batch, [heads,] Tq, Tk)` is an
    `O(T^2)` input by nature; the layer only reads the part of it that lies
    in the region (block mode gathers the diagonal band of
    `(region_size, region_size)` tiles). A query with nothing left to attend
    to outputs zeros before the output projection (its bias).

    When to use it: long sequences whose useful context is mostly local
    (characters, audio frames, image patches in raster order, long
    documents under a stack of layers that widens the receptive field).
    The sliding window gives every position the same symmetric context and
    is the cheaper in memory; blocks are the better choice when the data
    has natural chunks (frames, sentences, patches of a row) or when you
    want attention dropout (the sliding window then falls back to the
    region computation, see below). If far-apart positions must interact
    within a single layer, use full attention (`"multi_head"`) or a
    global-plus-local variant instead.

    Args:
        num_heads: int, number of query heads.
        key_dim: int, size of each query/key head.
        mode: `"sliding"` (default) or `"block"`.
        window_size: positive int, required with `mode="sliding"` (and not
            allowed with `"block"`): the reach of the window (see above).
        region_size: positive int, required with `mode="block"` (and not
            allowed with `"sliding"`): the number of positions per region.
        num_neighbors: non-negative int, regions seen on each side of a
            query's own region (`mode="block"` only). Defaults to `0`.
        block_size: positive int or `None`, the tile size of the chunked
            core (`mode="sliding"` only). Defaults to the next power of two
            `>= window_size`, clamped to `[32, 512]`.
        **kwargs: the arguments of `BaseAttention` (`value_dim`,
            `num_key_value_heads`, `dropout`, `use_bias`, `output_shape`,
            initializers, regularizers, constraints, `seed`) and of
            `keras.layers.Layer`.

    Call arguments:
        Those of `keras.layers.MultiHeadAttention` (see `BaseAttention`):
        `query`, `value`, `key`, `query_mask`, `value_mask`, `key_mask`,
        `attention_mask`, `use_causal_mask`, `return_attention_scores`,
        `training`.

    Returns:
        `(batch, Tq, output_shape)`, and with `return_attention_scores=True`
        also the dense attention weights `(batch, num_heads, Tq, Tk)` (zero
        outside each query's region). Asking for the weights computes them
        with the exact core, which costs `O(Tq * Tk)` time and memory like
        full attention; use it to inspect or plot, not in training on long
        inputs.

    Cost and paths: in `"sliding"` mode the tiled core
    (`dot_product_attention(implementation="chunked", window_size=...)`)
    runs whenever the sequence lengths are static and no attention dropout
    is active. With attention dropout while training, or with unknown
    lengths (e.g. a SavedModel signature with a `None` length), the window
    is computed by the region path instead (regions of `window_size`
    positions with one neighbour on each side, then the exact window):
    the same function, still `O(T * window_size)`, with dropout.

    Example:

    >>> layer = RegionalAttention(num_heads=2, key_dim=8, mode="block",
    ...                           region_size=4, num_neighbors=1)
    >>> x = keras.random.normal((2, 10, 16))
    >>> tuple(layer(x, x, use_causal_mask=True).shape)
    (2, 10, 16)
    >>> sliding = RegionalAttention(num_heads=2, key_dim=8, window_size=3)
    >>> out, weights = sliding(x, x, return_attention_scores=True)
    >>> tuple(weights.shape)
    (2, 2, 10, 10)

    Reference:
        - Parmar et al., 2018, "Image Transformer" (local attention in
          query blocks).
        - Child et al., 2019, "Generating Long Sequences with Sparse
          Transformers".
        - Beltagy et al., 2020, "Longformer: The Long-Document Transformer"
          (sliding windows).
        - Zaheer et al., 2020, "Big Bird: Transformers for Longer
          Sequences" (blocked sliding attention).
    """

    search_space = {"window_size": Tunable("length", "length")}

    @classmethod
    def length_defaults(cls, length, given):
        """What the layer needs from the key length when the caller did not
        say: a sliding `window_size` of at most 64."""
        if given.get("mode", "sliding") == "sliding":
            return {"window_size": min(64, length)}
        return {}

    def __init__(
        self,
        num_heads,
        key_dim,
        mode="sliding",
        window_size=None,
        region_size=None,
        num_neighbors=0,
        block_size=None,
        **kwargs,
    ):
        super().__init__(num_heads=num_heads, key_dim=key_dim, **kwargs)
        cls = type(self).__name__
        if mode not in MODES:
            raise ValueError(
                f"{cls}: `mode` must be one of {MODES}. Received: "
                f"mode={mode!r}"
            )
        check_positive_int(type(self), "window_size", window_size, allow_none=True)
        check_positive_int(type(self), "region_size", region_size, allow_none=True)
        check_positive_int(type(self), "block_size", block_size, allow_none=True)
        if (
            isinstance(num_neighbors, bool)
            or not isinstance(num_neighbors, int)
            or num_neighbors < 0
        ):
            raise ValueError(
                f"{cls}: `num_neighbors` must be a non-negative integer. "
                f"Received: num_neighbors={num_neighbors!r}"
            )
        if mode == "sliding":
            if window_size is None:
                raise ValueError(
                    f"{cls}: `mode='sliding'` needs `window_size` (a positive "
                    "integer: query i sees keys j with |i - j| < "
                    "window_size). Received: window_size=None"
                )
            for argument, value, default in (
                ("region_size", region_size, None),
                ("num_neighbors", num_neighbors, 0),
            ):
                if value != default:
                    raise ValueError(
                        f"{cls}: `{argument}` only applies to "
                        f"`mode='block'`; with `mode='sliding'` leave it at "
                        f"{default!r}. Received: {argument}={value!r}"
                    )
        else:
            if region_size is None:
                raise ValueError(
                    f"{cls}: `mode='block'` needs `region_size` (a positive "
                    "integer: positions per region). Received: "
                    "region_size=None"
                )
            for argument, value in (
                ("window_size", window_size),
                ("block_size", block_size),
            ):
                if value is not None:
                    raise ValueError(
                        f"{cls}: `{argument}` only applies to "
                        f"`mode='sliding'`; with `mode='block'` leave it at "
                        f"None. Received: {argument}={value!r}"
                    )
        self.mode = mode
        self.window_size = window_size
        self.region_size = region_size
        self.num_neighbors = num_neighbors
        self.block_size = block_size

    # ------------------------------------------------------------------
    def _check_input_shapes(self, query_shape, value_shape, key_shape):
        # The shell checks shapes in `build`, `call` and
        # `compute_output_shape`; block mode adds equal lengths.
        super()._check_input_shapes(query_shape, value_shape, key_shape)
        tq, tv = query_shape[1], value_shape[1]
        if self.mode == "block" and tq is not None and tv is not None and tq != tv:
            raise argument_error(
                self,
                "value",
                "must have as many positions as `query` in `mode='block'` "
                "(regions are cut from one sequence; use `mode='sliding'` "
                "for cross-attention between different lengths)",
                f"query.shape={tuple(query_shape)}, "
                f"value.shape={tuple(value_shape)}",
            )

    def _dense_weights(self, query, key, value, mask, use_causal_mask, training):
        """Exact core with the region as a dense mask: `O(Tq * Tk)`."""
        window = None
        if self.mode == "block":
            region = region_mask(
                static_or_dynamic(query, 1),
                static_or_dynamic(key, 1),
                region_size=self.region_size,
                num_neighbors=self.num_neighbors,
                is_causal=use_causal_mask,
            )[None, None]
            mask = region if mask is None else ops.logical_and(mask, region)
        else:
            window = self.window_size
        return dot_product_attention(
            query,
            key,
            value,
            mask=mask,
            is_causal=use_causal_mask,
            window_size=window,
            dropout_rate=self.dropout,
            seed=self.seed_generator,
            training=bool(training),
            return_scores=True,
            implementation="exact",
        )

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
        if return_attention_scores:
            return self._dense_weights(
                query, key, value, mask, use_causal_mask, training
            )
        dropout = bool(training) and self.dropout > 0.0
        static = query.shape[1] is not None and key.shape[1] is not None
        if self.mode == "sliding" and static and not dropout:
            out = dot_product_attention(
                query,
                key,
                value,
                mask=mask,
                is_causal=use_causal_mask,
                window_size=self.window_size,
                implementation="chunked",
                block_size=self.block_size
                or sliding_block_size(self.window_size),
            )
            return out, None
        if self.mode == "sliding":
            # Regions of one window with a neighbour on each side hold the
            # whole window; `window_size` then cuts it exactly.
            region, neighbors, window = self.window_size, 1, self.window_size
        else:
            region, neighbors, window = self.region_size, self.num_neighbors, None
        out = regional_attention(
            query,
            key,
            value,
            region_size=region,
            num_neighbors=neighbors,
            mask=mask,
            is_causal=use_causal_mask,
            window_size=window,
            dropout_rate=self.dropout,
            seed=self.seed_generator,
            training=dropout,
        )
        return out, None

    def cache_limitation(self, query_length, causal):
        """See `BaseAttention.cache_limitation`: never (windows and regions
        are laid out on call indices)."""
        return (
            "its windows and regions are laid out on the indices of queries and "
            "keys in the call"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "window_size": self.window_size,
                "region_size": self.region_size,
                "num_neighbors": self.num_neighbors,
                "block_size": self.block_size,
            }
        )
        return config
