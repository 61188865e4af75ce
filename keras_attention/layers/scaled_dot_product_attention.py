"""Single-head scaled dot-product attention without weights."""

import keras
from keras import ops

from keras_attention import ops as attention_ops
from keras_attention.arguments import argument_error
from keras_attention.arguments import check_rate
from keras_attention.layers.attention_masking import mask_queries
from keras_attention.layers.attention_masking import merge_masks
from keras_attention.layers.attention_masking import set_keras_mask
from keras_attention.layers.registry import register_attention
from keras_attention.ops.scores import hide_unseen


@register_attention("scaled_dot_product")
class ScaledDotProductAttention(keras.layers.Layer):
    """The classic attention function as a layer: no projections, one head.

    `softmax(query @ key^T * scale) @ value` on `(batch, T, dim)` tensors,
    with the masking rules of every layer in this package.

    When to use it: when the inputs are already the queries, keys and values
    (no learned projections, one head), e.g. to attend from decoder states
    over encoder outputs of the same size, or as a building block.

    Args:
        scale: float multiplier of the scores; defaults to
            `1 / sqrt(query_dim)`.
        dropout: float in `[0, 1)`, dropout on the attention weights.
        implementation: `None`, `"exact"` or `"chunked"` (see
            `keras_attention.ops.dot_product_attention`).
        seed: int, seed of the dropout.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        query: `(batch, Tq, dim)`.
        value: `(batch, Tv, value_dim)`.
        key: optional `(batch, Tv, dim)`; defaults to `value`.
        query_mask, value_mask, key_mask: optional boolean `(batch, T)`;
            default to the inputs' Keras masks.
        attention_mask: optional boolean `(batch, Tq, Tv)` or `(Tq, Tv)`;
            a query axis of size 1 applies to every query.
        use_causal_mask: bool, hide future keys.
        return_attention_scores: bool, also return `(batch, Tq, Tv)` weights.
        training: bool, whether dropout is active.

    Returns:
        `(batch, Tq, value_dim)`, and the weights on request.

    Example:

    >>> layer = ScaledDotProductAttention()
    >>> q = keras.random.normal((2, 5, 8))
    >>> v = keras.random.normal((2, 7, 8))
    >>> tuple(layer(q, v).shape)
    (2, 5, 8)

    Reference:
        - Vaswani et al., 2017, "Attention Is All You Need", section 3.2.1.
    """

    def __init__(
        self, scale=None, dropout=0.0, implementation=None, seed=None, **kwargs
    ):
        super().__init__(**kwargs)
        check_rate(type(self), "dropout", dropout)
        if scale is not None and (
            isinstance(scale, bool) or not isinstance(scale, (int, float))
        ):
            raise ValueError(
                f"{type(self).__name__}: `scale` must be None or a number. "
                f"Received: scale={scale!r}"
            )
        if implementation not in (None,) + attention_ops.attention.IMPLEMENTATIONS:
            raise ValueError(
                f"{type(self).__name__}: `implementation` must be None or one "
                f"of {attention_ops.attention.IMPLEMENTATIONS}. Received: "
                f"implementation={implementation!r}"
            )
        if implementation == "chunked" and dropout:
            raise ValueError(
                f"{type(self).__name__}: `implementation='chunked'` has no "
                "attention dropout; use `implementation='exact'` or "
                f"`dropout=0`. Received: dropout={dropout!r}"
            )
        self.supports_masking = True
        self.scale = scale
        self.dropout = dropout
        self.implementation = implementation
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _check(self, query_shape, value_shape, key_shape):
        for argument, shape in (
            ("query", query_shape),
            ("value", value_shape),
            ("key", key_shape),
        ):
            if len(shape) != 3:
                raise argument_error(
                    self,
                    argument,
                    "must have rank 3: (batch, sequence, features)",
                    f"{argument}.shape={tuple(shape)}",
                )
        if None not in (query_shape[-1], key_shape[-1]) and (
            query_shape[-1] != key_shape[-1]
        ):
            raise argument_error(
                self,
                "key",
                f"must have the query's feature size ({query_shape[-1]})",
                f"query.shape={tuple(query_shape)}, key.shape={tuple(key_shape)}",
            )
        if None not in (key_shape[1], value_shape[1]) and (
            key_shape[1] != value_shape[1]
        ):
            raise argument_error(
                self,
                "key",
                "must have as many positions as `value`",
                f"key.shape={tuple(key_shape)}, value.shape={tuple(value_shape)}",
            )

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        self._check(tuple(query_shape), tuple(value_shape), tuple(key_shape))
        self.built = True

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
    ):
        if key is None:
            key = value
        # Also when built: a rank-2 input would fail in an op, unnamed.
        self._check(tuple(query.shape), tuple(value.shape), tuple(key.shape))
        for tensor in (query, value, key):
            set_keras_mask(tensor, None)
        mask = merge_masks(
            self, 1, query, value, value_mask, key_mask, attention_mask
        )
        # Padding may hold anything (NaN, inf): keep it out of every product
        # (and gradient).
        value, key = hide_unseen(mask, value, key)
        result = attention_ops.dot_product_attention(
            query[:, :, None, :],
            key[:, :, None, :],
            value[:, :, None, :],
            mask=mask,
            is_causal=use_causal_mask,
            scale=self.scale,
            dropout_rate=self.dropout,
            seed=self.seed_generator,
            training=bool(training),
            return_scores=return_attention_scores,
            implementation=self.implementation,
        )
        out, scores = result if return_attention_scores else (result, None)
        out, scores = mask_queries(self, query, query_mask, out, scores)
        out = ops.squeeze(out, 2)
        if query_mask is not None:
            set_keras_mask(out, query_mask)
        if return_attention_scores:
            return out, ops.squeeze(scores, 1)
        return out

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        self._check(tuple(query_shape), tuple(value_shape), tuple(key_shape))
        return tuple(query_shape[:-1]) + (value_shape[-1],)

    def compute_output_spec(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
    ):
        key_shape = None if key is None else key.shape
        shape = self.compute_output_shape(query.shape, value.shape, key_shape)
        output = keras.KerasTensor(shape, dtype=self.compute_dtype)
        if return_attention_scores:
            scores = keras.KerasTensor(
                (query.shape[0], query.shape[1], value.shape[1]),
                dtype=self.compute_dtype,
            )
            return output, scores
        return output

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "scale": self.scale,
                "dropout": self.dropout,
                "implementation": self.implementation,
                "seed": self.seed,
            }
        )
        return config
