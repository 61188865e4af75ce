"""CBAM's spatial attention: a convolved, pooled map gates every position."""

import keras
from keras import ops

from keras_attention.arguments import check_positive_int
from keras_attention.layers.attention.channel_attention import check_activation
from keras_attention.layers.attention.channel_attention import check_feature_map
from keras_attention.layers.attention.channel_attention import masked_mean
from keras_attention.layers.attention.channel_attention import positions_mask


@keras.saving.register_keras_serializable(package="keras_attention")
class SpatialAttention(keras.layers.Layer):
    """Reweights the positions of a feature map by a learned spatial gate.

    The spatial module of CBAM: at every position the channels are pooled
    into two numbers (their mean and their max), the resulting two-channel
    map is convolved with a single `kernel_size` filter ("same" padding) and
    passed through the gate, and the input is multiplied by that map:

        m = concat([mean over channels of x, max over channels of x])
        g = gate(conv(m))                          # (batch, ..., 1)
        y = x * g                                  # per position

    The convolution is a `Conv2D` for maps `(batch, height, width,
    channels)` and a `Conv1D` for sequences `(batch, steps, channels)`.

    Masking: a Keras mask `(batch, steps)` (or `(batch, height, width)`)
    sets the pooled map to zero at padded positions before the convolution,
    which is exactly what "same" padding puts beyond the end of the
    sequence: the real positions of a padded example get the outputs of the
    unpadded example, whatever the padding holds. Padded positions output
    zeros, and the mask is carried to the output.

    Args:
        kernel_size: positive int, the convolution's width (and height, for
            maps). Defaults to 7, as in CBAM.
        gate: activation that turns the convolved map into a gate. Defaults
            to `"sigmoid"`.
        use_bias: bool, whether the convolution has a bias.
        kernel_initializer: initializer of the convolution kernel. Defaults
            to `"glorot_uniform"`.
        bias_initializer: initializer of the bias. Defaults to `"zeros"`.
        kernel_regularizer: regularizer of the kernel.
        bias_regularizer: regularizer of the bias.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor `(batch, height, width, channels)` or
            `(batch, steps, channels)`.
        mask: optional boolean `(batch, steps)` (or `(batch, height,
            width)`), `True` for real positions; taken from the input's
            Keras mask when not given.

    Returns:
        A tensor of the input's shape: the input scaled per position by the
        gate (zeros at masked positions).

    Example:

    >>> spatial = SpatialAttention(kernel_size=7)
    >>> tuple(spatial(keras.random.normal((2, 16, 16, 8))).shape)
    (2, 16, 16, 8)
    >>> tuple(spatial.conv.kernel.shape)
    (7, 7, 2, 1)
    >>> frames = keras.random.normal((2, 40, 8))
    >>> tuple(SpatialAttention(kernel_size=5)(frames).shape)
    (2, 40, 8)

    Reference:
        - Woo et al., 2018, "CBAM: Convolutional Block Attention Module",
          section 3 (spatial attention module).
    """

    def __init__(
        self,
        kernel_size=7,
        gate="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        cls = type(self)
        check_positive_int(cls, "kernel_size", kernel_size)
        self.kernel_size = kernel_size
        self.gate = check_activation(cls, "gate", gate)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.supports_masking = True
        self.conv = None
        self._channels = None
        self._rank = None

    def build(self, input_shape):
        input_shape = check_feature_map(self, input_shape)
        conv_cls = (
            keras.layers.Conv2D if len(input_shape) == 4 else keras.layers.Conv1D
        )
        self.conv = conv_cls(
            1,
            self.kernel_size,
            padding="same",
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            dtype=self.dtype_policy,
            name="conv",
        )
        self.conv.build(input_shape[:-1] + (2,))
        self._channels = input_shape[-1]
        self._rank = len(input_shape)
        self.built = True

    def spatial_gate(self, inputs, keep=None):
        """The gate `(batch, ..., 1)` of `inputs`.

        Args:
            inputs: the layer's input.
            keep: `None`, or float32 `(batch, ..., 1)` ones at real positions
                (see `positions_mask`).
        """
        mean = ops.cast(
            masked_mean(inputs, None, -1, keepdims=True), self.compute_dtype
        )
        peak = ops.max(inputs, axis=-1, keepdims=True)
        pooled = ops.concatenate([mean, ops.cast(peak, mean.dtype)], axis=-1)
        if keep is not None:
            pooled = pooled * ops.cast(keep, pooled.dtype)
        return self.gate(self.conv(pooled))

    def call(self, inputs, mask=None):
        check_feature_map(self, inputs.shape, self._channels, self._rank)
        keep = positions_mask(self, inputs, mask)
        outputs = inputs * self.spatial_gate(inputs, keep)
        if keep is not None:
            outputs = outputs * ops.cast(keep, outputs.dtype)
        return outputs

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return check_feature_map(
            self, input_shape, self._channels, self._rank
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "gate": keras.activations.serialize(self.gate),
                "use_bias": self.use_bias,
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
            }
        )
        return config
