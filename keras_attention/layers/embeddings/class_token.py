"""`ClassToken`: prepends a learned token to a sequence."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_attention")
class ClassToken(keras.layers.Layer):
    """Prepends one learned vector to `(batch, T, dim)` sequences (ViT's
    `[class]` token); the result is `(batch, T + 1, dim)`. Read the class
    representation at position 0 after the encoder.

    Args:
        initializer: initializer of the token. Defaults to zeros.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, T, dim)`.

    Returns:
        `(batch, T + 1, dim)`.

    Example:

    >>> tuple(ClassToken()(keras.ops.ones((2, 5, 8))).shape)
    (2, 6, 8)

    Reference:
        - [Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words"](
          https://arxiv.org/abs/2010.11929), section 3.1.
    """

    def __init__(self, initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__}: `inputs` must be (batch, T, dim) with a "
                f"known dim. Received: inputs.shape={tuple(input_shape)}"
            )
        self.token = self.add_weight(
            name="token", shape=(1, 1, input_shape[-1]), initializer=self.initializer
        )

    def call(self, inputs):
        token = ops.cast(self.token, inputs.dtype)
        token = ops.broadcast_to(token, (ops.shape(inputs)[0], 1, inputs.shape[-1]))
        return ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        length = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], length, input_shape[2])

    def get_config(self):
        config = super().get_config()
        config["initializer"] = keras.initializers.serialize(self.initializer)
        return config
