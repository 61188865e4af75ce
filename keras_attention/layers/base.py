"""The shared shell of every projected attention layer."""

import keras
from keras import ops

# Keras keeps the mask-attribute helpers out of its public API; the version
# is pinned, and `keras.layers.MultiHeadAttention` relies on the same call.
from keras.src.backend.common.masking import get_keras_mask
from keras.src.backend.common.masking import set_keras_mask

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.layers.registry import register_attention
from keras_attention.ops.scores import hide_unseen


def check_mask(layer, argument, mask, expected_shape, broadcast_axes=()):
    """Raises a clear ValueError unless `mask` has `expected_shape`.

    Axes listed in `broadcast_axes` may also have size 1.
    """
    shape = tuple(mask.shape)
    if len(shape) != len(expected_shape) or any(
        have is not None
        and want is not None
        and have != want
        and not (have == 1 and axis in broadcast_axes)
        for axis, (have, want) in enumerate(zip(shape, expected_shape))
    ):
        raise argument_error(
            layer,
            argument,
            f"must have shape {expected_shape}",
            f"{argument}.shape={shape}",
        )


def merge_masks(
    layer, num_heads, query, value, value_mask, key_mask, attention_mask
):
    """Merges the key-side Keras masks and `attention_mask` of a call.

    Query masks are not folded in: `mask_queries` zeroes masked query rows
    afterwards, which is equivalent (a query with nothing to attend to gets
    zeros) and keeps the mask at `(batch, 1, 1, Tv)` when only padding is
    involved. An `attention_mask` whose query axis has size 1 (e.g.
    `(batch, 1, Tv)`) is the same for every query, a key padding mask, and
    broadcasts over the queries.

    Returns:
        A boolean mask broadcastable to `(batch, heads, Tq, Tv)` (rank 4,
        heads axis of size 1 or `num_heads`), or `None`.
    """
    batch, tq, tv = query.shape[0], query.shape[1], value.shape[1]
    merged = None
    for argument, m in (("value_mask", value_mask), ("key_mask", key_mask)):
        if m is None:
            continue
        check_mask(layer, argument, m, (batch, tv))
        m = ops.cast(m, "bool")[:, None, None, :]
        merged = m if merged is None else ops.logical_and(merged, m)
    if attention_mask is None:
        return merged
    attention_mask = ops.convert_to_tensor(attention_mask)
    rank = len(attention_mask.shape)
    # The query axis may have size 1: the mask then holds for every query.
    if rank == 2:
        check_mask(layer, "attention_mask", attention_mask, (tq, tv), (0,))
        m = attention_mask[None, None]
    elif rank == 3:
        check_mask(
            layer, "attention_mask", attention_mask, (batch, tq, tv), (1,)
        )
        m = attention_mask[:, None]
    elif rank == 4:
        heads = attention_mask.shape[1]
        heads = heads if heads in (1, None) else num_heads
        check_mask(
            layer,
            "attention_mask",
            attention_mask,
            (batch, heads, tq, tv),
            (2,),
        )
        m = attention_mask
    else:
        raise argument_error(
            layer,
            "attention_mask",
            "must have shape (batch, Tq, Tv), (Tq, Tv) or "
            "(batch, heads, Tq, Tv)",
            f"attention_mask.shape={tuple(attention_mask.shape)}",
        )
    m = ops.cast(m, "bool")
    return m if merged is None else ops.logical_and(merged, m)


