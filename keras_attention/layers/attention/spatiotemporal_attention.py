"""Self-attention over video-shaped inputs: joint, divided or factorized."""

import keras
from keras import ops
from keras.src.backend.common.masking import get_keras_mask

from keras_attention.arguments import argument_error
from keras_attention.layers.attention.attention_masking import check_mask
from keras_attention.layers.attention.composite_attention import CompositeAttention
from keras_attention.layers.attention.registry import register_attention

MODES = ("joint", "divided", "factorized")


@register_attention("spatiotemporal", swappable=False)
class SpatioTemporalAttention(CompositeAttention):
    """Self-attention over `(batch, T, H, W, C)` or `(batch, T, N, C)` clips.

    `T` frames of `N = H * W` tokens each. With `S(.)` attention among the
    tokens of one frame, `T(.)` attention of one spatial position across the
    frames, and `J(.)` attention among all `T * N` tokens (each with its own
    projections, built from the registered `attention` variant), the layer
    returns the attention update `y` (add it to the input as a residual):

    - `mode="joint"`: `y = J(x)`, `O((T N)^2)`;
    - `mode="divided"` (TimeSformer, temporal then spatial, with the
      residual between them): `u = x + T(x)`, `y = u + S(u) - x`, so
      `x + y` is TimeSformer's divided space-time attention,
      `O(T N (T + N))`;
    - `mode="factorized"` (ViViT's factorised self-attention, spatial then
      temporal): `u = x + S(x)`, `y = u + T(u) - x`, `O(T N (T + N))`.

    With `causal=True` a token only sees tokens of its own and earlier
    frames (block-causal in time for `"joint"`; a causal temporal step
    otherwise). A `frame_mask` `(batch, T)` marks real frames: padded
    frames are never attended and output zeros; a clip with no real frame
    outputs zeros (never NaN). A Keras mask on the inputs (e.g. from
    `Embedding(mask_zero=True)` on `(batch, T, N)` token ids) is honoured
    the same way, per token (`(batch, T, N)` or `(batch, T, H, W)`) or per
    frame (`(batch, T)`), together with `frame_mask`.

    The inner variant must support what the mode asks of it: `causal=True`
    needs a causal mask in the temporal step (`"low_rank"` has none) and,
    for `"joint"`, a block-causal `attention_mask` (not `"linear"` or
    `"low_rank"`).

    Args:
        num_heads: int, heads of each inner attention.
        key_dim: int, size of each head.
        mode: `"joint"`, `"divided"` (default) or `"factorized"`.
        causal: bool, causal in time.
        value_dim: int, value head size. Defaults to `key_dim`.
        dropout: float in `[0, 1)`, attention dropout.
        use_bias: bool, projection biases.
        attention: registered attention variant of the inner attentions
            (see `keras_attention.layers.available()`). Defaults to
            `"multi_head"`.
        attention_kwargs: dict, extra arguments of the inner attentions.
        kernel_initializer: initializer of the projection kernels.
        bias_initializer: initializer of the projection biases.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, T, H, W, C)` or `(batch, T, N, C)`, `T`, `H`, `W`,
            `N`, `C` known.
        frame_mask: optional boolean `(batch, T)`, `True` for real frames.
        return_attention_scores: bool; also return the weights: for
            `"joint"` `(batch, heads, T N, T N)`; otherwise the tuple
            `(temporal, spatial)` with temporal `(batch * N, heads, T, T)` and
            spatial `(batch * T, heads, N, N)`.
        training: bool, whether dropout is active.

    Returns:
        A tensor of the input's shape (and the weights, if asked).

    Example:

    >>> video = keras.random.normal((2, 4, 3, 3, 16))  # 4 frames of 3x3
    >>> layer = SpatioTemporalAttention(num_heads=2, key_dim=8, causal=True)
    >>> tuple(layer(video).shape)
    (2, 4, 3, 3, 16)

    Reference:
        - [Bertasius et al., 2021, "Is Space-Time Attention All You Need for
          Video Understanding?"](https://arxiv.org/abs/2102.05095)
          (TimeSformer, divided space-time attention).
        - [Arnab et al., 2021, "ViViT: A Video Vision Transformer"](
          https://arxiv.org/abs/2103.15691) (factorised self-attention).
    """

    MODES = MODES

    def __init__(
        self,
        num_heads,
        key_dim,
        mode="divided",
        causal=False,
        **kwargs,
    ):
        super().__init__(num_heads, key_dim, mode, **kwargs)
        if not isinstance(causal, bool):
            raise ValueError(
                f"{type(self).__name__}: `causal` must be a bool. Received: "
                f"causal={causal!r}"
            )
        self.causal = causal

    # ------------------------------------------------------------------
    def _check(self, shape):
        shape = tuple(shape)
        if len(shape) not in (4, 5):
            raise argument_error(
                self,
                "inputs",
                "must have rank 4 (batch, T, N, C) or 5 (batch, T, H, W, C)",
                f"inputs.shape={shape}",
            )
        if any(d is None for d in shape[1:]):
            raise argument_error(
                self,
                "inputs",
                "must have known frames, spatial sizes and channels",
                f"inputs.shape={shape}",
            )
        frames, channels = shape[1], shape[-1]
        tokens = 1
        for d in shape[2:-1]:
            tokens *= d
        return frames, tokens, channels

    def _inner(self, name, length, channels):
        layer = self.inner(name, length)
        layer.build((None, length, channels), (None, length, channels))
        return layer

    def build(self, input_shape):
        frames, tokens, channels = self._check(input_shape)
        if self.mode == "joint":
            self.joint_attention = self._inner("joint_attention", frames * tokens, channels)
        else:
            self.temporal_attention = self._inner("temporal_attention", frames, channels)
            self.spatial_attention = self._inner("spatial_attention", tokens, channels)
        self.built = True

    # ------------------------------------------------------------------
    def _attend(self, layer, x, mask, causal, return_scores, training, attention_mask=None):
        kwargs = {"training": training}
        if mask is not None:
            kwargs["query_mask"] = mask
            kwargs["value_mask"] = mask
        if causal:
            kwargs["use_causal_mask"] = True
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if return_scores:
            return layer(x, x, return_attention_scores=True, **kwargs)
        return layer(x, x, **kwargs), None

    def _temporal(self, x, mask, return_scores, training):
        """`(B, T, N, C)` -> attention across frames per position."""
        _, t, n, c = x.shape
        seq = ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, t, c))
        if mask is not None:
            mask = ops.reshape(ops.transpose(mask, (0, 2, 1)), (-1, t))
        out, scores = self._attend(
            self.temporal_attention, seq, mask, self.causal, return_scores, training
        )
        out = ops.transpose(ops.reshape(out, (-1, n, t, c)), (0, 2, 1, 3))
        return out, scores

    def _spatial(self, x, mask, return_scores, training):
        """`(B, T, N, C)` -> attention among the tokens of each frame."""
        _, t, n, c = x.shape
        seq = ops.reshape(x, (-1, n, c))
        if mask is not None:
            mask = ops.reshape(mask, (-1, n))
        out, scores = self._attend(
            self.spatial_attention, seq, mask, False, return_scores, training
        )
        return ops.reshape(out, (-1, t, n, c)), scores

    def _joint(self, x, mask, return_scores, training):
        _, t, n, c = x.shape
        seq = ops.reshape(x, (-1, t * n, c))
        if mask is not None:
            mask = ops.reshape(mask, (-1, t * n))
        attention_mask = None
        if self.causal:
            frame = ops.arange(t * n) // n
            attention_mask = frame[None, :] <= frame[:, None]
        out, scores = self._attend(
            self.joint_attention, seq, mask, False, return_scores, training, attention_mask
        )
        return ops.reshape(out, (-1, t, n, c)), scores

    def _token_mask(self, inputs, frame_mask, frames, tokens):
        """`(B, T, N)` boolean mask of the real tokens (or `None`) from
        `frame_mask` and the inputs' Keras mask."""
        masks = []
        if frame_mask is not None:
            check_mask(self, "frame_mask", frame_mask, (inputs.shape[0], frames))
            masks.append(ops.cast(frame_mask, "bool")[:, :, None])
        keras_mask = get_keras_mask(inputs)
        if keras_mask is not None:
            if len(keras_mask.shape) == 2:
                check_mask(self, "mask", keras_mask, (inputs.shape[0], frames))
                masks.append(ops.cast(keras_mask, "bool")[:, :, None])
            else:
                check_mask(self, "mask", keras_mask, tuple(inputs.shape[:-1]))
                masks.append(
                    ops.reshape(ops.cast(keras_mask, "bool"), (-1, frames, tokens))
                )
        if not masks:
            return None
        mask = masks[0] if len(masks) == 1 else ops.logical_and(*masks)
        return ops.broadcast_to(mask, (ops.shape(inputs)[0], frames, tokens))

    def call(self, inputs, frame_mask=None, return_attention_scores=False, training=None):
        frames, tokens, channels = self._check(inputs.shape)
        mask = self._token_mask(inputs, frame_mask, frames, tokens)
        x = ops.reshape(inputs, (-1, frames, tokens, channels))
        if self.mode == "joint":
            y, scores = self._joint(x, mask, return_attention_scores, training)
        else:
            first, second = (
                (self._temporal, self._spatial)
                if self.mode == "divided"
                else (self._spatial, self._temporal)
            )
            a, scores_a = first(x, mask, return_attention_scores, training)
            u = x + a
            b, scores_b = second(u, mask, return_attention_scores, training)
            y = a + b
            if self.mode == "divided":
                scores = (scores_a, scores_b)
            else:
                scores = (scores_b, scores_a)
        if mask is not None:
            y = ops.where(mask[..., None], y, ops.zeros_like(y))
        y = ops.reshape(y, (-1,) + tuple(inputs.shape[1:]))
        if return_attention_scores:
            return y, scores
        return y

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        return tuple(input_shape)

    def compute_output_spec(self, inputs, frame_mask=None, return_attention_scores=False, training=None):
        frames, tokens, _ = self._check(inputs.shape)
        out = keras.KerasTensor(tuple(inputs.shape), dtype=self.compute_dtype)
        if not return_attention_scores:
            return out
        h, b = self.num_heads, inputs.shape[0]
        if self.mode == "joint":
            return out, keras.KerasTensor((b, h, frames * tokens, frames * tokens), dtype=self.compute_dtype)
        return out, (
            keras.KerasTensor((None, h, frames, frames), dtype=self.compute_dtype),
            keras.KerasTensor((None, h, tokens, tokens), dtype=self.compute_dtype),
        )

    def get_config(self):
        config = super().get_config()
        config["causal"] = self.causal
        return config
