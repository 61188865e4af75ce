"""`MaskedAveragePooling`: the average of a sequence's unmasked steps."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_attention")
class MaskedAveragePooling(keras.layers.Layer):
    """Averages `(batch, T, dim)` over its unmasked time steps.

    Like `keras.layers.GlobalAveragePooling1D`, but a sequence whose steps
    are all masked pools to zeros instead of NaN (0 / 0).

    Call arguments:
        inputs: `(batch, T, dim)`.
        mask: optional boolean `(batch, T)`, `True` for real steps; defaults
            to the input's Keras mask.

    Returns:
        `(batch, dim)`.

    Example:

    >>> x = keras.ops.ones((2, 3, 4))
    >>> mask = keras.ops.convert_to_tensor([[True, False, False], [False] * 3])
    >>> keras.ops.convert_to_numpy(MaskedAveragePooling()(x, mask=mask))[:, 0]
    array([1., 0.], dtype=float32)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return ops.mean(inputs, axis=1)
        weights = ops.cast(mask, inputs.dtype)[..., None]
        total = ops.sum(inputs * weights, axis=1)
        count = ops.sum(weights, axis=1)
        return total / ops.maximum(count, ops.cast(1, inputs.dtype))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__}: `inputs` must have rank 3 (batch, T, "
                f"dim). Received: inputs.shape={tuple(input_shape)}"
            )
        return (input_shape[0], input_shape[2])
