"""Attention pooling: learned queries summarise a sequence."""

import math

import keras
from keras import ops

from keras_attention import ops as attention_ops
from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.layers.attention.attention_masking import check_mask
from keras_attention.layers.attention.attention_masking import set_keras_mask
from keras_attention.layers.attention.registry import register_attention


# Not swappable: it does not take `(query, value)` like the variants that
# blocks, builders, the command line and the tuner pick from `available()`;
# `get()` still builds it by name.
@register_attention("pooling", swappable=False)
class AttentionPooling(keras.layers.Layer):
    """Pools a sequence into one vector (or a few) with learned queries.

    Each of `num_queries` learned queries (one per head) attends over the
    sequence with the shared core `keras_attention.ops.dot_product_attention`.
    The keys are a learned projection of the inputs into `num_heads` heads of
    size `key_dim`; the values are the inputs themselves, split into
    `num_heads` slices of `dim // num_heads` features, so each head returns a
    weighted average of its slice of the input vectors:

        w[h, i, t] = softmax_t(q[i, h] . (x_t W_k + b_k)[h] / sqrt(key_dim))
        y[i, h] = sum_t w[h, i, t] x_t[h]

    Padded positions (the input's Keras mask, e.g. from
    `Embedding(mask_zero=True)`, or an explicit `mask`) are never attended;
    an example whose sequence is all padding pools to zeros (never NaN).

    Args:
        num_queries: int, number of learned queries. Defaults to `1`.
        num_heads: int, number of heads; must divide the input's feature
            size. Defaults to `1`.
        key_dim: int, size of each head's keys and queries. Defaults to
            `dim // num_heads`.
        flatten: bool; with `num_queries > 1`, return
            `(batch, num_queries * dim)` instead of `(batch, num_queries, dim)`.
        use_bias: bool, whether the key projection has a bias.
        dropout: float in `[0, 1)`, dropout on the attention weights.
        kernel_initializer: initializer of the key projection.
        query_initializer: initializer of the learned queries. Defaults to
            `"zeros"`: the layer starts as masked average pooling.
        seed: int, seed of the dropout.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, T, dim)`.
        mask: optional boolean `(batch, T)`, `True` for real positions;
            defaults to the input's Keras mask.
        return_attention_scores: bool, also return the weights
            `(batch, num_heads, num_queries, T)`.
        training: bool, whether dropout is active.

    Returns:
        `(batch, dim)` when `num_queries == 1`, else `(batch, num_queries,
        dim)` (or `(batch, num_queries * dim)` with `flatten=True`); with
        `return_attention_scores=True` the tuple `(pooled, weights)`.

    Example:

    >>> tokens = keras.ops.convert_to_tensor([[5, 3, 8, 0], [2, 0, 0, 0]])
    >>> x = keras.layers.Embedding(10, 8, mask_zero=True)(tokens)
    >>> tuple(AttentionPooling(num_heads=2)(x).shape)
    (2, 8)

    Reference:
        - Lin et al., 2017, "A Structured Self-attentive Sentence Embedding"
          (several learned attention "hops" over a sequence).
        - Lee et al., 2019, "Set Transformer", section 3.2 (pooling by
          multi-head attention with learned seed vectors).
    """

    def __init__(
        self,
        num_queries=1,
        num_heads=1,
        key_dim=None,
        flatten=False,
        use_bias=True,
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        query_initializer="zeros",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        cls = type(self)
        check_positive_int(cls, "num_queries", num_queries)
        check_positive_int(cls, "num_heads", num_heads)
        check_positive_int(cls, "key_dim", key_dim, allow_none=True)
        check_rate(cls, "dropout", dropout)
        if not isinstance(flatten, bool):
            raise ValueError(
                f"{cls.__name__}: `flatten` must be a bool. Received: "
                f"flatten={flatten!r}"
            )
        self.supports_masking = True
        self.num_queries = num_queries
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.flatten = flatten
        self.use_bias = use_bias
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.query_initializer = keras.initializers.get(query_initializer)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _check(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise argument_error(
                self,
                "inputs",
                "must have rank 3: (batch, sequence, features)",
                f"inputs.shape={input_shape}",
            )
        dim = input_shape[-1]
        if dim is None:
            raise argument_error(
                self,
                "inputs",
                "must have a known last (feature) dimension",
                f"inputs.shape={input_shape}",
            )
        if dim % self.num_heads:
            raise argument_error(
                self,
                "num_heads",
                f"must divide the input's feature size ({dim})",
                f"num_heads={self.num_heads}, inputs.shape={input_shape}",
            )
        return dim

    def build(self, input_shape):
        dim = self._check(input_shape)
        key_dim = self.key_dim or dim // self.num_heads
        self.query = self.add_weight(
            name="query",
            shape=(self.num_queries, self.num_heads, key_dim),
            initializer=self.query_initializer,
        )
        self.key_dense = keras.layers.EinsumDense(
            "btd,dhk->bthk",
            output_shape=(None, self.num_heads, key_dim),
            bias_axes="hk" if self.use_bias else None,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="key",
        )
        self.key_dense.build(tuple(input_shape))
        self.built = True

    def call(
        self, inputs, mask=None, return_attention_scores=False, training=None
    ):
        dim = self._check(inputs.shape)
        h = self.num_heads
        key_dim = self.key_dim or dim // h
        batch = ops.shape(inputs)[0]
        length = inputs.shape[1] or ops.shape(inputs)[1]
        # The mask is handled here; the key projection must not see it.
        set_keras_mask(inputs, None)
        keys = self.key_dense(inputs)
        values = ops.reshape(inputs, (batch, length, h, dim // h))
        query = ops.cast(self.query, inputs.dtype)
        query = ops.broadcast_to(
            query[None], (batch, self.num_queries, h, key_dim)
        )
        attention_mask = None
        if mask is not None:
            check_mask(self, "mask", mask, tuple(inputs.shape[:2]))
            attention_mask = ops.cast(mask, "bool")[:, None, None, :]
        result = attention_ops.dot_product_attention(
            query,
            keys,
            values,
            mask=attention_mask,
            scale=1.0 / math.sqrt(key_dim),
            dropout_rate=self.dropout,
            seed=self.seed_generator,
            training=bool(training),
            return_scores=return_attention_scores,
            implementation="exact",
        )
        out, weights = result if return_attention_scores else (result, None)
        out = ops.reshape(out, (batch, self.num_queries, dim))
        if self.num_queries == 1:
            out = out[:, 0]
        elif self.flatten:
            out = ops.reshape(out, (batch, self.num_queries * dim))
        if return_attention_scores:
            return out, weights
        return out

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def compute_output_shape(self, input_shape):
        dim = self._check(input_shape)
        batch = tuple(input_shape)[0]
        if self.num_queries == 1:
            return (batch, dim)
        if self.flatten:
            return (batch, self.num_queries * dim)
        return (batch, self.num_queries, dim)

    def compute_output_spec(
        self, inputs, mask=None, return_attention_scores=False, training=None
    ):
        output = keras.KerasTensor(
            self.compute_output_shape(inputs.shape), dtype=self.compute_dtype
        )
        if return_attention_scores:
            weights = keras.KerasTensor(
                (
                    inputs.shape[0],
                    self.num_heads,
                    self.num_queries,
                    inputs.shape[1],
                ),
                dtype=self.compute_dtype,
            )
            return output, weights
        return output

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_queries": self.num_queries,
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "flatten": self.flatten,
                "use_bias": self.use_bias,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "query_initializer": keras.initializers.serialize(
                    self.query_initializer
                ),
                "seed": self.seed,
            }
        )
        return config
