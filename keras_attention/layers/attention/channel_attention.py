"""Channel attention for feature maps: squeeze-and-excitation and CBAM's."""

import keras
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.layers.attention.attention_masking import check_mask
from keras_attention.layers.initializers import clone_initializer

POOLINGS = ("avg", "avg_max")


def check_activation(layer_cls, argument, value):
    """`keras.activations.get(value)`, with a ValueError naming the layer."""
    try:
        return keras.activations.get(value)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{layer_cls.__name__}: `{argument}` must be the name of a Keras "
            "activation, a serialized activation or a callable. Received: "
            f"{argument}={value!r}"
        ) from error


def check_feature_map(layer, input_shape, channels=None, rank=None):
    """Raises a clear ValueError unless `input_shape` is a channels-last map.

    Accepted: `(batch, H, W, C)` and `(batch, T, C)` with a known `C`, equal
    to `channels` and of rank `rank` when those are given (once the layer is
    built).
    """
    input_shape = tuple(input_shape)
    if len(input_shape) not in (3, 4) or input_shape[-1] is None:
        raise argument_error(
            layer,
            "inputs",
            "must have rank 3 `(batch, steps, channels)` or rank 4 "
            "`(batch, height, width, channels)`, channels last and known",
            f"inputs.shape={input_shape}",
        )
    if rank is not None and len(input_shape) != rank:
        raise argument_error(
            layer,
            "inputs",
            f"must have rank {rank}, the rank the layer was built with",
            f"inputs.shape={input_shape}",
        )
    if channels is not None and input_shape[-1] != channels:
        raise argument_error(
            layer,
            "inputs",
            f"must have the {channels} channels the layer was built with",
            f"inputs.shape={input_shape}",
        )
    return input_shape


def positions_mask(layer, inputs, mask):
    """Checks a Keras mask on the non-channel axes; returns it as float32.

    Returns:
        `None`, or a float32 tensor `(batch, ..., 1)` of ones (kept) and
        zeros (padding), broadcastable against `inputs`.
    """
    if mask is None:
        return None
    check_mask(layer, "mask", mask, tuple(inputs.shape[:-1]))
    return ops.expand_dims(ops.cast(mask, "float32"), -1)


def masked_mean(x, keep, axis, keepdims=False):
    """Mean of `x` over `axis` in float32, counting only `keep == 1` entries.

    `keep` is `None` (no mask) or a float32 0/1 tensor broadcastable against
    `x`. An all-padding example averages to 0, never NaN.
    """
    x = ops.cast(x, "float32")
    if keep is None:
        return ops.mean(x, axis=axis, keepdims=keepdims)
    total = ops.sum(x * keep, axis=axis, keepdims=keepdims)
    count = ops.sum(
        ops.broadcast_to(keep, ops.shape(x)), axis=axis, keepdims=keepdims
    )
    return total / ops.maximum(count, 1.0)


def masked_max(x, keep, axis, keepdims=False):
    """Max of `x` over `axis`, over `keep == 1` entries only.

    An all-padding example gets 0 rather than -inf.
    """
    if keep is None:
        return ops.max(x, axis=axis, keepdims=keepdims)
    kept = ops.broadcast_to(ops.cast(keep, "bool"), ops.shape(x))
    # -inf exists in every float dtype; it only survives the max for an
    # all-padding example, which is replaced below.
    hidden = ops.full_like(x, float("-inf"))
    best = ops.max(ops.where(kept, x, hidden), axis=axis, keepdims=keepdims)
    any_kept = ops.any(kept, axis=axis, keepdims=keepdims)
    return ops.where(any_kept, best, ops.zeros_like(best))


