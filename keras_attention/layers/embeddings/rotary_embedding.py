"""Rotary position embeddings (RoPE) as a layer."""

import keras

from keras_attention.arguments import check_positive_float
from keras_attention.ops.positions import apply_rotary_embedding


@keras.saving.register_keras_serializable(package="keras_attention")
class RotaryEmbedding(keras.layers.Layer):
    """Rotary position embeddings (RoPE), applied to queries or keys.

    Rotates the per-head vectors of its input by angles proportional to their
    positions, so that the dot product of a query and a key depends only on
    their distance. Apply it to the projected queries and keys, after the
    heads are split and before the scores are computed. Uses the "rotate half"
    pairing of GPT-NeoX, Llama and KerasHub (channel `k` with channel
    `k + head_dim / 2`); see `keras_attention.ops.apply_rotary_embedding`.
    The rotation is computed in float32 and returned in the input's dtype.

    Args:
        max_wavelength: positive float, the base of the frequencies.
            Defaults to `10000`.
        scaling_factor: positive float dividing the positions (linear
            position interpolation for a longer context). Defaults to `1.0`.
        **kwargs: other keyword arguments of `keras.layers.Layer`, such as
            `name` and `dtype`.

    Call arguments:
        inputs: tensor of shape `(batch, seq, heads, head_dim)`; `head_dim`
            must be static and even.
        positions: optional int tensor of shape `(seq,)` or `(batch, seq)`,
            the position of each element of the sequence axis. Defaults to
            `0 ... seq - 1`.

    Returns:
        A tensor with the shape of `inputs` and the layer's compute dtype.

    Example:

    >>> rope = RotaryEmbedding()
    >>> query = keras.random.normal((2, 10, 8, 64))  # (batch, seq, heads, dim)
    >>> key = keras.random.normal((2, 10, 8, 64))
    >>> query, key = rope(query), rope(key)
    >>> tuple(query.shape)
    (2, 10, 8, 64)

    Reference:
        - [Su et al., 2021, "RoFormer: Enhanced Transformer with Rotary
          Position Embedding"](https://arxiv.org/abs/2104.09864)
        - [Chen et al., 2023, "Extending Context Window of Large Language
          Models via Positional Interpolation"](
          https://arxiv.org/abs/2306.15595)
    """

    def __init__(self, max_wavelength=10000, scaling_factor=1.0, **kwargs):
        super().__init__(**kwargs)
        check_positive_float(self, "max_wavelength", max_wavelength)
        check_positive_float(self, "scaling_factor", scaling_factor)
        self.max_wavelength = max_wavelength
        self.scaling_factor = scaling_factor
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "`RotaryEmbedding` expects inputs of shape "
                "(batch, seq, heads, head_dim). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        if input_shape[-1] is None or input_shape[-1] % 2:
            raise ValueError(
                "`RotaryEmbedding` needs a static, even last axis (head_dim), "
                "because channels are rotated in pairs. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.built = True

    def call(self, inputs, positions=None):
        return apply_rotary_embedding(
            inputs,
            positions,
            max_wavelength=self.max_wavelength,
            scaling_factor=self.scaling_factor,
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_wavelength": self.max_wavelength,
                "scaling_factor": self.scaling_factor,
            }
        )
        return config
