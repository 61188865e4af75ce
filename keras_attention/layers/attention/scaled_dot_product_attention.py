"""Single-head scaled dot-product attention without weights."""

import keras
from keras import ops

from keras_attention import ops as attention_ops
from keras_attention.arguments import argument_error
from keras_attention.arguments import check_rate
from keras_attention.layers.attention.registry import register_attention
from keras_attention.layers.attention.single_head_attention import SingleHeadAttention


@register_attention("scaled_dot_product")
class ScaledDotProductAttention(SingleHeadAttention):
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

    # Looser than the default checks: feature sizes may be unknown and batch
    # sizes are not compared, but the query's and key's feature sizes match.
    def _check_input_shapes(self, query_shape, value_shape, key_shape):
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

    def _attend(
        self,
        query,
        key,
        value,
        mask,
        use_causal_mask,
        return_attention_scores,
        training,
    ):
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
        if scores is not None:
            scores = ops.squeeze(scores, 1)
        return ops.squeeze(out, 2), scores

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
