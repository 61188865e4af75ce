"""The short-time Fourier transform and its inverse, as layers.

`ShortTimeFourierTransform` turns waveforms into complex spectrograms held
as real and imaginary parts; `InverseShortTimeFourierTransform` turns such
spectrograms back into waveforms of a given length. With a Hann window and
a hop of at most half the window, the pair reconstructs the input up to
float32 rounding, so a model can change a spectrogram (mask it, filter it)
and return a waveform. Both are `keras.ops.stft` / `keras.ops.istft` on a waveform
zero-padded by one window at each end (Keras' own centring reflects the
signal and normalises the overlap-add as if every sample were covered by
all its frames, which leaves errors up to the signal's size in the first and
last few samples), and compile with XLA.
"""

import keras
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int


def _check_framing(layer, frame_length, frame_step):
    check_positive_int(layer, "frame_length", frame_length)
    check_positive_int(layer, "frame_step", frame_step)
    if frame_length % 2:
        raise argument_error(layer, "frame_length", "must be even", f"frame_length={frame_length}")
    if 2 * frame_step > frame_length:
        raise argument_error(
            layer,
            "frame_step",
            f"must be at most half of frame_length={frame_length} (Hann windows overlapping "
            "less than that cannot be inverted)",
            f"frame_step={frame_step}",
        )


def num_frames(samples, frame_length, frame_step):
    """Frames `ShortTimeFourierTransform` gives for `samples` samples."""
    return 1 + (samples + frame_length) // frame_step


@keras.saving.register_keras_serializable(package="keras_attention")
class ShortTimeFourierTransform(keras.layers.Layer):
    """Waveforms -> complex spectrograms (real and imaginary parts).

    The waveform is zero-padded by `frame_length` samples at both ends;
    frames of `frame_length` samples every `frame_step` samples are
    Hann-windowed and transformed with a real FFT of `frame_length` points.

    Args:
        frame_length: even int, samples per frame (and FFT points).
        frame_step: int, hop between frames, at most `frame_length // 2`.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: float `(batch, samples)` waveforms.

    Returns:
        float32 `(batch, frames, frame_length // 2 + 1, 2)` with
        `frames = 1 + (samples + frame_length) // frame_step`
        (`num_frames`): the real part in `[..., 0]`, the imaginary part in
        `[..., 1]`.

    Example:

    >>> waves = keras.random.normal((2, 800), seed=0)
    >>> tuple(ShortTimeFourierTransform(128, 32)(waves).shape)
    (2, 30, 65, 2)

    Reference:
        - [Allen, 1977, "Short term spectral analysis, synthesis, and
          modification by discrete Fourier transform"](
          https://doi.org/10.1109/TASSP.1977.1162950).
    """

    def __init__(self, frame_length, frame_step, **kwargs):
        super().__init__(**kwargs)
        _check_framing(type(self).__name__, frame_length, frame_step)
        self.frame_length, self.frame_step = frame_length, frame_step

    def call(self, inputs):
        padded = ops.pad(ops.cast(inputs, "float32"), ((0, 0), (self.frame_length, self.frame_length)))
        real, imag = ops.stft(
            padded,
            sequence_length=self.frame_length,
            sequence_stride=self.frame_step,
            fft_length=self.frame_length,
            window="hann",
            center=False,
        )
        return ops.stack([real, imag], axis=-1)

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        frames = None if samples is None else num_frames(samples, self.frame_length, self.frame_step)
        return (*input_shape[:-1], frames, self.frame_length // 2 + 1, 2)

    def get_config(self):
        config = super().get_config()
        config.update({"frame_length": self.frame_length, "frame_step": self.frame_step})
        return config


@keras.saving.register_keras_serializable(package="keras_attention")
class InverseShortTimeFourierTransform(keras.layers.Layer):
    """Complex spectrograms (real and imaginary parts) -> waveforms.

    The inverse of `ShortTimeFourierTransform` with the same framing:
    inverse real FFTs, Hann synthesis window, overlap-add normalised by the
    summed squared windows, the padding removed and the result cut to
    `length` samples (`length` at most what the frames cover).

    Args:
        frame_length: even int, samples per frame (and FFT points).
        frame_step: int, hop between frames, at most `frame_length // 2`.
        length: int, samples of the output waveforms.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: float `(batch, frames, frame_length // 2 + 1, 2)`, with
            `frames >= num_frames(length, frame_length, frame_step)`.

    Returns:
        float32 `(batch, length)`.

    Example:

    >>> waves = keras.random.normal((2, 800), seed=0)
    >>> spectra = ShortTimeFourierTransform(128, 32)(waves)
    >>> back = InverseShortTimeFourierTransform(128, 32, length=800)(spectra)
    >>> float(keras.ops.max(keras.ops.abs(back - waves))) < 1e-4
    True

    Reference:
        - [Griffin & Lim, 1984, "Signal estimation from modified short-time
          Fourier transform"](https://doi.org/10.1109/TASSP.1984.1164317).
    """

    def __init__(self, frame_length, frame_step, length, **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        _check_framing(name, frame_length, frame_step)
        check_positive_int(name, "length", length)
        self.frame_length, self.frame_step, self.length = frame_length, frame_step, length

    def call(self, inputs):
        bins = self.frame_length // 2 + 1
        frames = num_frames(self.length, self.frame_length, self.frame_step)
        if tuple(inputs.shape[-2:]) != (bins, 2) or (inputs.shape[-3] is not None and inputs.shape[-3] < frames):
            raise argument_error(
                type(self).__name__,
                "inputs",
                f"must have shape (batch, >= {frames}, {bins}, 2) (frame_length={self.frame_length}, "
                f"frame_step={self.frame_step}, length={self.length})",
                f"inputs.shape={tuple(inputs.shape)}",
            )
        inputs = ops.cast(inputs, "float32")
        waves = ops.istft(
            (inputs[..., 0], inputs[..., 1]),
            sequence_length=self.frame_length,
            sequence_stride=self.frame_step,
            fft_length=self.frame_length,
            window="hann",
            center=False,
        )
        return waves[:, self.frame_length : self.frame_length + self.length]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.length)

    def get_config(self):
        config = super().get_config()
        config.update({"frame_length": self.frame_length, "frame_step": self.frame_step, "length": self.length})
        return config
