"""Fixed sinusoidal position encodings as a layer."""

import keras
from keras import ops

from keras_attention.arguments import check_positive_float
from keras_attention.ops.positions import sinusoidal_positions


@keras.saving.register_keras_serializable(package="keras_attention")
class SinusoidalPositionEncoding(keras.layers.Layer):
    """Sinusoidal position encodings (Vaswani et al., 2017), without weights.

    Returns the position encodings for an input of shape
    `(batch, seq, features)` (more generally `(..., seq, features)`), broadcast
    to that shape. Like KerasHub's `SinePositionEncoding`, the layer does *not*
    add them to its input; add them yourself (`x + layer(x)`), which leaves
    room to scale the embeddings first.

    Channel pair `(2k, 2k + 1)` of position `p` holds
    `sin(p / max_wavelength ** (2k / features))` and
    `cos(p / max_wavelength ** (2k / features))` (sines on even channels,
    cosines on odd channels, interleaved), see
    `keras_attention.ops.sinusoidal_positions`. The encodings are computed in
    float32 and returned in the layer's compute dtype.

    Args:
        max_wavelength: positive float, the longest wavelength of the
            sinusoids. Defaults to `10000`.
        **kwargs: other keyword arguments of `keras.layers.Layer`, such as
            `name` and `dtype`.

    Call arguments:
        inputs: tensor of shape `(..., seq, features)`; `features` must be
            static and even. Only its shape is used.
        start_index: int or scalar int tensor, the position of the first
            element of the sequence axis, for decoding with a cache.
            Defaults to `0`.

    Returns:
        A tensor with the shape of `inputs` and the layer's compute dtype.

    Example:

    >>> tokens = keras.Input(shape=(None,), dtype="int32")
    >>> x = keras.layers.Embedding(1000, 64)(tokens)
    >>> x = x + SinusoidalPositionEncoding()(x)
    >>> x.shape
    (None, None, 64)

    Reference:
        - [Vaswani et al., 2017, "Attention Is All You Need", section 3.5](
          https://arxiv.org/abs/1706.03762)
    """

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        check_positive_float(self, "max_wavelength", max_wavelength)
        self.max_wavelength = max_wavelength
        # The encodings do not depend on which positions are padding, so any
        # incoming Keras mask is passed through unchanged.
        self.supports_masking = True

    def build(self, input_shape):
        _check_sequence_shape(self, input_shape)
        self.built = True

    def call(self, inputs, start_index=0):
        shape = ops.shape(inputs)
        table = sinusoidal_positions(
            shape[-2],
            inputs.shape[-1],
            max_wavelength=self.max_wavelength,
            start=start_index,
            dtype=self.compute_dtype,
        )
        return ops.broadcast_to(table, shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"max_wavelength": self.max_wavelength})
        return config


def _check_sequence_shape(layer, input_shape):
    """Checks a `(..., seq, features)` shape with static, even `features`."""
    if len(input_shape) < 2:
        raise ValueError(
            f"`{type(layer).__name__}` expects inputs of shape "
            "(batch, seq, features). "
            f"Received: input_shape={tuple(input_shape)}"
        )
    features = input_shape[-1]
    if features is None or features % 2:
        raise ValueError(
            f"`{type(layer).__name__}` needs a static, even last axis "
            "(features), since sine and cosine channels come in pairs. "
            f"Received: input_shape={tuple(input_shape)}"
        )