@keras.saving.register_keras_serializable(package="keras_attention")
class ChannelAttention(keras.layers.Layer):
    """Reweights the channels of a feature map by a learned, pooled gate.

    Squeeze-and-excitation: every channel is pooled over all positions
    (the "squeeze"), a two-layer bottleneck MLP `C -> max(1, C // reduction)
    -> C` maps the pooled descriptor to one gate per channel, and the input
    is multiplied by the gate (the "excitation"):

        s = mean over positions of x                        # (batch, C)
        g = gate(W2 activation(W1 s + b1) + b2)             # (batch, C)
        y = x * g                                           # per channel

    With `pooling="avg_max"` it is the channel module of CBAM: the same MLP
    is applied to the average- and the max-pooled descriptors and the two
    results are summed before the gate,
    `g = gate(mlp(mean(x)) + mlp(max(x)))`.

    Works on channels-last maps `(batch, height, width, channels)` (images,
    spectrograms) and on sequences `(batch, steps, channels)` (audio frames,
    tokens). The pooled means are accumulated in float32 under any dtype
    policy.

    Masking: a Keras mask `(batch, steps)` (or `(batch, height, width)` for
    maps) excludes padded positions from both poolings (masked mean, masked
    max), so padding never changes the gate of the real positions; padded
    positions output zeros, and the mask is carried to the output. An
    example that is all padding gets zero descriptors, and outputs zeros.

    Args:
        reduction: positive int, the bottleneck's reduction ratio `r`; the
            hidden width is `max(1, channels // reduction)`. Defaults to 16.
        pooling: `"avg"` (squeeze-and-excitation) or `"avg_max"` (CBAM's
            channel module). Defaults to `"avg"`.
        activation: activation of the hidden layer. Defaults to `"relu"`.
        gate: activation that turns the excitation into a gate. Defaults to
            `"sigmoid"`.
        use_bias: bool, whether the two dense layers have biases.
        kernel_initializer: initializer of both kernels (each gets its own
            copy). Defaults to `"glorot_uniform"`.
        bias_initializer: initializer of both biases. Defaults to `"zeros"`.
        kernel_regularizer: regularizer of both kernels.
        bias_regularizer: regularizer of both biases.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor `(batch, height, width, channels)` or
            `(batch, steps, channels)`.
        mask: optional boolean `(batch, steps)` (or `(batch, height,
            width)`), `True` for real positions; taken from the input's
            Keras mask when not given.

    Returns:
        A tensor of the input's shape: the input scaled per example and per
        channel by the gate (zeros at masked positions).

    Example:

    >>> se = ChannelAttention(reduction=4)
    >>> tuple(se(keras.random.normal((2, 8, 8, 16))).shape)
    (2, 8, 8, 16)
    >>> se.hidden_dense.units
    4
    >>> cbam_channel = ChannelAttention(reduction=8, pooling="avg_max")
    >>> tuple(cbam_channel(keras.random.normal((2, 50, 32))).shape)
    (2, 50, 32)

    Reference:
        - Hu et al., 2018, "Squeeze-and-Excitation Networks", section 3.
        - Woo et al., 2018, "CBAM: Convolutional Block Attention Module",
          section 3 (channel attention module).
    """

    def __init__(
        self,
        reduction=16,
        pooling="avg",
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
        cls = type(self)
        check_positive_int(cls, "reduction", reduction)
        if pooling not in POOLINGS:
            raise ValueError(
                f"{cls.__name__}: `pooling` must be one of {POOLINGS}. "
                f"Received: pooling={pooling!r}"
            )
        self.reduction = reduction
        self.pooling = pooling
        self.activation = check_activation(cls, "activation", activation)
        self.gate = check_activation(cls, "gate", gate)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.supports_masking = True
        self.hidden_dense = None
        self.output_dense = None
        self._channels = None

    def _dense(self, units, activation, name, seed_offset):
        return keras.layers.Dense(
            units,
            activation=activation,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(
                self.kernel_initializer, seed_offset
            ),
            bias_initializer=clone_initializer(self.bias_initializer),
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, input_shape):
        input_shape = check_feature_map(self, input_shape)
        channels = input_shape[-1]
        hidden = max(1, channels // self.reduction)
        self.hidden_dense = self._dense(hidden, self.activation, "hidden", 0)
        self.output_dense = self._dense(channels, None, "excitation", 1)
        self.hidden_dense.build((None, channels))
        self.output_dense.build((None, hidden))
        self._channels = channels
        self.built = True

    def channel_gate(self, inputs, keep=None):
        """The gate `(batch, 1, ..., 1, channels)` of `inputs`.

        Args:
            inputs: the layer's input.
            keep: `None`, or float32 `(batch, ..., 1)` ones at real positions
                (see `positions_mask`).
        """
        axes = tuple(range(1, len(inputs.shape) - 1))
        pooled = ops.cast(masked_mean(inputs, keep, axes), self.compute_dtype)
        excitation = self.output_dense(self.hidden_dense(pooled))
        if self.pooling == "avg_max":
            peak = masked_max(inputs, keep, axes)
            excitation = excitation + self.output_dense(
                self.hidden_dense(peak)
            )
        gate = self.gate(excitation)
        for _ in axes:
            gate = ops.expand_dims(gate, 1)
        return gate

    def call(self, inputs, mask=None):
        check_feature_map(self, inputs.shape, self._channels)
        keep = positions_mask(self, inputs, mask)
        outputs = inputs * self.channel_gate(inputs, keep)
        if keep is not None:
            outputs = outputs * ops.cast(keep, outputs.dtype)
        return outputs

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return check_feature_map(self, input_shape, self._channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "pooling": self.pooling,
                "activation": keras.activations.serialize(self.activation),
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