def mask_queries(layer, query, query_mask, output, scores=None):
    """Zeroes the output rows (and weights) of masked queries.

    Args:
        layer: the calling layer (for error messages).
        query: the layer's query input `(batch, Tq, ...)`.
        query_mask: boolean `(batch, Tq)` or `None`.
        output: `(batch, Tq, ...)` attended values.
        scores: optional `(batch, heads, Tq, Tv)` weights.

    Returns:
        `(output, scores)` with masked query rows set to zero (selected, not
        multiplied: a padded query may hold NaN or inf).
    """
    if query_mask is None:
        return output, scores
    check_mask(layer, "query_mask", query_mask, tuple(query.shape[:2]))
    keep = ops.cast(query_mask, "bool")
    for _ in range(len(output.shape) - 2):
        keep = ops.expand_dims(keep, -1)
    output = ops.where(keep, output, 0.0)
    if scores is not None:
        keep = ops.cast(query_mask, "bool")[:, None, :, None]
        scores = ops.where(keep, scores, 0.0)
    return output, scores


def _is_static_zero(index):
    return (
        isinstance(index, int) and not isinstance(index, bool) and index == 0
    )


@register_attention("base", public=False)
class BaseAttention(keras.layers.Layer):
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
        # A fresh copy per projection; an integer seed is shifted by
        # `seed_offset`, so a seeded initializer doesn't give the projections
        # the same kernel (an int-seeded Keras initializer repeats itself).
        config = self.kernel_initializer.get_config()
        if isinstance(config.get("seed"), int) and seed_offset:
            config["seed"] += seed_offset
        return keras.layers.EinsumDense(
            equation,
            output_shape=output_shape,
            bias_axes=bias_axes if self.use_bias else None,
            kernel_initializer=self.kernel_initializer.__class__.from_config(
                config
            ),
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
        # `build` checks the shapes once; a built layer called on other
        # inputs would otherwise fail inside a projection, with its message.
        self._check_input_shapes(
            tuple(query.shape), tuple(value.shape), tuple(key.shape)
        )
        if attention_mask is not None:
            attention_mask = ops.convert_to_tensor(attention_mask)
        self.check_call_arguments(
            tuple(value.shape), tuple(key.shape), attention_mask, use_causal_mask
        )
        # Masks are handled here, at the level of this layer (the Keras masks
        # were passed in as `*_mask` by `Layer.__call__`).
        for tensor in (query, value, key):
            set_keras_mask(tensor, None)
        if return_attention_scores and not self.supports_attention_scores:
            raise ValueError(
                f"Layer '{self.name}' ({type(self).__name__}) does not "
                "compute attention weights; it cannot honour "
                "`return_attention_scores=True`."
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
            if not self.supports_attention_scores:
                raise ValueError(
                    f"Layer '{self.name}' ({type(self).__name__}) does not "
                    "compute attention weights; it cannot honour "
                    "`return_attention_scores=True`."
                )
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

    def _cache_spec(self, cache):
        return keras.KerasTensor(tuple(cache.shape), dtype=self.compute_dtype)

    # ------------------------------------------------------------------
    # key/value cache
    # ------------------------------------------------------------------
    def cache_limitation(self, query_length, causal):
        """Hook: why cached calls past the prefill can't run, or `None`.

        A cached call past the prefill runs `attend()` on the new queries
        against every cached position, with positions given by a mask. That
        is exact when `attend()` never takes positions from tensor indices
        (rotary or ALiBi encodings, windows, block layouts, projections of
        the key axis do). The shell lets every call run; each variant that
        cannot overrides this to state its own limits.

        Args:
            query_length: int or `None`, the number of new query positions.
            causal: bool, whether each query sees the cache up to its own
                position (a per-query mask) rather than all of it.

        Returns:
            `None`, or a str saying what prevents it.
        """
        return None

    def check_cache_support(self, query_length=1, causal=True):
        """Raises a `ValueError` unless cached decoding steps can run.

        Args:
            query_length: int, the number of new query positions per step.
            causal: bool, whether the steps are causal self-attention.
        """
        reason = self.cache_limitation(query_length, causal)
        if reason is not None:
            variant = getattr(self, "registry_name", None)
            raise ValueError(
                f"Layer '{self.name}' ({type(self).__name__}"
                + (f", variant {variant!r}" if variant else "")
                + ") cannot decode step by step with a key/value cache: "
                f"{reason}. Decode without a cache (a full forward pass per "
                "step), or use a variant that can (e.g. 'multi_head')."
            )

    def _check_cache_layout(self):
        if self.value_dim != self.key_dim:
            raise argument_error(
                self,
                "cache",
                "needs `value_dim == key_dim` (keys and values share one "
                "cache tensor)",
                f"key_dim={self.key_dim}, value_dim={self.value_dim}",
            )

    def empty_cache(self, batch_size, length, dtype=None):
        """A zero key/value cache for `length` positions.

        Args:
            batch_size: int or scalar int tensor.
            length: positive int, the cache length (prompt + new tokens).
            dtype: the cache dtype; defaults to the compute dtype.

        Returns:
            Zeros `(batch_size, 2, length, num_key_value_heads, key_dim)`.
        """
        self._check_cache_layout()
        check_positive_int(type(self), "length", length)
        return ops.zeros(
            (batch_size, 2, length, self.num_key_value_heads, self.key_dim),
            dtype=dtype or self.compute_dtype,
        )

    def project_cache(self, value, key=None):
        """The key/value cache of a whole sequence (e.g. an encoded source).

        Computes the key and value projections once, for cross-attention
        calls with `cache_update_index=None`.

        Args:
            value: tensor `(batch, Tv, value_features)`.
            key: optional tensor `(batch, Tv, key_features)`; defaults to
                `value`.

        Returns:
            `(batch, 2, Tv, num_key_value_heads, key_dim)`.
        """
        self._check_cache_layout()
        key = value if key is None else key
        if not self.built:
            self.build(value.shape, value.shape, key.shape)
        # The projections do not take masks; keep those of the caller's
        # tensors for their other consumers.
        masks = [(t, get_keras_mask(t)) for t in (value, key)]
        for tensor, _ in masks:
            set_keras_mask(tensor, None)
        cache = ops.stack([self.key_dense(key), self.value_dense(value)], axis=1)
        for tensor, mask in masks:
            if mask is not None:
                set_keras_mask(tensor, mask)
        return cache

    def _check_cache(self, cache, query, value, cache_update_index):
        if cache is None:
            raise argument_error(
                self,
                "cache_update_index",
                "needs a `cache`",
                f"cache=None, cache_update_index={cache_update_index!r}",
            )
        self._check_cache_layout()
        shape = tuple(cache.shape)
        expected = (
            query.shape[0],
            2,
            None,
            self.num_key_value_heads,
            self.key_dim,
        )
        if len(shape) != 5 or any(
            have is not None and want is not None and have != want
            for have, want in zip(shape, expected)
        ):
            raise argument_error(
                self,
                "cache",
                "must have shape (batch, 2, cache_length, "
                f"num_key_value_heads={self.num_key_value_heads}, "
                f"key_dim={self.key_dim})",
                f"cache.shape={shape}",
            )
        length = shape[2]
        if length is None:
            raise argument_error(
                self,
                "cache",
                "must have a static length (axis 2)",
                f"cache.shape={shape}",
            )
        if cache_update_index is None:
            return
        new = value.shape[1]
        if new is not None and new > length:
            raise argument_error(
                self,
                "value",
                f"must not have more positions than the cache ({length})",
                f"value.shape={tuple(value.shape)}",
            )
        if isinstance(cache_update_index, int) and not isinstance(
            cache_update_index, bool
        ):
            if not 0 <= cache_update_index <= length - (new or 0):
                raise argument_error(
                    self,
                    "cache_update_index",
                    f"must be in [0, {length} - new positions]",
                    f"cache_update_index={cache_update_index}",
                )

    def _cache_key_mask(self, argument, mask, batch, length):
        """A `(batch, cache_length)` key mask over the whole cache."""
        if mask is None:
            return None
        if len(mask.shape) == 2 and mask.shape[1] not in (None, length):
            raise argument_error(
                self,
                argument,
                f"must cover the whole cache, (batch, {length}), in a cached "
                "call (a mask of the new positions only would not hide them "
                "from later calls); with Keras masks, mask the queries with "
                "`query_mask` and the cached positions with `attention_mask`",
                f"{argument}.shape={tuple(mask.shape)}",
            )
        check_mask(self, argument, mask, (batch, length))
        return ops.cast(mask, "bool")

    def _call_with_cache(
        self,
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
        index,
    ):
        self._check_input_shapes(
            tuple(query.shape), tuple(value.shape), tuple(key.shape)
        )
        self._check_cache(cache, query, value, index)
        if attention_mask is not None:
            attention_mask = ops.convert_to_tensor(attention_mask)
        for tensor in (query, value, key):
            set_keras_mask(tensor, None)
        if return_attention_scores and not self.supports_attention_scores:
            raise ValueError(
                f"Layer '{self.name}' ({type(self).__name__}) does not "
                "compute attention weights; it cannot honour "
                "`return_attention_scores=True`."
            )
        cache = ops.cast(cache, self.compute_dtype)
        batch, tq = query.shape[0], query.shape[1]
        length = cache.shape[2]
        q = self.query_dense(query)
        if index is None:
            if use_causal_mask:
                raise argument_error(
                    self,
                    "use_causal_mask",
                    "needs a `cache_update_index` (a cache used as it is has "
                    "no position for the queries)",
                    "use_causal_mask=True, cache_update_index=None",
                )
            new = None
            k, v = cache[:, 0], cache[:, 1]
        else:
            self.check_call_arguments(
                tuple(value.shape), tuple(key.shape), None, use_causal_mask
            )
            new = value.shape[1]
            k_new = ops.cast(self.key_dense(key), cache.dtype)
            v_new = ops.cast(self.value_dense(value), cache.dtype)
            start = (0, index, 0, 0)
            k = ops.slice_update(cache[:, 0], start, k_new)
            v = ops.slice_update(cache[:, 1], start, v_new)
            cache = ops.stack([k, v], axis=1)
        value_mask, key_mask = (
            self._cache_key_mask(argument, m, batch, length)
            for argument, m in (("value_mask", value_mask), ("key_mask", key_mask))
        )
        mask = merge_masks(
            self, self.num_heads, query, k, value_mask, key_mask, attention_mask
        )
        if _is_static_zero(index):
            # Prefill: the new positions are the whole sequence so far, so
            # the call is the uncached one (exact for every variant).
            out, scores = self.attend(
                q,
                k_new,
                v_new,
                mask=None if mask is None else mask[..., :new],
                use_causal_mask=use_causal_mask,
                return_attention_scores=return_attention_scores,
                training=training,
            )
            if scores is not None and new != length:
                scores = ops.pad(
                    scores, ((0, 0), (0, 0), (0, 0), (0, length - new))
                )
        else:
            self.check_cache_support(
                tq, causal=bool(use_causal_mask) and index is not None
            )
            if index is not None:
                key_positions = ops.arange(length, dtype="int32")[None, :]
                index = ops.cast(index, "int32")
                allowed = key_positions < index + new
                if use_causal_mask:
                    query_positions = index + ops.arange(tq, dtype="int32")
                    allowed = ops.logical_and(
                        allowed, key_positions <= query_positions[:, None]
                    )
                allowed = ops.broadcast_to(
                    allowed[None, None],
                    (ops.shape(q)[0], 1, allowed.shape[0], length),
                )
                mask = allowed if mask is None else ops.logical_and(mask, allowed)
            out, scores = self.attend(
                q,
                k,
                v,
                mask=mask,
                use_causal_mask=False,
                return_attention_scores=return_attention_scores,
                training=training,
            )
        return self._finish(
            query, query_mask, out, scores, return_attention_scores, cache
        )

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
