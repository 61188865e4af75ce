"""`FrequencyWarp`: XLA-friendly random stretching of spectrogram features."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_attention")
class FrequencyWarp(keras.layers.Layer):
    """Stretches or squeezes each example along the frequency axis (training only).

    Every example gets its own factor `a`, drawn uniformly from
    `[1 - max_warp, 1 + max_warp]`, and output bin `f` is the input read at
    bin `f / a` (linear interpolation between the two nearest bins;
    positions past the last bin read the last bin). A factor above 1 moves
    every spectral peak up by that factor, as a shorter vocal tract moves
    the formants; below 1 the opposite. Unlike `SpeedPerturbation`, the
    tempo and the number of frames do not change. On mel bands the factor
    applies to the mel axis, which is close to linear in hertz below about
    1 kHz and logarithmic above: the vocal-tract-length perturbation
    (VTLP) of speech recognisers, applied to the features rather than to
    the filterbank. The interpolation is one `(bins, bins)` matrix per
    example, so it compiles with XLA. In inference the features pass
    unchanged.

    Args:
        max_warp: float in `[0, 0.5]`, the largest relative stretch (0.1
            means factors in `[0.9, 1.1]`).
        seed: int, seed of the factors.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, frames, bins)` features, e.g. log-mel frames.
        training: bool, warp only when `True`.

    Returns:
        A tensor of the input's shape.

    Example:

    >>> features = keras.random.uniform((2, 20, 16), seed=0)
    >>> tuple(FrequencyWarp(0.1, seed=0)(features, training=True).shape)
    (2, 20, 16)

    Reference:
        - [Jaitly and Hinton, 2013, "Vocal Tract Length Perturbation (VTLP)
          improves speech recognition"](
          https://www.cs.toronto.edu/~hinton/absps/perturb.pdf).
    """

    def __init__(self, max_warp=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(max_warp, bool) or not isinstance(max_warp, (int, float)) or not 0.0 <= max_warp <= 0.5:
            raise ValueError(
                f"{type(self).__name__}: `max_warp` must be a float in [0, 0.5]. "
                f"Received: max_warp={max_warp!r}"
            )
        self.max_warp = float(max_warp)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @staticmethod
    def warp(features, factors):
        """`features` `(batch, frames, bins)` read at bin `f / factors[b]`."""
        bins = features.shape[-1]
        source = ops.arange(bins, dtype="float32")[None, :] / ops.cast(factors, "float32")[:, None]
        source = ops.minimum(source, float(bins - 1))  # (batch, bins): where output bin f reads
        # Linear interpolation as a matrix: weight max(0, 1 - |source - j|) on input bin j.
        distance = ops.abs(source[:, :, None] - ops.arange(bins, dtype="float32")[None, None, :])
        matrix = ops.cast(ops.maximum(1.0 - distance, 0.0), features.dtype)  # (batch, out, in)
        return ops.einsum("btj,bfj->btf", features, matrix)

    def call(self, inputs, training=None):
        if not training or self.max_warp == 0.0:
            return inputs
        batch = ops.shape(inputs)[0]
        factors = keras.random.uniform(
            (batch,), 1.0 - self.max_warp, 1.0 + self.max_warp, seed=self.seed_generator
        )
        return self.warp(inputs, factors)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"max_warp": self.max_warp, "seed": self.seed})
        return config
