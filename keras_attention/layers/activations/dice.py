"""Dice: the data-adaptive activation of the Deep Interest Network."""

import keras
from keras import ops

from keras_attention.arguments import check_rate


@keras.saving.register_keras_serializable(package="keras_attention")
class Dice(keras.layers.Layer):
    """Dice activation: a PReLU whose switch point follows the data.

        p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + epsilon))
        f(s) = p(s) * s + (1 - p(s)) * alpha * s

    per feature (the last axis). In training `E[s]` and `Var[s]` are the
    batch statistics over every other axis (only the unmasked steps when a
    mask is given), and moving averages of them are kept, like
    `BatchNormalization` (without scale and shift); in inference the moving
    averages are used. `alpha` is learned per feature (starts at 0, so Dice
    starts as a smooth, data-centred gate on `s`).

    Args:
        momentum: float in `[0, 1)`, momentum of the moving statistics.
        epsilon: float > 0, added to the variance.
        alpha_initializer: initializer of `alpha`.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: tensor `(..., features)`.
        training: bool, batch statistics (and moving-average updates) when
            `True`.
        mask: optional boolean of the input's shape without the last axis;
            masked steps are left out of the batch statistics.

    Returns:
        A tensor of the input's shape.

    Example:

    >>> dice = Dice()
    >>> x = keras.ops.convert_to_tensor([[1.0, -2.0], [3.0, 0.5]])
    >>> tuple(dice(x, training=True).shape)
    (2, 2)

    Reference:
        - [Zhou et al., 2018, "Deep Interest Network for Click-Through Rate
          Prediction"](https://arxiv.org/abs/1706.06978), section 4.3.
    """

    def __init__(
        self, momentum=0.99, epsilon=1e-8, alpha_initializer="zeros", **kwargs
    ):
        super().__init__(**kwargs)
        check_rate(type(self), "momentum", momentum)
        if (
            isinstance(epsilon, bool)
            or not isinstance(epsilon, (int, float))
            or not epsilon > 0
        ):
            raise ValueError(
                f"{type(self).__name__}: `epsilon` must be a positive float. "
                f"Received: epsilon={epsilon!r}"
            )
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.alpha_initializer = keras.initializers.get(alpha_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(
                f"{type(self).__name__}: the last axis of `inputs` must be "
                f"known. Received: inputs.shape={tuple(input_shape)}"
            )
        self.alpha = self.add_weight(
            name="alpha", shape=(features,), initializer=self.alpha_initializer
        )
        self.moving_mean = self.add_weight(
            name="moving_mean",
            shape=(features,),
            initializer="zeros",
            trainable=False,
        )
        self.moving_variance = self.add_weight(
            name="moving_variance",
            shape=(features,),
            initializer="ones",
            trainable=False,
        )

    def call(self, inputs, training=None, mask=None):
        x = ops.cast(inputs, "float32")
        axes = tuple(range(len(inputs.shape) - 1))
        if training:
            if mask is None:
                mean = ops.mean(x, axis=axes)
                variance = ops.var(x, axis=axes)
            else:
                weights = ops.cast(mask, "float32")[..., None]
                count = ops.maximum(ops.sum(weights, axis=axes), 1.0)
                mean = ops.sum(x * weights, axis=axes) / count
                variance = (
                    ops.sum(ops.square(x - mean) * weights, axis=axes) / count
                )
            for moving, batch in (
                (self.moving_mean, mean),
                (self.moving_variance, variance),
            ):
                moving.assign(
                    self.momentum * moving
                    + (1.0 - self.momentum) * ops.cast(batch, moving.dtype)
                )
        else:
            mean = ops.cast(self.moving_mean, "float32")
            variance = ops.cast(self.moving_variance, "float32")
        p = ops.sigmoid((x - mean) / ops.sqrt(variance + self.epsilon))
        alpha = ops.cast(self.alpha, "float32")
        return ops.cast(p * x + (1.0 - p) * alpha * x, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "alpha_initializer": keras.initializers.serialize(
                    self.alpha_initializer
                ),
            }
        )
        return config
