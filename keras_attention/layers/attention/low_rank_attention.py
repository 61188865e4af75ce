"""Linformer: attention over keys and values compressed along the sequence."""

import keras
from keras import ops

from keras_attention import ops as attention_ops
from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.layers.attention.base import BaseAttention
from keras_attention.layers.attention.registry import Tunable
from keras_attention.layers.attention.registry import register_attention
from keras_attention.layers.initializers import clone_initializer


@register_attention("low_rank")
class LowRankAttention(BaseAttention):
    """Linformer attention: every query attends to `rank` compressed keys.

    The keys and values are projected into heads as in multi-head attention,
    then compressed along the sequence axis by two learned matrices `E` and
    `F` of shape `(rank, max_length)`, shared by the batch and by all heads
    (the paper's "headwise sharing"):

        K' = E[:, :Tk] @ K,   V' = F[:, :Tk] @ V        (rank rows each)
        output = softmax(Q K'^T / sqrt(key_dim)) V'

    per head, followed by the usual output projection. A query therefore
    scores `rank` compressed positions instead of `Tk` tokens: time and
    memory grow as `O(Tq * rank + Tk * rank)` instead of `O(Tq * Tk)`.

    Details:

    - Inputs shorter than `max_length` use the first `Tk` columns of `E` and
      `F`; this is exactly what a `max_length` input whose extra positions
      are padding computes. Longer inputs are rejected with a `ValueError`
      when the layer is built or called (Keras traces models with the
      length of the batch at hand); a graph traced with an unknown length
      (e.g. a SavedModel served with `(batch, None, dim)` inputs) fails
      instead in TensorFlow's slice of `E`/`F` ("Expected size[1] in
      [0, max_length]").
    - Key padding (Keras masks of `key`/`value`, `key_mask`, `value_mask`) is
      applied *before* the compression: the projected keys and values of
      padded positions are set to zero, so they contribute nothing to `K'`
      and `V'`. There is no rescaling by the number of real tokens: a padded
      position contributes what a missing one would (nothing), and an input
      gives the same output whether or not it is padded. An example whose
      keys are all padding has no compressed position to attend to: its
      heads and weights are zeros (its output is the output projection's
      bias), like in `MultiHeadAttention`.
    - Per-query masks cannot be applied after the compression mixes the
      positions: `use_causal_mask=True` and an `attention_mask` that differs
      between queries or heads raise a `ValueError`. (An `attention_mask`
      whose query and heads axes have size 1, e.g. `(batch, 1, Tv)`, is the
      same for every query: a key padding mask, applied like `value_mask`.)
    - The compression sums over up to `max_length` positions; it runs in
      float32 under every dtype policy (`E` and `F` are never cast to float16
      or bfloat16), and so does the attention over the compressed keys and
      values (scores, softmax, weighted sum); its results are cast back to
      the compute dtype.
    - `Tq` may differ from `Tk` (cross-attention); only `Tk` is bounded by
      `max_length`.

    When to use it: long, fixed-maximum-length inputs that are encoded as a
    whole (classification, retrieval, encoders of documents, long audio or
    image patch sequences), where quadratic attention is too slow or too big
    and a global, learned summary of the sequence is good enough. Not for
    autoregressive decoding (no causal mask), for inputs longer than a
    length fixed when the model is built, or when each query needs its own
    mask or sharp token-level alignments (copying, retrieval of one exact
    token).

    Args:
        num_heads: int, number of query heads.
        key_dim: int, size of each query/key head.
        max_length: int, the largest key/value length the layer accepts (the
            number of columns of `E` and `F`).
        rank: int in `[1, max_length]`, the number of compressed key/value
            positions (`k` in the paper). Defaults to `64`; must not exceed
            `max_length`.
        share_kv_projection: bool; when `True`, keys and values are
            compressed by the same matrix (`E == F`, the paper's "key-value
            sharing"). Defaults to `False`.
        projection_initializer: initializer of `E` and `F`. Defaults to
            `"glorot_uniform"`: entries of variance `2 / (rank + max_length)`,
            so for `rank << max_length` a compressed key of a full-length
            input has about `sqrt(2)` times the scale of a key.
        projection_regularizer: optional regularizer of `E` and `F`.
        projection_constraint: optional constraint of `E` and `F`.
        value_dim: int, size of each value head; defaults to `key_dim`.
        num_key_value_heads: int dividing `num_heads`; defaults to
            `num_heads`. Each key/value head is compressed by the same `E`
            and `F`.
        **kwargs: the other arguments of `BaseAttention` (`dropout` on the
            `(Tq, rank)` attention weights, `use_bias`, `output_shape`,
            initializers, regularizers, constraints, `seed`) and of
            `keras.layers.Layer`.

    Call arguments:
        query: `(batch, Tq, query_dim)`.
        value: `(batch, Tv, value_dim)` with `Tv <= max_length`.
        key: optional `(batch, Tv, key_dim)`; defaults to `value`.
        query_mask: optional boolean `(batch, Tq)`; defaults to the query's
            Keras mask. Masked queries output zeros.
        value_mask, key_mask: optional boolean `(batch, Tv)`; default to the
            Keras masks of `value` and `key`. Masked positions are removed
            before the compression.
        attention_mask: only a key padding mask can be honoured, that is an
            `attention_mask` with a query axis of size 1 (`(batch, 1, Tv)`,
            `(1, Tv)` or `(batch, 1, 1, Tv)`), which acts like the same
            `value_mask`; anything else raises a `ValueError`.
        use_causal_mask: must be `False` (raises otherwise).
        return_attention_scores: bool, also return the attention weights.
        training: bool, whether attention dropout is active.

    Returns:
        The output `(batch, Tq, output_shape)`. With
        `return_attention_scores=True`, the tuple `(output, scores)` where
        `scores` has shape `(batch, num_heads, Tq, rank)`: the softmax
        weights of each query over the `rank` *compressed* positions (rows
        of `K'`), not over the input tokens.

    Example:

    >>> layer = LowRankAttention(num_heads=4, key_dim=16, max_length=128,
    ...                          rank=32)
    >>> x = keras.random.normal((2, 100, 64))
    >>> out, scores = layer(x, x, return_attention_scores=True)
    >>> tuple(out.shape), tuple(scores.shape)
    ((2, 100, 64), (2, 4, 100, 32))

    Reference:
        - Wang et al., 2020, "Linformer: Self-Attention with Linear
          Complexity", https://arxiv.org/abs/2006.04768.
    """

    search_space = {
        "rank": Tunable("length", "length"),
        "share_kv_projection": Tunable([False, True], False),
    }

    @classmethod
    def length_defaults(cls, length, given):
        """What the layer needs from the key length when the caller did not
        say: it projects a fixed `max_length`, to `rank <= 64` rows."""
        return {"max_length": length, "rank": min(64, given.get("max_length", length))}

    def __init__(
        self,
        num_heads,
        key_dim,
        max_length,
        rank=64,
        share_kv_projection=False,
        projection_initializer="glorot_uniform",
        projection_regularizer=None,
        projection_constraint=None,
        value_dim=None,
        num_key_value_heads=None,
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
        check_positive_int(cls, "max_length", max_length)
        check_positive_int(cls, "rank", rank)
        if rank > max_length:
            raise ValueError(
                f"{cls.__name__}: `rank` must be at most `max_length` (the "
                "compression cannot have more rows than the sequence has "
                f"positions). Received: rank={rank}, max_length={max_length}"
            )
        if not isinstance(share_kv_projection, bool):
            raise ValueError(
                f"{cls.__name__}: `share_kv_projection` must be a bool. "
                f"Received: share_kv_projection={share_kv_projection!r}"
            )
        self.max_length = max_length
        self.rank = rank
        self.share_kv_projection = share_kv_projection
        self.projection_initializer = keras.initializers.get(
            projection_initializer
        )
        self.projection_regularizer = keras.regularizers.get(
            projection_regularizer
        )
        self.projection_constraint = keras.constraints.get(
            projection_constraint
        )

    # ------------------------------------------------------------------
    # checks shared by build, call and the symbolic call
    # ------------------------------------------------------------------
    def _check_lengths(self, value_shape, key_shape):
        for argument, shape in (("value", value_shape), ("key", key_shape)):
            if shape is None or len(shape) < 2:
                continue  # `_check_input_shapes` reports bad ranks
            length = shape[1]
            if length is not None and length > self.max_length:
                raise argument_error(
                    self,
                    argument,
                    f"must have at most max_length={self.max_length} "
                    "positions (the columns of the compression matrices E "
                    "and F)",
                    f"{argument}.shape={tuple(shape)}, i.e. {length} "
                    "positions",
                )

    def check_call_arguments(
        self, value_shape, key_shape, attention_mask, use_causal_mask
    ):
        if use_causal_mask:
            raise ValueError(
                f"Layer '{self.name}' ({type(self).__name__}): "
                "`use_causal_mask` must be False: the compression mixes "
                "every key position (future ones included) into each "
                "compressed key, so a causal mask has no meaning. Received: "
                "use_causal_mask=True"
            )
        if attention_mask is not None:
            shape = tuple(attention_mask.shape)
            # The query axis (and the heads axis of a rank-4 mask) must have
            # size 1: only then is the mask a key padding mask.
            per_query = {2: shape[:1], 3: shape[1:2], 4: shape[1:3]}.get(
                len(shape), shape
            )
            if any(size != 1 for size in per_query):
                raise argument_error(
                    self,
                    "attention_mask",
                    "must be a key padding mask: only masks that are the "
                    "same for every query and head can be applied before "
                    "the keys are compressed (pass padding as `value_mask` "
                    "or through Keras masks)",
                    f"attention_mask.shape={shape}",
                )
        self._check_lengths(value_shape, key_shape)

    # ------------------------------------------------------------------
    # weights
    # ------------------------------------------------------------------
    def _projection(self, name, seed_offset):
        # An int-seeded initializer would give E and F the same values.
        initializer = clone_initializer(self.projection_initializer, seed_offset)
        # `autocast=False`: E and F stay float32 under mixed precision; the
        # compression casts its inputs to float32 instead.
        return self.add_weight(
            name=name,
            shape=(self.rank, self.max_length),
            initializer=initializer,
            regularizer=self.projection_regularizer,
            constraint=self.projection_constraint,
            dtype="float32",
            autocast=False,
        )

    def build_attention(self, query_shape, value_shape, key_shape):
        self._check_lengths(value_shape, key_shape)
        if self.share_kv_projection:
            self.key_projection = self._projection("key_value_projection", 0)
            self.value_projection = self.key_projection
        else:
            self.key_projection = self._projection("key_projection", 0)
            self.value_projection = self._projection("value_projection", 1)

    # ------------------------------------------------------------------
    # call
    # ------------------------------------------------------------------
    def _compress(self, projection, x, keep):
        """`projection[:, :T] @ x` per batch and head, in float32."""
        length = x.shape[1]
        matrix = ops.convert_to_tensor(projection)
        if length is None:
            length = ops.shape(x)[1]
            matrix = ops.slice(matrix, (0, 0), (self.rank, length))
        elif length != self.max_length:
            matrix = matrix[:, :length]
        x = ops.cast(x, "float32")
        if keep is not None:
            x = ops.where(keep, x, 0.0)
        return ops.einsum("rt,bthd->brhd", matrix, x)

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
        """Compresses `key`/`value` to `rank` rows, then attends to them.

        `mask` must be a key padding mask `(batch | 1, 1, 1, Tk)`.
        Returns the output `(batch, Tq, num_heads, value_dim)` and the
        weights `(batch, num_heads, Tq, rank)` (or `None`).
        """
        if use_causal_mask:
            self.check_call_arguments(None, None, None, use_causal_mask)
        keep = None
        compressed_mask = None
        if mask is not None:
            if mask.shape[1] != 1 or mask.shape[2] != 1:
                raise argument_error(
                    self,
                    "mask",
                    "must be a key padding mask of shape (batch, 1, 1, Tk) "
                    "(per-query or per-head masks can't be applied to "
                    "compressed keys)",
                    f"mask.shape={tuple(mask.shape)}",
                )
            keys = mask[:, 0, 0, :]  # (batch, Tk)
            keep = keys[:, :, None, None]
            # A compressed position exists when at least one key is real; an
            # example with no real key has nothing to attend to.
            compressed_mask = ops.any(keys, axis=-1)[:, None, None, None]
        if key.shape[1] == 0:
            # No key at all: nothing to compress, nothing to attend to.
            compressed_mask = ops.zeros((1, 1, 1, 1), "bool")
        # The compressed keys and values stay in float32 (a sum over up to
        # `max_length` positions may leave float16's range), and so do the
        # scores (`dot_product_attention` computes them in float32).
        compressed_key = self._compress(self.key_projection, key, keep)
        compressed_value = self._compress(self.value_projection, value, keep)
        result = attention_ops.dot_product_attention(
            ops.cast(query, "float32"),
            compressed_key,
            compressed_value,
            mask=compressed_mask,
            dropout_rate=self.dropout,
            seed=self.seed_generator,
            training=bool(training),
            return_scores=return_attention_scores,
            # The (Tq, rank) scores are small: the exact core is the fast one.
            implementation="exact",
        )
        out, scores = result if return_attention_scores else (result, None)
        out = ops.cast(out, query.dtype)
        if scores is not None:
            scores = ops.cast(scores, query.dtype)
        return out, scores

    # ------------------------------------------------------------------
    # shapes and config
    # ------------------------------------------------------------------
    def attention_scores_shape(self, query_shape, value_shape):
        # Weights over the `rank` compressed positions, not over tokens.
        return (query_shape[0], self.num_heads, query_shape[1], self.rank)

    def cache_limitation(self, query_length, causal):
        """See `BaseAttention.cache_limitation`: never (the key axis is
        projected as a whole)."""
        return (
            "it projects the whole key axis (a fixed `max_length`) to `rank` "
            "rows, so every new key changes every compressed row"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_length": self.max_length,
                "rank": self.rank,
                "share_kv_projection": self.share_kv_projection,
                "projection_initializer": keras.initializers.serialize(
                    self.projection_initializer
                ),
                "projection_regularizer": keras.regularizers.serialize(
                    self.projection_regularizer
                ),
                "projection_constraint": keras.constraints.serialize(
                    self.projection_constraint
                ),
            }
        )
        return config
