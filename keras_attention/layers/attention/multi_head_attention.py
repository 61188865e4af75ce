"""Multi-head attention with grouped key/value heads and position options."""

from keras_attention import ops as attention_ops
from keras_attention.arguments import check_positive_int
from keras_attention.layers.attention.base import BaseAttention
from keras_attention.layers.attention.registry import Tunable
from keras_attention.layers.attention.registry import register_attention

POSITION_ENCODINGS = (None, "rope", "alibi")


@register_attention("multi_head")
class MultiHeadAttention(BaseAttention):
    """Multi-head attention, a drop-in for `keras.layers.MultiHeadAttention`.

    With default arguments and the same weights it computes what
    `keras.layers.MultiHeadAttention` computes (rank-3 inputs). On top of it:
    grouped-query and multi-query attention (`num_key_value_heads`), rotary
    or ALiBi positions, a sliding window, and a memory-efficient core that
    is picked automatically for long sequences (`implementation`).

    When to use it: the default. It is exact attention, so every position
    can reach every other in one layer; with `implementation=None` long
    inputs run on the linear-memory chunked core, so memory is no longer
    the limit, only time (O(T^2)). Reach for a cheaper variant
    (`"regional"`, `"linear"`, `"low_rank"`, `"sparse"`) when that time is
    too much and the task tolerates its approximation.

    Args:
        num_heads: int, number of query heads.
        key_dim: int, size of each query/key head.
        value_dim: int, size of each value head; defaults to `key_dim`.
        num_key_value_heads: int dividing `num_heads`; defaults to
            `num_heads`. `1` gives multi-query attention.
        implementation: `None`, `"exact"` or `"chunked"`, passed to
            `keras_attention.ops.dot_product_attention`. `None` uses the
            chunked (linear-memory) core for long inputs unless attention
            weights or attention dropout are needed. The chunked core needs
            static sequence lengths: traced with an unknown length (e.g. a
            SavedModel signature with a `None` length), `"chunked"` runs
            the exact core instead.
        position_encoding: `None`, `"rope"` (rotary embeddings applied to the
            projected queries and keys) or `"alibi"` (linear distance biases,
            computed block by block).
        window_size: `None` or int; a query at position `i` then sees keys
            `j` with `|i - j| < window_size` (with `use_causal_mask`, the
            `window_size` most recent keys, itself included).
        rope_max_wavelength: float, the longest wavelength of RoPE.
        block_size: int, keys per block of the chunked core (default 512).
        **kwargs: the arguments of `BaseAttention` (`dropout`, `use_bias`,
            `output_shape`, initializers, regularizers, constraints, `seed`)
            and of `keras.layers.Layer`.

    Call arguments:
        Those of `keras.layers.MultiHeadAttention` (see `BaseAttention`).

    Returns:
        `(batch, Tq, output_shape)`, and with `return_attention_scores=True`
        also the weights `(batch, num_heads, Tq, Tv)`.

    Example:

    >>> layer = MultiHeadAttention(num_heads=4, key_dim=16,
    ...                            num_key_value_heads=2)
    >>> x = keras.random.normal((2, 10, 32))
    >>> tuple(layer(x, x, use_causal_mask=True).shape)
    (2, 10, 32)

    Reference:
        - Vaswani et al., 2017, "Attention Is All You Need".
        - Shazeer, 2019, "Fast Transformer Decoding" (multi-query).
        - Ainslie et al., 2023, "GQA".
        - Su et al., 2021, "RoFormer" (rotary embeddings).
        - Press et al., 2022, "Train Short, Test Long" (ALiBi).
    """

    search_space = {"position_encoding": Tunable([None, "rope"], None)}

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        num_key_value_heads=None,
        implementation=None,
        position_encoding=None,
        window_size=None,
        rope_max_wavelength=10000.0,
        block_size=None,
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
        if implementation not in (None,) + attention_ops.attention.IMPLEMENTATIONS:
            raise ValueError(
                f"{cls.__name__}: `implementation` must be None or one of "
                f"{attention_ops.attention.IMPLEMENTATIONS}. Received: "
                f"implementation={implementation!r}"
            )
        if implementation == "chunked" and self.dropout:
            raise ValueError(
                f"{cls.__name__}: `implementation='chunked'` has no attention "
                "dropout; use `implementation='exact'` (or `None`) or "
                f"`dropout=0`. Received: dropout={self.dropout!r}"
            )
        if position_encoding not in POSITION_ENCODINGS:
            raise ValueError(
                f"{cls.__name__}: `position_encoding` must be one of "
                f"{POSITION_ENCODINGS}. Received: "
                f"position_encoding={position_encoding!r}"
            )
        if position_encoding == "rope" and key_dim % 2:
            raise ValueError(
                f"{cls.__name__}: `position_encoding='rope'` needs an even "
                f"`key_dim`. Received: key_dim={key_dim}"
            )
        check_positive_int(cls, "window_size", window_size, allow_none=True)
        check_positive_int(cls, "block_size", block_size, allow_none=True)
        self.implementation = implementation
        self.position_encoding = position_encoding
        self.window_size = window_size
        self.rope_max_wavelength = rope_max_wavelength
        self.block_size = block_size

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
        slopes = None
        if self.position_encoding == "rope":
            query = attention_ops.apply_rotary_embedding(
                query, max_wavelength=self.rope_max_wavelength
            )
            key = attention_ops.apply_rotary_embedding(
                key, max_wavelength=self.rope_max_wavelength
            )
        elif self.position_encoding == "alibi":
            slopes = attention_ops.alibi_slopes(self.num_heads)
        implementation = self.implementation
        if None in (query.shape[1], key.shape[1]):
            implementation = "exact"
        result = attention_ops.dot_product_attention(
            query,
            key,
            value,
            mask=mask,
            is_causal=use_causal_mask,
            dropout_rate=self.dropout,
            seed=self.seed_generator,
            training=bool(training),
            return_scores=return_attention_scores,
            implementation=implementation,
            alibi_slopes=slopes,
            window_size=self.window_size,
            block_size=self.block_size,
        )
        if return_attention_scores:
            return result
        return result, None

    def cache_limitation(self, query_length, causal):
        """See `BaseAttention.cache_limitation`: positions from call indices
        (rotary/ALiBi encodings, windows) cannot read a cache."""
        if self.position_encoding is not None:
            return (
                f"`position_encoding={self.position_encoding!r}` takes the "
                "positions of queries and keys from their indices in the call"
            )
        if self.window_size is not None:
            return "`window_size` is measured on the indices of queries and keys"
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "implementation": self.implementation,
                "position_encoding": self.position_encoding,
                "window_size": self.window_size,
                "rope_max_wavelength": self.rope_max_wavelength,
                "block_size": self.block_size,
            }
        )
        return config
