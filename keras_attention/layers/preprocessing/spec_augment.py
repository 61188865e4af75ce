"""`SpecAugment`: XLA-friendly spectrogram augmentation."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_attention")
class SpecAugment(keras.layers.Layer):
    """Random time shift, time masks and frequency masks (training only).

    On `(batch, frames, bins)` features, each example independently gets:
    a shift in time by up to `max_time_shift` frames (frames shifted in are
    zero), `num_time_masks` bands of up to `max_time_mask` consecutive
    frames set to zero, and `num_freq_masks` bands of up to `max_freq_mask`
    consecutive bins set to zero. Everything is built from index
    comparisons and one matrix product, so it compiles with XLA. In
    inference the features pass unchanged.

    Args:
        max_time_shift: int >= 0.
        max_time_mask: int >= 0, widest time mask (frames).
        max_freq_mask: int >= 0, widest frequency mask (bins).
        num_time_masks: int >= 0.
        num_freq_masks: int >= 0.
        seed: int, seed of the draws.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, frames, bins)`, e.g. normalised log-mel features.
        training: bool, augment only when `True`.

    Returns:
        A tensor of the input's shape.

    Example:

    >>> features = keras.ops.ones((2, 20, 8))
    >>> tuple(SpecAugment(seed=0)(features, training=True).shape)
    (2, 20, 8)

    Reference:
        - [Park et al., 2019, "SpecAugment"](https://arxiv.org/abs/1904.08779).
    """

    def __init__(
        self,
        max_time_shift=5,
        max_time_mask=10,
        max_freq_mask=8,
        num_time_masks=1,
        num_freq_masks=1,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for argument, value in (
            ("max_time_shift", max_time_shift),
            ("max_time_mask", max_time_mask),
            ("max_freq_mask", max_freq_mask),
            ("num_time_masks", num_time_masks),
            ("num_freq_masks", num_freq_masks),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"{type(self).__name__}: `{argument}` must be an int >= 0. "
                    f"Received: {argument}={value!r}"
                )
        self.max_time_shift = max_time_shift
        self.max_time_mask = max_time_mask
        self.max_freq_mask = max_freq_mask
        self.num_time_masks = num_time_masks
        self.num_freq_masks = num_freq_masks
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _bands(self, batch, size, widest, count):
        """Boolean `(batch, size)`: True where any of `count` bands covers."""
        positions = ops.arange(size)[None, :]
        covered = ops.zeros((batch, size), "bool")
        for _ in range(count):
            width = keras.random.randint((batch, 1), 0, widest + 1, seed=self.seed_generator)
            start = ops.floor(
                keras.random.uniform((batch, 1), seed=self.seed_generator)
                * ops.cast(size - width + 1, "float32")
            )
            start = ops.cast(start, "int32")
            covered = ops.logical_or(
                covered, ops.logical_and(positions >= start, positions < start + width)
            )
        return covered

    def call(self, inputs, training=None):
        if not training:
            return inputs
        batch = ops.shape(inputs)[0]
        frames, bins = inputs.shape[1], inputs.shape[2]
        x = inputs
        if self.max_time_shift:
            shift = keras.random.randint(
                (batch,), -self.max_time_shift, self.max_time_shift + 1, seed=self.seed_generator
            )
            rows = ops.arange(frames)[None, :, None]
            cols = ops.arange(frames)[None, None, :]
            matrix = ops.cast(cols == rows - shift[:, None, None], x.dtype)
            x = ops.einsum("bij,bjf->bif", matrix, x)
        if self.num_time_masks and self.max_time_mask:
            time = self._bands(batch, frames, min(self.max_time_mask, frames), self.num_time_masks)
            x = ops.where(time[:, :, None], ops.zeros_like(x), x)
        if self.num_freq_masks and self.max_freq_mask:
            freq = self._bands(batch, bins, min(self.max_freq_mask, bins), self.num_freq_masks)
            x = ops.where(freq[:, None, :], ops.zeros_like(x), x)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_time_shift": self.max_time_shift,
                "max_time_mask": self.max_time_mask,
                "max_freq_mask": self.max_freq_mask,
                "num_time_masks": self.num_time_masks,
                "num_freq_masks": self.num_freq_masks,
                "seed": self.seed,
            }
        )
        return config
