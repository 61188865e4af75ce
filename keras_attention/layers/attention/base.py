"""The shared shell of every projected attention layer.

The shell (projections, heads, the `attend()` hook, checks, config) is
here; its masking helpers are in `attention_masking`, its key/value cache
in `key_value_cache`.
"""

import keras
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.layers.attention.attention_masking import mask_queries
from keras_attention.layers.attention.attention_masking import merge_masks
from keras_attention.layers.attention.attention_masking import set_keras_mask
from keras_attention.layers.attention.key_value_cache import KeyValueCache
from keras_attention.layers.attention.registry import register_attention
from keras_attention.layers.initializers import clone_initializer
from keras_attention.ops.scores import hide_unseen


@register_attention("base", public=False)
class BaseAttention(KeyValueCache, keras.layers.Layer):
    """Multi-head attention shell: projections, heads, masks, checks, config.

    Subclasses keep everything here and override `attend()`, which maps the
    projected query/key/value and the merged boolean mask to the attended
    values. The shell projects `(batch, T, dim)` inputs into heads with
    `EinsumDense` layers, merges every source of masking (Keras masks of the
    query, key and value, `attention_mask`, `use_causal_mask`), projects the
    heads back, and carries the Keras mask of the query to the output. Its
    call signature is the one of `keras.layers.MultiHeadAttention`.

    Args:
        num_heads: int, number of query heads.
        key_dim: int, size of each query/key head.
        value_dim: int, size of each value head. Defaults to `key_dim`.
        num_key_value_heads: int, number of key/value heads; must divide
            `num_heads`. Defaults to `num_heads`. Fewer key/value heads give
            grouped-query attention (GQA); `1` gives multi-query attention.
        dropout: float in `[0, 1)`, dropout rate on the attention weights.
        use_bias: bool, whether the projections have biases.
        output_shape: int, size of the output features. Defaults to the
            query's last dimension.
        kernel_initializer: initializer of the projection kernels.
        bias_initializer: initializer of the projection biases.
        kernel_regularizer: regularizer of the projection kernels.
        bias_regularizer: regularizer of the projection biases.
        activity_regularizer: regularizer of the output.
        kernel_constraint: constraint of the projection kernels.
        bias_constraint: constraint of the projection biases.
        seed: int, seed of the attention dropout.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        query: tensor `(batch, Tq, query_dim)`.
        value: tensor `(batch, Tv, value_dim)`.
        key: optional tensor `(batch, Tv, key_dim)`; defaults to `value`.
        query_mask: optional boolean `(batch, Tq)`; taken from the query's
            Keras mask when not given. Masked queries output zeros.
        value_mask: optional boolean `(batch, Tv)`; taken from the value's
            Keras mask when not given. Masked values are never attended.
        key_mask: optional boolean `(batch, Tv)`, like `value_mask`.
        attention_mask: optional boolean `(batch, Tq, Tv)` (or `(Tq, Tv)`, or
            `(batch, heads, Tq, Tv)`); `True` means "may attend". A query
            axis of size 1 (e.g. `(batch, 1, Tv)`, a key padding mask)
            applies to every query.
        Padding may hold anything: keys and values that the masks hide
        from every query, and masked queries, never reach the output, even
        when they are NaN or inf.
        use_causal_mask: bool, hide future keys from each query.
        return_attention_scores: bool, also return the attention weights
            `(batch, num_heads, Tq, Tv)` when the variant has them.
        training: bool, whether dropout is active.
        cache: optional key/value cache for incremental decoding, a tensor
            `(batch, 2, cache_length, num_key_value_heads, key_dim)` holding
            the projected keys (`cache[:, 0]`) and values (`cache[:, 1]`) of
            every position (`empty_cache` makes one, `project_cache` fills
            one from a sequence). Needs `value_dim == key_dim`. See below.
        cache_update_index: int or scalar int tensor, where the projected
            `key`/`value` of this call go in `cache`; `None` (with a `cache`)
            means the cache is used as it is and `key`/`value` are not read.

    Key/value cache: as in KerasHub's `CachedMultiHeadAttention`, three modes.
    Without `cache`, the layer attends as usual. With `cache` and
    `cache_update_index=i`, the keys and values of the `Tv` new positions
    are written into the cache at `i ... i + Tv - 1`, and the `Tq` new
    queries, at positions `i ... i + Tq - 1`, attend to the positions filled
    so far (`< i + Tv`), and with `use_causal_mask=True` to those up to
    their own position only. With `cache` and `cache_update_index=None`
    (e.g. cross-attention to an encoded source), the queries attend to every
    cached position. Masks of the cache cover the whole cache:
    `attention_mask` `(batch, Tq, cache_length)`, `value_mask`/`key_mask`
    `(batch, cache_length)`; `query_mask` masks the new queries.
    A call whose `cache_update_index` is the Python int `0` (prefilling the
    cache with a prompt) attends exactly like a call without cache, so it
    works for every variant; the other cached calls run `attend()` on the
    new queries against every cached position with a mask of absolute
    positions, which is exact for variants whose `attend()` does not take
    positions from tensor indices (see `cache_limitation`); the others raise
    a `ValueError` naming the reason. Decoding step by step this way gives
    what one causal call over the whole sequence gives.

    Returns:
        The attended output `(batch, Tq, output_shape)`, and with
        `return_attention_scores=True` the tuple `(output, scores)`. With a
        `cache`, the updated cache comes last: `(output, cache)` or
        `(output, scores, cache)`, the scores then covering the whole cache
        `(batch, num_heads, Tq, cache_length)`. Empty inputs (`Tq`, `Tv` or
        the batch of size 0) give empty results of these shapes; with
        `Tv = 0` every query has nothing to attend to: zero attention (and
        zero weights), so its output is the output projection's bias, as
        when all its keys are masked.

    Example:

    >>> from keras_attention import ops as attention_ops
    >>> class SharpAttention(BaseAttention):
    ...     # Exact attention with doubled scores (a lower temperature).
    ...     def attend(self, query, key, value, mask=None, use_causal_mask=False,
    ...                return_attention_scores=False, training=None):
    ...         out = attention_ops.dot_product_attention(
    ...             query, key, value, mask=mask, is_causal=use_causal_mask,
    ...             scale=2.0 / self.key_dim ** 0.5)
    ...         return out, None
    >>> layer = SharpAttention(num_heads=2, key_dim=8, num_key_value_heads=1)
    >>> x = keras.random.normal((2, 6, 16))
    >>> tuple(layer(x, x, use_causal_mask=True).shape)
    (2, 6, 16)
    """

    # Whether `attend()` can produce attention weights.
    supports_attention_scores = True

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        num_key_value_heads=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        cls = type(self)
        check_positive_int(cls, "num_heads", num_heads)
        check_positive_int(cls, "key_dim", key_dim)
        check_positive_int(cls, "value_dim", value_dim, allow_none=True)
        check_positive_int(
            cls, "num_key_value_heads", num_key_value_heads, allow_none=True
        )
        check_positive_int(cls, "output_shape", output_shape, allow_none=True)
        check_rate(cls, "dropout", dropout)
        num_key_value_heads = num_key_value_heads or num_heads
        if num_heads % num_key_value_heads:
            raise ValueError(
                f"{cls.__name__}: `num_key_value_heads` must divide "
                f"`num_heads`. Received: num_heads={num_heads}, "
                f"num_key_value_heads={num_key_value_heads}"
            )
        self.supports_masking = True
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim or key_dim
        self.num_key_value_heads = num_key_value_heads
        self.dropout = dropout
        self.use_bias = use_bias
        self.output_dim = output_shape
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    # ------------------------------------------------------------------
    # building
    # ------------------------------------------------------------------
    def _dense(self, name, equation, output_shape, bias_axes, seed_offset=0):
        # A fresh copy per projection, its integer seed shifted by
        # `seed_offset` (an int-seeded Keras initializer repeats itself).
        return keras.layers.EinsumDense(
            equation,
            output_shape=output_shape,
            bias_axes=bias_axes if self.use_bias else None,
            kernel_initializer=clone_initializer(self.kernel_initializer, seed_offset),
            bias_initializer=self.bias_initializer,
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            kernel_constraint=self.kernel_constraint,
            bias_constraint=self.bias_constraint,
            dtype=self.dtype_policy,
            name=name,
        )

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
            if shape[-1] is None:
                raise argument_error(
                    self,
                    argument,
                    "must have a known last (feature) dimension",
                    f"{argument}.shape={tuple(shape)}",
                )
        if (
            key_shape[1] is not None
            and value_shape[1] is not None
            and key_shape[1] != value_shape[1]
        ):
            raise argument_error(
                self,
                "key",
                "must have as many positions as `value`",
                f"key.shape={tuple(key_shape)}, "
                f"value.shape={tuple(value_shape)}",
            )
        for other, name in ((value_shape, "value"), (key_shape, "key")):
            if (
                query_shape[0] is not None
                and other[0] is not None
                and other[0] != query_shape[0]
            ):
                raise argument_error(
                    self,
                    name,
                    "must have the query's batch size",
                    f"query.shape={tuple(query_shape)}, "
                    f"{name}.shape={tuple(other)}",
                )

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        query_shape, value_shape, key_shape = (
            tuple(query_shape),
            tuple(value_shape),
            tuple(key_shape),
        )
        self._check_input_shapes(query_shape, value_shape, key_shape)
        out_dim = self.output_dim or query_shape[-1]
        h, kv = self.num_heads, self.num_key_value_heads
        self.query_dense = self._dense(
            "query", "abc,cde->abde", (None, h, self.key_dim), "de"
        )
        self.query_dense.build(query_shape)
        self.key_dense = self._dense(
            "key",
            "abc,cde->abde",
            (None, kv, self.key_dim),
            "de",
            seed_offset=1,
        )
        self.key_dense.build(key_shape)
        self.value_dense = self._dense(
            "value",
            "abc,cde->abde",
            (None, kv, self.value_dim),
            "de",
            seed_offset=2,
        )
        self.value_dense.build(value_shape)
        self.output_dense = self._dense(
            "attention_output",
            "abcd,cde->abe",
            (None, out_dim),
            "e",
            seed_offset=3,
        )
        self.output_dense.build((query_shape[0], query_shape[1], h, self.value_dim))
        self.build_attention(query_shape, value_shape, key_shape)
        self.built = True

    def build_attention(self, query_shape, value_shape, key_shape):
        """Hook for subclasses that own extra weights (called by `build`)."""

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
        """Maps projected heads to attended values. Subclasses override this.

        Args:
            query: `(batch, Tq, num_heads, key_dim)`.
            key: `(batch, Tv, num_key_value_heads, key_dim)`.
            value: `(batch, Tv, num_key_value_heads, value_dim)`.
            mask: boolean, broadcastable to `(batch, num_heads, Tq, Tv)`, or
                `None`; `True` means "may attend".
            use_causal_mask: bool, whether to also hide future keys.
            return_attention_scores: bool, whether weights are requested.
            training: bool, whether dropout is active.

        Returns:
            `(output, scores)`: output `(batch, Tq, num_heads, value_dim)` and
            weights `(batch, num_heads, Tq, Tv)` or `None` if not requested.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement `attend()`."
        )

    # ------------------------------------------------------------------
    # call
    # ------------------------------------------------------------------
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
        cache=None,
        cache_update_index=None,
    ):
        if key is None:
            key = value
        if cache is not None or cache_update_index is not None:
            return self._call_with_cache(
                query,
                value,
                key,
                query_mask,
                value_mask,
                key_mask,
                attention_mask,
                use_causal_mask,
                return_attention_scores,
                training,
                cache,
                cache_update_index,
            )
        attention_mask = self._open_call(
            query, value, key, attention_mask, return_attention_scores
        )
        self.check_call_arguments(
            tuple(value.shape), tuple(key.shape), attention_mask, use_causal_mask
        )
        mask = merge_masks(
            self,
            self.num_heads,
            query,
            value,
            value_mask,
            key_mask,
            attention_mask,
        )
        # Padding may hold anything (NaN, inf): zeroed before the
        # projections, it reaches neither the outputs nor the gradients.
        value, key = hide_unseen(mask, value, key)
        q = self.query_dense(query)
        k = self.key_dense(key)
        v = self.value_dense(value)
        out, scores = self.attend(
            q,
            k,
            v,
            mask=mask,
            use_causal_mask=use_causal_mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        return self._finish(
            query, query_mask, out, scores, return_attention_scores
        )

    def _open_call(self, query, value, key, attention_mask, return_attention_scores):
        """What every call does first (cached or not); returns the
        `attention_mask` as a tensor (or `None`)."""
        # `build` checks the shapes once; a built layer called on other
        # inputs would otherwise fail inside a projection, with its message.
        self._check_input_shapes(
            tuple(query.shape), tuple(value.shape), tuple(key.shape)
        )
        if attention_mask is not None:
            attention_mask = ops.convert_to_tensor(attention_mask)
        # Masks are handled here, at the level of this layer (the Keras masks
        # were passed in as `*_mask` by `Layer.__call__`).
        for tensor in (query, value, key):
            set_keras_mask(tensor, None)
        self._check_scores_supported(return_attention_scores)
        return attention_mask

    def _check_scores_supported(self, return_attention_scores):
        if return_attention_scores and not self.supports_attention_scores:
            raise ValueError(
                f"Layer '{self.name}' ({type(self).__name__}) does not "
                "compute attention weights; it cannot honour "
                "`return_attention_scores=True`."
            )

    def _finish(self, query, query_mask, out, scores, return_scores, *extra):
        """Output projection, masked queries zeroed, the call's results."""
        out = self.output_dense(out)
        # After the output projection, so masked queries give zeros rather
        # than the projection's bias.
        out, scores = mask_queries(self, query, query_mask, out, scores)
        if query_mask is not None:
            set_keras_mask(out, query_mask)
        results = (out, scores) if return_scores else (out,)
        results += extra
        return results if len(results) > 1 else out

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        query_shape = tuple(query_shape)
        self._check_input_shapes(query_shape, tuple(value_shape), tuple(key_shape))
        return query_shape[:-1] + (self.output_dim or query_shape[-1],)

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
        cache=None,
        cache_update_index=None,
    ):
        key_shape = None if key is None else key.shape
        shape = self.compute_output_shape(query.shape, value.shape, key_shape)
        if cache is not None or cache_update_index is not None:
            self._check_cache(cache, query, value, cache_update_index)
        self.check_call_arguments(
            tuple(value.shape),
            tuple(value.shape if key is None else key.shape),
            attention_mask,
            use_causal_mask,
        )
        output = keras.KerasTensor(shape, dtype=self.compute_dtype)
        if return_attention_scores:
            self._check_scores_supported(return_attention_scores)
            scores_shape = self.attention_scores_shape(
                query.shape, value.shape if cache is None else cache.shape[1:]
            )
            scores = keras.KerasTensor(scores_shape, dtype=self.compute_dtype)
            if cache is not None:
                return output, scores, self._cache_spec(cache)
            return output, scores
        if cache is not None:
            return output, self._cache_spec(cache)
        return output

    def check_call_arguments(
        self, value_shape, key_shape, attention_mask, use_causal_mask
    ):
        """Hook: rejects call arguments the variant cannot honour.

        Called by `call` and by `compute_output_spec` before any work, so a
        functional model fails when it is built, not at its first step. The
        shell accepts everything; variants raise a clear `ValueError`.
        """

    def attention_scores_shape(self, query_shape, value_shape):
        """Shape of the weights `return_attention_scores=True` returns."""
        return (query_shape[0], self.num_heads, query_shape[1], value_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "num_key_value_heads": self.num_key_value_heads,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "output_shape": self.output_dim,
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
                "activity_regularizer": keras.regularizers.serialize(
                    self.activity_regularizer
                ),
                "kernel_constraint": keras.constraints.serialize(
                    self.kernel_constraint
                ),
                "bias_constraint": keras.constraints.serialize(
                    self.bias_constraint
                ),
                "seed": self.seed,
            }
        )
        return config
