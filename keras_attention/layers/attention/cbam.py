"""CBAM: channel attention followed by spatial attention."""

import keras

from keras_attention.layers.attention.attention_masking import check_mask
from keras_attention.layers.attention.channel_attention import ChannelAttention
from keras_attention.layers.attention.channel_attention import check_feature_map
from keras_attention.layers.attention.spatial_attention import SpatialAttention


@keras.saving.register_keras_serializable(package="keras_attention")
class CBAM(keras.layers.Layer):
    """Convolutional Block Attention Module: channel, then spatial attention.

    `y = spatial(channel(x))`, where `channel` is a `ChannelAttention` (by
    default with CBAM's `pooling="avg_max"`) and `spatial` a
    `SpatialAttention`; the two refine a feature map in sequence, "what"
    then "where". Drop it after a convolution block of a vision (`(batch,
    height, width, channels)`) or audio (`(batch, steps, channels)`)
    backbone; the output has the input's shape.

    Masking: a Keras mask `(batch, steps)` is passed to both modules (see
    their docstrings): padding changes neither the channel gate nor the
    spatial gate of the real positions, padded positions output zeros, and
    the mask is carried to the output.

    Args:
        reduction: positive int, the channel MLP's reduction ratio; hidden
            width `max(1, channels // reduction)`. Defaults to 16.
        kernel_size: positive int, the spatial convolution's size. Defaults
            to 7.
        pooling: `"avg_max"` (CBAM) or `"avg"` (squeeze-and-excitation) for
            the channel module. Defaults to `"avg_max"`.
        activation: activation of the channel MLP's hidden layer. Defaults
            to `"relu"`.
        gate: activation of both gates. Defaults to `"sigmoid"`.
        use_bias: bool, whether the MLP and the convolution have biases.
        kernel_initializer: initializer of every kernel. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of every bias. Defaults to `"zeros"`.
        kernel_regularizer: regularizer of every kernel.
        bias_regularizer: regularizer of every bias.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor `(batch, height, width, channels)` or
            `(batch, steps, channels)`.
        mask: optional boolean `(batch, steps)` (or `(batch, height,
            width)`); taken from the input's Keras mask when not given.

    Returns:
        A tensor of the input's shape.

    Example:

    >>> images = keras.Input((32, 32, 3))
    >>> features = keras.layers.Conv2D(16, 3, padding="same")(images)
    >>> features = CBAM(reduction=4, kernel_size=7)(features)
    >>> tuple(features.shape)
    (None, 32, 32, 16)
    >>> frames = keras.random.normal((2, 100, 64))  # e.g. mel frames
    >>> tuple(CBAM(kernel_size=5)(frames).shape)
    (2, 100, 64)

    Reference:
        - Woo et al., 2018, "CBAM: Convolutional Block Attention Module".
    """

    def __init__(
        self,
        reduction=16,
        kernel_size=7,
        pooling="avg_max",
        activation="relu",
        gate="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        shared = {
            "gate": gate,
            "use_bias": use_bias,
            "kernel_initializer": kernel_initializer,
            "bias_initializer": bias_initializer,
            "kernel_regularizer": kernel_regularizer,
            "bias_regularizer": bias_regularizer,
            "dtype": self.dtype_policy,
        }
        try:
            self.channel_attention = ChannelAttention(
                reduction=reduction,
                pooling=pooling,
                activation=activation,
                name="channel_attention",
                **shared,
            )
            self.spatial_attention = SpatialAttention(
                kernel_size=kernel_size, name="spatial_attention", **shared
            )
        except ValueError as error:
            # Name this layer, not the sub-layer the argument went to.
            message = str(error)
            for sub in ("ChannelAttention", "SpatialAttention"):
                message = message.replace(f"{sub}:", "CBAM:", 1)
            raise ValueError(message) from None
        self.supports_masking = True

    def build(self, input_shape):
        input_shape = check_feature_map(self, input_shape)
        self.channel_attention.build(input_shape)
        self.spatial_attention.build(input_shape)
        self.built = True

    def call(self, inputs, mask=None):
        check_feature_map(
            self,
            inputs.shape,
            self.spatial_attention._channels,
            self.spatial_attention._rank,
        )
        if mask is not None:  # checked here, so errors name this layer
            check_mask(self, "mask", mask, tuple(inputs.shape[:-1]))
        refined = self.channel_attention(inputs, mask=mask)
        return self.spatial_attention(refined, mask=mask)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return check_feature_map(
            self,
            input_shape,
            self.spatial_attention._channels,
            self.spatial_attention._rank,
        )

    def get_config(self):
        config = super().get_config()
        channel = self.channel_attention.get_config()
        config.update(
            {
                "reduction": channel["reduction"],
                "kernel_size": self.spatial_attention.kernel_size,
                "pooling": channel["pooling"],
                "activation": channel["activation"],
                "gate": channel["gate"],
                "use_bias": channel["use_bias"],
                "kernel_initializer": channel["kernel_initializer"],
                "bias_initializer": channel["bias_initializer"],
                "kernel_regularizer": channel["kernel_regularizer"],
                "bias_regularizer": channel["bias_regularizer"],
            }
        )
        return config
