"""Bahdanau (additive) and Luong (general, multiplicative) attention."""

import keras
from keras import ops

from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.layers.attention.registry import register_attention
from keras_attention.layers.attention.single_head_attention import SingleHeadAttention
from keras_attention.layers.initializers import clone_initializer
from keras_attention.ops.attention import attend_with_scores

SCORES = ("additive", "general")


@register_attention("additive")
class AdditiveAttention(SingleHeadAttention):
    """Bahdanau (additive) or Luong "general" attention, with learned scores.

    For each query `q_i` and key `k_j` the layer computes a score

    - `score="additive"` (Bahdanau et al., 2015):
      `e_ij = v^T tanh(W_q q_i + W_k k_j + b)`, with `W_q: (dq, units)`,
      `W_k: (dk, units)`, `b: (units,)` (when `use_bias`) and `v: (units,)`;
    - `score="general"` (Luong et al., 2015): `e_ij = q_i^T W k_j`, with
      `W: (dq, dk)`,

    then `a_ij = softmax_j(e_ij)` over the keys that may be attended to
    (a query with nothing to attend to gets zero weights and a zero output,
    never NaN) and returns `c_i = sum_j a_ij value_j`. The scores, the
    softmax and the weighted sum run in float32 under every dtype policy;
    the results are cast back to the compute dtype. There are
    no heads and no value/output projections: the context has the value's
    feature size, as in the sequence-to-sequence models these scores come
    from. `Tq` may be `1` (one decoder step of an RNN decoder).

    Memory: the additive score needs the `(batch, Tq, Tv, units)` tensor
    `W_q q_i + W_k k_j` before the reduction by `v` (it cannot be written as
    a matrix product), so it costs `O(batch * Tq * Tv * units)` memory and
    time, `units` times the `(batch, Tq, Tv)` of the weights. The general
    score is two matrix products: `O(batch * Tq * Tv)` beyond the inputs.

    When to use it: encoder-decoder models in the style of Bahdanau (RNN
    decoders attending over encoder states, often one query at a time) and
    small models where a learned score is worth its O(Tq * Tv * units)
    memory; for long sequences prefer the dot-product variants.

    Args:
        units: int, size of the additive score's hidden layer. Defaults to
            the query's feature size. Only for `score="additive"`.
        score: `"additive"` (default) or `"general"`.
        use_bias: bool, whether the additive score has the bias `b`.
        dropout: float in `[0, 1)`, dropout on the attention weights.
        kernel_initializer: initializer of `W_q`, `W_k`, `v` and `W`.
        bias_initializer: initializer of `b`.
        kernel_regularizer: regularizer of the kernels.
        bias_regularizer: regularizer of `b`.
        seed: int, seed of the dropout.
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
        The context `(batch, Tq, dv)`, carrying the query's Keras mask, and
        with `return_attention_scores=True` the tuple `(context, weights)`.

    Example:

    >>> layer = AdditiveAttention(units=16)
    >>> decoder_state = keras.random.normal((2, 1, 8))    # one decoder step
    >>> encoder_states = keras.random.normal((2, 7, 12))
    >>> context, weights = layer(
    ...     decoder_state, encoder_states, return_attention_scores=True
    ... )
    >>> tuple(context.shape), tuple(weights.shape)
    ((2, 1, 12), (2, 1, 7))

    Reference:
        - Bahdanau, Cho & Bengio, 2015, "Neural Machine Translation by
          Jointly Learning to Align and Translate", appendix A.1.2.
        - Luong, Pham & Manning, 2015, "Effective Approaches to
          Attention-based Neural Machine Translation", section 3.1.
    """

    def __init__(
        self,
        units=None,
        score="additive",
        use_bias=True,
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        cls = type(self)
        if score not in SCORES:
            raise ValueError(
                f"{cls.__name__}: `score` must be one of {SCORES}. "
                f"Received: score={score!r}"
            )
        check_positive_int(cls, "units", units, allow_none=True)
        if score == "general" and units is not None:
            raise ValueError(
                f"{cls.__name__}: `units` is only used by score='additive'; "
                "the general score `q^T W k` has no hidden layer. Expected "
                f"units=None. Received: units={units!r}, score='general'"
            )
        check_rate(cls, "dropout", dropout)
        self.supports_masking = True
        self.units = units
        self.score = score
        self.use_bias = use_bias
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _kernel(self, name, shape, offset):
        # An int-seeded initializer repeats itself: its seed shifts per weight.
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=clone_initializer(self.kernel_initializer, offset),
            regularizer=self.kernel_regularizer,
        )

    def _build_weights(self, query_shape, value_shape, key_shape):
        dq, dk = query_shape[-1], key_shape[-1]
        if self.score == "general":
            self.kernel = self._kernel("kernel", (dq, dk), 0)
        else:
            units = self.units or dq
            self.query_kernel = self._kernel("query_kernel", (dq, units), 0)
            self.key_kernel = self._kernel("key_kernel", (dk, units), 1)
            self.score_vector = self._kernel("score_vector", (units,), 2)
            self.bias = None
            if self.use_bias:
                self.bias = self.add_weight(
                    name="bias",
                    shape=(units,),
                    initializer=self.bias_initializer,
                    regularizer=self.bias_regularizer,
                )

    def _logits(self, query, key):
        # In float32 under every dtype policy: float16 scores (and the sums
        # under the tanh) overflow for large inputs.
        query = ops.cast(query, "float32")
        key = ops.cast(key, "float32")
        if self.score == "general":
            projected = ops.matmul(query, ops.cast(self.kernel, "float32"))
            return ops.einsum("bqd,bkd->bqk", projected, key)
        q = ops.matmul(query, ops.cast(self.query_kernel, "float32"))
        k = ops.matmul(key, ops.cast(self.key_kernel, "float32"))
        if self.bias is not None:
            q = q + ops.cast(self.bias, "float32")
        # (batch, Tq, Tv, units): the O(Tq * Tv * units) part.
        hidden = ops.tanh(q[:, :, None, :] + k[:, None, :, :])
        return ops.einsum(
            "bqku,u->bqk", hidden, ops.cast(self.score_vector, "float32")
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
        result = attend_with_scores(
            self._logits(query, key),
            value,
            mask=mask,
            use_causal_mask=use_causal_mask,
            dropout_rate=self.dropout,
            seed=self.seed_generator,
            training=bool(training),
            return_scores=return_attention_scores,
        )
        return result if return_attention_scores else (result, None)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "score": self.score,
                "use_bias": self.use_bias,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
                "bias_regularizer": keras.regularizers.serialize(
                    self.bias_regularizer
                ),
                "seed": self.seed,
            }
        )
        return config
