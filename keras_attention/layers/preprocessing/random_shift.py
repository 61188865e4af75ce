"""`RandomShift`: XLA-friendly random translation of images."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_attention")
class RandomShift(keras.layers.Layer):
    """Shifts each image by a random whole number of pixels (training only).

    Every example gets its own vertical and horizontal shift, drawn
    uniformly from `[-max_shift, max_shift]`; pixels shifted in are zero.
    The shift is two matrix products with 0/1 shift matrices, so it
    compiles with XLA (`jit_compile=True`), unlike Keras' image-transform
    layers. In inference it returns the images unchanged.

    Args:
        max_shift: int >= 0, the largest shift in pixels.
        seed: int, seed of the shifts.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, height, width, channels)`.
        training: bool, shift only when `True`.

    Returns:
        The shifted images, same shape.

    Example:

    >>> images = keras.ops.ones((2, 8, 8, 1))
    >>> tuple(RandomShift(2, seed=0)(images, training=True).shape)
    (2, 8, 8, 1)
    """

    def __init__(self, max_shift=2, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
            raise ValueError(
                f"{type(self).__name__}: `max_shift` must be an int >= 0. "
                f"Received: max_shift={max_shift!r}"
            )
        self.max_shift = max_shift
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @staticmethod
    def _shift_matrix(shift, size, dtype):
        # out[i] = in[i - shift] where 0 <= i - shift < size, else 0.
        rows = ops.arange(size)[None, :, None]
        cols = ops.arange(size)[None, None, :]
        return ops.cast(cols == rows - shift[:, None, None], dtype)

    def call(self, inputs, training=None):
        if not training or self.max_shift == 0:
            return inputs
        batch = ops.shape(inputs)[0]
        shifts = keras.random.randint(
            (2, batch), -self.max_shift, self.max_shift + 1, seed=self.seed_generator
        )
        height, width = inputs.shape[1], inputs.shape[2]
        rows = self._shift_matrix(shifts[0], height, inputs.dtype)
        cols = self._shift_matrix(shifts[1], width, inputs.dtype)
        return ops.einsum("bij,bjkc,blk->bilc", rows, inputs, cols)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"max_shift": self.max_shift, "seed": self.seed})
        return config
