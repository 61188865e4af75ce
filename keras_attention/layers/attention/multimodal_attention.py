"""Attention between two streams of different feature sizes."""

import keras
from keras import ops
from keras.src.backend.common.masking import get_keras_mask

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.layers.attention.attention_masking import check_mask
from keras_attention.layers.attention.attention_masking import mask_queries
from keras_attention.layers.attention.attention_masking import set_keras_mask
from keras_attention.layers.attention.composite_attention import CompositeAttention
from keras_attention.layers.attention.registry import register_attention

MODES = ("cross", "co", "merged")


@register_attention("multimodal", swappable=False)
class MultiModalAttention(CompositeAttention):
    """Attention between two modalities, e.g. text tokens and image patches.

    Stream `a` is `(batch, Ta, Da)`, stream `b` is `(batch, Tb, Db)`; the
    feature sizes may differ. With `A(q <- kv)` an attention layer of the
    registered `attention` variant (queries from `q`, keys and values from
    `kv`, output projected to `q`'s feature size; for the default
    `"multi_head"`, `A(q <- kv) = concat_h(softmax(q Wq_h (kv Wk_h)^T /
    sqrt(key_dim)) kv Wv_h) Wo`), the layer returns attention updates (add
    them to the inputs as residuals):

    - `mode="cross"`: `a' = A_ab(a <- b)`, one stream reads the other;
    - `mode="co"` (ViLBERT co-attention): `a' = A_ab(a <- b)` and
      `b' = A_ba(b <- a)`, both directions, each with its own weights;
    - `mode="merged"` (single-stream, VisualBERT): both streams projected to
      `hidden_dim` with a learned modality embedding added,
      `z = [a W_a + e_a ; b W_b + e_b]`, joint self-attention
      `z' = A(z <- z)` over the `Ta + Tb` tokens, split back and projected
      to each stream's size: `a' = z'[:Ta] U_a`, `b' = z'[Ta:] U_b`.

    Each stream's padding mask (its Keras mask, e.g. from
    `Embedding(mask_zero=True)`, or `a_mask` / `b_mask`) is respected: padded
    tokens are never attended and their outputs are zeros; a token with
    nothing to attend to (in `"cross"` and `"co"`, a token of an example
    whose other stream is all padding) outputs zeros and zero weights, never
    NaN. Each output stream carries its input stream's mask as its Keras
    mask.

    Args:
        num_heads: int, attention heads.
        key_dim: int, size of each head.
        mode: `"cross"` (default), `"co"` or `"merged"`.
        value_dim: int, value head size. Defaults to `key_dim`.
        hidden_dim: int, the joint width of `"merged"`. Defaults to
            `num_heads * key_dim`.
        dropout: float in `[0, 1)`, attention dropout.
        use_bias: bool, projection biases.
        attention: registered attention variant (see
            `keras_attention.layers.available()`) of the inner attentions.
        attention_kwargs: dict, extra arguments of the inner attentions.
        kernel_initializer: initializer of the kernels.
        bias_initializer: initializer of the biases.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        a: `(batch, Ta, Da)`.
        b: `(batch, Tb, Db)`.
        a_mask: optional boolean `(batch, Ta)`, `True` for real tokens;
            defaults to `a`'s Keras mask.
        b_mask: optional boolean `(batch, Tb)`; defaults to `b`'s Keras mask.
        return_attention_scores: bool, also return the weights.
        training: bool, whether dropout is active.

    Returns:
        `"cross"`: `a'` `(batch, Ta, Da)`; `"co"` and `"merged"`: the tuple
        `(a', b')`. With `return_attention_scores=True`, `(outputs, scores)`
        where scores are `(batch, heads, Ta, Tb)` for `"cross"`, the pair
        `((batch, heads, Ta, Tb), (batch, heads, Tb, Ta))` for `"co"` and
        `(batch, heads, Ta + Tb, Ta + Tb)` for `"merged"` (or the inner
        variant's own weights shape, e.g. `"low_rank"`'s compressed keys).

    Example:

    >>> text = keras.random.normal((2, 5, 16))     # 5 tokens, 16 features
    >>> image = keras.random.normal((2, 9, 32))    # 9 patches, 32 features
    >>> layer = MultiModalAttention(num_heads=2, key_dim=8, mode="co")
    >>> text_out, image_out = layer(text, image)
    >>> tuple(text_out.shape), tuple(image_out.shape)
    ((2, 5, 16), (2, 9, 32))

    Reference:
        - [Lu et al., 2019, "ViLBERT"](https://arxiv.org/abs/1908.02265)
          (co-attentional transformer layers).
        - [Li et al., 2019, "VisualBERT"](https://arxiv.org/abs/1908.03557)
          (single-stream joint attention with segment embeddings).
    """

    MODES = MODES

    def __init__(
        self,
        num_heads,
        key_dim,
        mode="cross",
        hidden_dim=None,
        **kwargs,
    ):
        super().__init__(num_heads, key_dim, mode, **kwargs)
        check_positive_int(type(self), "hidden_dim", hidden_dim, allow_none=True)
        self.hidden_dim = hidden_dim

    # ------------------------------------------------------------------
    def _check(self, a_shape, b_shape):
        a_shape, b_shape = tuple(a_shape), tuple(b_shape)
        for argument, shape in (("a", a_shape), ("b", b_shape)):
            if len(shape) != 3:
                raise argument_error(
                    self,
                    argument,
                    "must have rank 3 (batch, tokens, features)",
                    f"{argument}.shape={shape}",
                )
            if shape[-1] is None:
                raise argument_error(
                    self, argument, "must have a known feature size", f"{argument}.shape={shape}"
                )
        if None not in (a_shape[0], b_shape[0]) and a_shape[0] != b_shape[0]:
            raise argument_error(
                self,
                "b",
                "must have the batch size of `a`",
                f"a.shape={a_shape}, b.shape={b_shape}",
            )
        return a_shape, b_shape

    def _inner(self, name, query_shape, value_shape, output_dim):
        layer = self.inner(name, value_shape[1], output_shape=output_dim)
        try:
            layer.build(query_shape, value_shape)
            features = layer.compute_output_shape(query_shape, value_shape)[-1]
            if features != output_dim:
                raise ValueError(
                    f"it returns {features} features, not the {output_dim} "
                    "of the stream it updates"
                )
        except ValueError as error:
            raise ValueError(
                f"{type(self).__name__}: attention={self.attention!r} cannot "
                f"attend from a {query_shape} stream to a {value_shape} stream "
                f"in mode={self.mode!r}: {error}"
            ) from None
        return layer

    def _joint_width(self):
        return self.hidden_dim or self.num_heads * self.key_dim

    def build(self, a_shape, b_shape):
        a_shape, b_shape = self._check(a_shape, b_shape)
        da, db = a_shape[-1], b_shape[-1]
        if self.mode in ("cross", "co"):
            self.a_attention = self._inner("a_from_b", a_shape, b_shape, da)
            if self.mode == "co":
                self.b_attention = self._inner("b_from_a", b_shape, a_shape, db)
        else:
            hidden = self._joint_width()
            self.a_in = self.dense("a_projection", hidden, da)
            self.b_in = self.dense("b_projection", hidden, db)
            self.modality_embedding = self.add_weight(
                name="modality_embedding",
                shape=(2, hidden),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
            )
            length = None
            if a_shape[1] is not None and b_shape[1] is not None:
                length = a_shape[1] + b_shape[1]
            joint = (None, length, hidden)
            self.joint_attention = self._inner("joint", joint, joint, hidden)
            self.a_out = self.dense("a_output", da, hidden)
            self.b_out = self.dense("b_output", db, hidden)
        self.built = True

    # ------------------------------------------------------------------
    def _masks(self, a, b, a_mask, b_mask):
        masks = []
        for argument, x, mask in (("a_mask", a, a_mask), ("b_mask", b, b_mask)):
            if mask is None:
                mask = get_keras_mask(x)
            if mask is not None:
                check_mask(self, argument, mask, tuple(x.shape[:2]))
                mask = ops.cast(mask, "bool")
            masks.append(mask)
        return masks

    @staticmethod
    def _attend(layer, query, value, query_mask, value_mask, scores, training):
        kwargs = {"training": training}
        if value_mask is not None:
            kwargs["value_mask"] = value_mask
            # An example whose other stream is all padding leaves its
            # queries nothing to read: masking them gives zeros (not the
            # output projection's bias) and zero weights.
            any_key = ops.any(value_mask, axis=1, keepdims=True)
            if query_mask is None:
                query_mask = ops.broadcast_to(any_key, ops.shape(query)[:2])
            else:
                query_mask = ops.logical_and(query_mask, any_key)
        if query_mask is not None:
            kwargs["query_mask"] = query_mask
        if scores:
            return layer(query, value, return_attention_scores=True, **kwargs)
        return layer(query, value, **kwargs), None

    def call(self, a, b, a_mask=None, b_mask=None, return_attention_scores=False, training=None):
        self._check(a.shape, b.shape)
        # The inner attentions remove the Keras masks of the tensors they
        # read; the caller's `a` and `b` get theirs back below.
        kept = [(x, get_keras_mask(x)) for x in (a, b)]
        a_mask, b_mask = self._masks(a, b, a_mask, b_mask)
        scores = return_attention_scores
        if self.mode == "cross":
            out, weights = self._attend(self.a_attention, a, b, a_mask, b_mask, scores, training)
        elif self.mode == "co":
            a_new, w_ab = self._attend(self.a_attention, a, b, a_mask, b_mask, scores, training)
            b_new, w_ba = self._attend(self.b_attention, b, a, b_mask, a_mask, scores, training)
            out, weights = (a_new, b_new), (w_ab, w_ba)
        else:
            out, weights = self._merged(a, b, a_mask, b_mask, scores, training)
        for x, mask in kept:
            if mask is not None:
                set_keras_mask(x, mask)
        self._set_output_masks(out, a, b, a_mask, b_mask)
        if return_attention_scores:
            return out, weights
        return out

    def _set_output_masks(self, out, a, b, a_mask, b_mask):
        # `Layer.__call__` only passes `a` and its mask to `compute_mask`,
        # so the outputs get their streams' masks here.
        masks = self.compute_mask(a, b, a_mask=a_mask, b_mask=b_mask)
        if self.mode == "cross":
            out, masks = (out,), (masks,)
        for tensor, mask in zip(out, masks):
            set_keras_mask(tensor, mask)

    def _merged(self, a, b, a_mask, b_mask, scores, training):
        ta = a.shape[1] if a.shape[1] is not None else ops.shape(a)[1]
        za = self.a_in(a) + ops.cast(self.modality_embedding[0], self.compute_dtype)
        zb = self.b_in(b) + ops.cast(self.modality_embedding[1], self.compute_dtype)
        z = ops.concatenate([za, zb], axis=1)
        mask = None
        if a_mask is not None or b_mask is not None:
            if a_mask is None:
                a_mask = ops.ones(ops.shape(a)[:2], "bool")
            if b_mask is None:
                b_mask = ops.ones(ops.shape(b)[:2], "bool")
            mask = ops.concatenate([a_mask, b_mask], axis=1)
        joint, weights = self._attend(self.joint_attention, z, z, mask, mask, scores, training)
        # After the output projections, so padded tokens give zeros rather
        # than the projections' biases.
        a_new, _ = mask_queries(self, a, a_mask, self.a_out(joint[:, :ta]))
        b_new, _ = mask_queries(self, b, b_mask, self.b_out(joint[:, ta:]))
        return (a_new, b_new), weights

    # ------------------------------------------------------------------
    def compute_mask(self, a, b=None, a_mask=None, b_mask=None):
        """The output streams' Keras masks: each stream's own mask
        (`a_mask`, else `a`'s Keras mask; the same for `b`). `a'` for
        `"cross"`, the pair `(a', b')` otherwise."""
        if a_mask is None:
            a_mask = get_keras_mask(a)
        if b_mask is None and b is not None:
            b_mask = get_keras_mask(b)
        if self.mode == "cross":
            return a_mask
        return a_mask, b_mask

    def compute_output_shape(self, a_shape, b_shape):
        a_shape, b_shape = self._check(a_shape, b_shape)
        if self.mode == "cross":
            return a_shape
        return a_shape, b_shape

    def compute_output_spec(self, a, b, a_mask=None, b_mask=None, return_attention_scores=False, training=None):
        a_shape, b_shape = self._check(a.shape, b.shape)
        dtype = self.compute_dtype

        def spec(shape):
            return keras.KerasTensor(shape, dtype=dtype)

        out = spec(a_shape) if self.mode == "cross" else (spec(a_shape), spec(b_shape))
        self._set_output_masks(out, a, b, a_mask, b_mask)
        if not return_attention_scores:
            return out
        if self.mode == "merged":
            total = None if None in (a_shape[1], b_shape[1]) else a_shape[1] + b_shape[1]
            joint = spec((a_shape[0], total, self._joint_width()))
            pairs = [(self.joint_attention, joint, joint)]
        else:
            pairs = [(self.a_attention, a, b)]
            if self.mode == "co":
                pairs.append((self.b_attention, b, a))
        # The inner variants know their weights' shape (and whether they
        # have weights at all: they raise a clear error otherwise).
        weights = tuple(
            layer.compute_output_spec(spec(q.shape), spec(v.shape), return_attention_scores=True)[1]
            for layer, q, v in pairs
        )
        return out, (weights if self.mode == "co" else weights[0])

    def get_config(self):
        config = super().get_config()
        config["hidden_dim"] = self.hidden_dim
        return config
