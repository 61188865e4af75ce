"""The shared call of the single-head attention layers (no heads, no
projections of the inputs): `ScaledDotProductAttention` and
`AdditiveAttention`."""

import keras

from keras_attention.layers.attention.attention_masking import mask_queries
from keras_attention.layers.attention.attention_masking import merge_masks
from keras_attention.layers.attention.attention_masking import set_keras_mask
from keras_attention.layers.attention.base import BaseAttention
from keras_attention.ops.scores import hide_unseen


class SingleHeadAttention(keras.layers.Layer):
    """Single-head attention over `(batch, T, features)` inputs: the call.

    Subclasses implement `_attend()`, which maps the query, key and value
    and the merged boolean mask to the attended values (and, on request,
    the weights). This class does the rest of a call, the same for every
    single-head layer: `key` defaults to `value`, the input shapes are
    checked (`_check_input_shapes`), every source of masking (the Keras
    masks of the value and key, `value_mask`, `key_mask`, `attention_mask`)
    is merged into one boolean mask, keys and values that no query may see
    are zeroed before `_attend()` (padding may hold NaN or inf), the outputs
    and weights of masked queries are zeroed, and the output carries the
    query's Keras mask. `build()` checks the shapes and calls
    `_build_weights()`, the hook for layers with weights.

    Not a variant itself: it is not registered, and a subclass registers
    (and serializes) under its own name.

    Args:
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        query: `(batch, Tq, dq)`.
        value: `(batch, Tv, dv)`.
        key: optional `(batch, Tv, dk)`; defaults to `value`.
        query_mask, value_mask, key_mask: optional boolean `(batch, Tq)` /
            `(batch, Tv)`; default to the inputs' Keras masks. Masked queries
            output zeros, masked values are never attended.
        attention_mask: optional boolean `(batch, Tq, Tv)` or `(Tq, Tv)`;
            `True` means "may attend". A query axis of size 1 applies to
            every query.
        use_causal_mask: bool, hide keys `j > i` from query `i`.
        return_attention_scores: bool, also return the weights
            `(batch, Tq, Tv)`.
        training: bool, whether dropout is active.

    Returns:
        The attended values `(batch, Tq, dv)`, carrying the query's Keras
        mask, and with `return_attention_scores=True` the tuple
        `(output, weights)`.

    Example:

    >>> from keras_attention.ops.attention import attend_with_scores
    >>> class DotAttention(SingleHeadAttention):
    ...     def _attend(self, query, key, value, mask, use_causal_mask,
    ...                 return_attention_scores, training):
    ...         logits = keras.ops.einsum("bqd,bkd->bqk", query, key)
    ...         result = attend_with_scores(
    ...             logits, value, mask=mask, use_causal_mask=use_causal_mask,
    ...             return_scores=return_attention_scores,
    ...         )
    ...         if return_attention_scores:
    ...             return result
    ...         return result, None
    >>> q = keras.random.normal((2, 5, 8))
    >>> v = keras.random.normal((2, 7, 8))
    >>> out, weights = DotAttention()(q, v, return_attention_scores=True)
    >>> tuple(out.shape), tuple(weights.shape)
    ((2, 5, 8), (2, 5, 7))
    """

    # Rank, known feature sizes, as many keys as values, one batch size: the
    # checks of the projected shell. Subclasses may check otherwise.
    _check_input_shapes = BaseAttention._check_input_shapes

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        query_shape, value_shape, key_shape = (
            tuple(query_shape),
            tuple(value_shape),
            tuple(key_shape),
        )
        self._check_input_shapes(query_shape, value_shape, key_shape)
        self._build_weights(query_shape, value_shape, key_shape)
        self.built = True

    def _build_weights(self, query_shape, value_shape, key_shape):
        """Hook for subclasses with weights (called by `build`, shapes
        checked)."""

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
        """Maps the inputs to attended values. Subclasses implement this.

        Args:
            query: `(batch, Tq, dq)`.
            key: `(batch, Tv, dk)`, zero where no query may attend.
            value: `(batch, Tv, dv)`, zero where no query may attend.
            mask: boolean, broadcastable to `(batch, 1, Tq, Tv)`, or `None`;
                `True` means "may attend".
            use_causal_mask: bool, whether to also hide future keys.
            return_attention_scores: bool, whether weights are requested.
            training: bool or `None`, whether dropout is active.

        Returns:
            `(output, weights)`: output `(batch, Tq, dv)` and weights
            `(batch, Tq, Tv)`, or `None` when not requested.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement `_attend()`."
        )

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
        self._check_input_shapes(
            tuple(query.shape), tuple(value.shape), tuple(key.shape)
        )
        for tensor in (query, value, key):
            set_keras_mask(tensor, None)
        mask = merge_masks(
            self, 1, query, value, value_mask, key_mask, attention_mask
        )
        # Padding may hold anything (NaN, inf): keep it out of every product
        # (and gradient).
        value, key = hide_unseen(mask, value, key)
        out, weights = self._attend(
            query,
            key,
            value,
            mask=mask,
            use_causal_mask=use_causal_mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        if weights is not None:
            weights = weights[:, None]  # the heads axis of `mask_queries`
        out, weights = mask_queries(self, query, query_mask, out, weights)
        if query_mask is not None:
            set_keras_mask(out, query_mask)
        if return_attention_scores:
            return out, weights[:, 0]
        return out

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        self._check_input_shapes(
            tuple(query_shape), tuple(value_shape), tuple(key_shape)
        )
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
            weights = keras.KerasTensor(
                (query.shape[0], query.shape[1], value.shape[1]),
                dtype=self.compute_dtype,
            )
            return output, weights
        return output
