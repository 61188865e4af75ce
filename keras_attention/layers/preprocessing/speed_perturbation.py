"""`SpeedPerturbation`: XLA-friendly random resampling of waveforms."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_attention")
class SpeedPerturbation(keras.layers.Layer):
    """Plays each waveform slightly faster or slower (training only).

    Every example gets its own rate `r`, drawn uniformly from
    `[1 - max_change, 1 + max_change]`, and output sample `n` is the input
    read at position `n * r` (linear interpolation between the two nearest
    samples; positions past the end read zeros). A rate above 1 shortens
    the recording and raises its pitch and formants by the factor `r`, as a
    shorter vocal tract would; below 1 the opposite. This is the speed
    perturbation that speech recognisers train with to generalise across
    speakers. The resampling is a gather at computed indices, so it
    compiles with XLA. In inference the waveforms pass unchanged.

    Args:
        max_change: float in `[0, 0.5]`, the largest relative change of
            speed (0.1 means rates in `[0.9, 1.1]`).
        seed: int, seed of the rates.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: float `(batch, samples)` waveforms.
        training: bool, resample only when `True`.

    Returns:
        Waveforms of the same shape.

    Example:

    >>> waves = keras.random.normal((2, 800), seed=0)
    >>> tuple(SpeedPerturbation(0.1, seed=0)(waves, training=True).shape)
    (2, 800)

    Reference:
        - [Ko et al., 2015, "Audio augmentation for speech recognition"](
          https://www.isca-archive.org/interspeech_2015/ko15_interspeech.html).
    """

    def __init__(self, max_change=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        if (
            isinstance(max_change, bool)
            or not isinstance(max_change, (int, float))
            or not 0.0 <= max_change <= 0.5
        ):
            raise ValueError(
                f"{type(self).__name__}: `max_change` must be a float in [0, 0.5]. "
                f"Received: max_change={max_change!r}"
            )
        self.max_change = float(max_change)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @staticmethod
    def resample(waves, rates):
        """`waves` `(batch, samples)` read at `n * rates[b]` (zeros past the end)."""
        samples = waves.shape[-1]
        position = ops.arange(samples, dtype="float32")[None, :] * ops.cast(rates, "float32")[:, None]
        left = ops.floor(position)
        weight = ops.cast(position - left, waves.dtype)
        left = ops.cast(left, "int32")
        padded = ops.pad(waves, ((0, 0), (0, 2)))  # index `samples` and above read zero
        first = ops.take_along_axis(padded, ops.minimum(left, samples), axis=1)
        second = ops.take_along_axis(padded, ops.minimum(left + 1, samples), axis=1)
        return first * (1 - weight) + second * weight

    def call(self, inputs, training=None):
        if not training or self.max_change == 0.0:
            return inputs
        batch = ops.shape(inputs)[0]
        rates = keras.random.uniform(
            (batch,), 1.0 - self.max_change, 1.0 + self.max_change, seed=self.seed_generator
        )
        return self.resample(inputs, rates)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"max_change": self.max_change, "seed": self.seed})
        return config
