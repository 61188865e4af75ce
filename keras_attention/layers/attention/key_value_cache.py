"""The key/value cache of the attention shell: decoding step by step.

`KeyValueCache` is a mixin of `BaseAttention`: a cached call projects only
the new positions, writes their keys and values into the cache at
`cache_update_index`, and attends to every cached position so far. Each
variant says whether it can (`cache_limitation`).
"""

import keras
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.layers.attention.attention_masking import check_mask
from keras_attention.layers.attention.attention_masking import get_keras_mask
from keras_attention.layers.attention.attention_masking import merge_masks
from keras_attention.layers.attention.attention_masking import set_keras_mask


def _is_static_zero(index):
    return (
        isinstance(index, int) and not isinstance(index, bool) and index == 0
    )


class KeyValueCache:
    """Cached calls of an attention shell (see the module docstring).

    Mixed into `BaseAttention`: it uses the shell's projections
    (`query_dense`, `key_dense`, `value_dense`), `attend()`, `_finish()` and
    sizes (`num_heads`, `num_key_value_heads`, `key_dim`, `value_dim`).
    """

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
        attention_mask = self._open_call(
            query, value, key, attention_mask, return_attention_scores
        )
        self._check_cache(cache, query, value, index)
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
