"""The log-mel front end that audio builders put inside their models.

- `frame_arguments`: checks and defaults of the STFT framing (25 ms windows,
  10 ms hops by default) with the builder's name in the messages.
- `log_mel_features`: raw waveforms -> per-band normalised log-mel frames
  (peak normalisation, `keras.layers.MelSpectrogram`, decibels), the recipe
  of `audio_classifier` computed per example, optionally restricted to each
  waveform's valid samples (`valid_frames`).
- `conv_subsampling`: stride-2 3x3 convolutions over (frames, mels), the
  mels then folded into the features.
- `strided_lengths`: valid lengths after strided convolutions.
- `LengthMask`: a layer that turns per-example lengths into a Keras padding
  mask, or fills the padded frames of CTC logits with a certain blank.
"""

import keras
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int

# A logit far enough below 0 that softmax gives it exactly 0 in float32 and
# that still fits in float16.
_NEGATIVE = -1e4
# With normalization="peak", one feature unit is this many decibels.
_PEAK_UNIT_DB = 20.0
NORMALIZATIONS = ("band", "peak")


def frame_arguments(builder, num_samples, sample_rate, num_mel_bins, frame_length, frame_step):
    """Checks the front end's arguments and fills in the defaults.

    Args:
        builder: str, the builder's name (for error messages).
        num_samples: int, samples per waveform.
        sample_rate: int, in Hz.
        num_mel_bins: int, mel bands.
        frame_length: int or `None`, STFT window in samples (default 25 ms).
        frame_step: int or `None`, hop in samples (default 10 ms).

    Returns:
        `(frame_length, frame_step, fft_length, num_frames)`: `fft_length` is
        the next power of two >= `frame_length`, `num_frames` the number of
        mel frames of a `num_samples` waveform (`1 + num_samples //
        frame_step`: the STFT is centred).
    """
    check_positive_int(builder, "num_samples", num_samples)
    check_positive_int(builder, "sample_rate", sample_rate)
    check_positive_int(builder, "num_mel_bins", num_mel_bins)
    frame_length = frame_length or max(1, int(0.025 * sample_rate))
    frame_step = frame_step or max(1, int(0.010 * sample_rate))
    check_positive_int(builder, "frame_length", frame_length)
    check_positive_int(builder, "frame_step", frame_step)
    if frame_length > num_samples:
        raise argument_error(
            builder,
            "frame_length",
            f"must be at most num_samples={num_samples}",
            f"frame_length={frame_length}",
        )
    fft_length = 1 << (frame_length - 1).bit_length()
    return frame_length, frame_step, fft_length, 1 + num_samples // frame_step


def conv_subsampling(x, subsampling, channels, name="subsampling"):
    """Stride-2 3x3 convolutions (GELU) over `(frames, mels)` features.

    `log2(subsampling)` convolutions with `channels` filters and "same"
    padding; the remaining mel bins are then folded into the features.

    Args:
        x: symbolic `(batch, frames, mels)` tensor.
        subsampling: 1, 2 or 4 (1 returns `x` unchanged).
        channels: int, filters per convolution.
        name: prefix of the layer names.

    Returns:
        `(batch, ceil(frames / subsampling), ceil(mels / subsampling) *
        channels)`.
    """
    if subsampling == 1:
        return x
    x = ops.expand_dims(x, -1)
    for i in range(subsampling.bit_length() - 1):
        x = keras.layers.Conv2D(
            channels, 3, strides=2, padding="same", activation="gelu", name=f"{name}_conv_{i}"
        )(x)
    return keras.layers.Reshape((x.shape[1], x.shape[2] * channels), name=f"{name}_frames")(x)


def valid_frames(lengths, *, frame_length, frame_step, fft_length, num_frames):
    """Mel frames that read only the first `lengths` samples of a waveform.

    The STFT is centred (`keras.layers.MelSpectrogram`): frame `i`'s window
    ends `frame_length + (fft_length - frame_length) // 2 - fft_length // 2`
    samples after `i * frame_step`. A frame is valid when its whole window
    lies within the valid samples, so what follows them (padding or
    anything else) never reaches a valid frame.

    Args:
        lengths: int `(batch,)` tensor, valid samples per waveform.
        frame_length, frame_step, fft_length, num_frames: see
            `frame_arguments`.

    Returns:
        int32 `(batch,)`, in `[1, num_frames]`.
    """
    reach = frame_length + (fft_length - frame_length) // 2 - fft_length // 2
    lengths = ops.cast(lengths, "int32")
    return ops.clip((lengths - reach) // frame_step + 1, 1, num_frames)


def log_mel_features(
    waves,
    *,
    sample_rate,
    num_mel_bins,
    frame_length,
    frame_step,
    fft_length,
    lengths=None,
    top_db=80.0,
    variance_floor=1.0,
    normalization="band",
):
    """Normalised log-mel frames of symbolic waveforms.

    Each waveform is divided by its peak amplitude (so any scale works, and
    silence stays finite), turned into a mel power spectrogram
    (`keras.layers.MelSpectrogram`), converted to decibels with a floor
    `top_db` below the example's loudest bin (per example, unlike the
    layer's `power_to_db`, which takes the loudest bin of the whole batch),
    and normalised: with `normalization="band"`, per mel band to zero mean
    and unit variance over time (with a variance floor), which removes the
    example's average spectral envelope (the channel, but also much of the
    voice); with `"peak"`, only shifted and scaled so that the floor is 0
    and every 20 dB above it adds 1, which keeps the spectral envelope
    (e.g. for speaker identification) and makes silence 0.
    With `lengths`, the peak, the floor and the statistics use each
    example's valid samples and frames only (see `valid_frames`) and the
    padded frames are zeros: the valid frames do not depend on anything
    past `lengths`.

    Args:
        waves: float `(batch, num_samples)` symbolic tensor.
        sample_rate, num_mel_bins, frame_length, frame_step, fft_length: see
            `frame_arguments`.
        lengths: optional int `(batch,)` symbolic tensor, valid samples per
            waveform.
        top_db: float, the dynamic range kept below each example's peak.
        variance_floor: float, in dB^2, added to each band's variance
            before dividing by its square root: a band that is nearly
            constant (e.g. all at the floor) is not blown up, so tiny
            numerical differences stay tiny (`"band"` only).
        normalization: `"band"` or `"peak"` (see above).

    Returns:
        `(features, frame_lengths)`: the `(batch, frames, num_mel_bins)`
        features and, with `lengths`, the int32 `(batch,)` valid frames
        (else `None`).
    """
    num_samples = waves.shape[-1]
    sample_mask = None
    if lengths is not None:
        lengths = ops.cast(lengths, "int32")
        sample_mask = ops.less(ops.expand_dims(ops.arange(num_samples), 0), ops.expand_dims(lengths, 1))
        waves = waves * ops.cast(sample_mask, waves.dtype)
    peak = ops.max(ops.abs(waves), axis=-1, keepdims=True)
    x = waves / ops.maximum(peak, 1e-6)
    x = keras.layers.MelSpectrogram(
        fft_length=fft_length,
        sequence_stride=frame_step,
        sequence_length=frame_length,
        num_mel_bins=num_mel_bins,
        sampling_rate=sample_rate,
        power_to_db=False,
        name="mel_spectrogram",
    )(x)
    x = ops.transpose(x, (0, 2, 1))  # (batch, frames, mels)
    x = 10.0 * ops.log10(ops.maximum(x, 1e-10))
    frames = x.shape[1]
    if lengths is None:
        floor = ops.max(x, axis=(1, 2), keepdims=True) - top_db
        x = ops.maximum(x, floor)
        if normalization == "peak":
            return (x - floor) / _PEAK_UNIT_DB, None
        mean = ops.mean(x, axis=1, keepdims=True)
        return (x - mean) / ops.sqrt(ops.var(x, axis=1, keepdims=True) + variance_floor), None
    frame_lengths = valid_frames(
        lengths, frame_length=frame_length, frame_step=frame_step, fft_length=fft_length, num_frames=frames
    )
    valid = ops.less(ops.expand_dims(ops.arange(frames), 0), ops.expand_dims(frame_lengths, 1))
    valid = ops.expand_dims(ops.cast(valid, x.dtype), -1)  # (batch, frames, 1)
    floor = ops.max(x * valid - 1e3 * (1.0 - valid), axis=(1, 2), keepdims=True) - top_db
    x = ops.maximum(x, floor)
    if normalization == "peak":
        return (x - floor) / _PEAK_UNIT_DB * valid, frame_lengths
    count = ops.maximum(ops.sum(valid, axis=1, keepdims=True), 1.0)
    mean = ops.sum(x * valid, axis=1, keepdims=True) / count
    var = ops.sum(ops.square(x - mean) * valid, axis=1, keepdims=True) / count
    return (x - mean) / ops.sqrt(var + variance_floor) * valid, frame_lengths


def strided_lengths(lengths, strides, size):
    """Lengths after `len(strides)` `"same"`-padded strided convolutions.

    Args:
        lengths: int `(batch,)` tensor.
        strides: sequence of int strides.
        size: int, the static length the result is clipped to.

    Returns:
        int32 `(batch,)`, each `ceil(length / stride)` in turn, in `[1, size]`.
    """
    lengths = ops.cast(lengths, "int32")
    for stride in strides:
        lengths = (lengths + (stride - 1)) // stride
    return ops.clip(lengths, 1, size)


@keras.saving.register_keras_serializable(package="keras_attention")
class LengthMask(keras.layers.Layer):
    """Masks the steps of a sequence past each example's length.

    With `fill=None` (default) the values pass unchanged and the output
    carries the padding mask as its Keras mask, so the attention, pooling
    and normalisation layers after it skip the padded steps; `fill="zeros"`
    also sets them to zero. With `fill="blank"` (for CTC logits over
    `(blank, labels...)`), the padded frames become a certain blank (logit
    0 for index 0, -1e4 for every other index) and the output has no Keras
    mask: a CTC loss over all the frames then equals the loss over the
    valid frames, and greedy decoding reads nothing from the padding.

    Args:
        fill: `None`, `"zeros"` or `"blank"`.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: the list `[x, lengths]`: `x` is `(batch, T, features)`,
            `lengths` int `(batch,)`, the number of valid leading steps.

    Returns:
        A tensor shaped like `x`.

    Example:

    >>> x = keras.ops.ones((2, 4, 3))
    >>> y = LengthMask(fill="zeros")([x, keras.ops.convert_to_tensor([1, 3])])
    >>> keras.ops.convert_to_numpy(y)[:, :, 0].tolist()
    [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]]
    """

    FILLS = (None, "zeros", "blank")

    def __init__(self, fill=None, **kwargs):
        super().__init__(**kwargs)
        if fill not in self.FILLS:
            raise ValueError(
                f"{type(self).__name__}: `fill` must be one of {self.FILLS}. "
                f"Received: fill={fill!r}"
            )
        self.fill = fill
        self.supports_masking = True

    @staticmethod
    def _mask(x, lengths):
        steps = ops.shape(x)[1]
        return ops.less(
            ops.expand_dims(ops.arange(steps), 0), ops.expand_dims(ops.cast(lengths, "int32"), 1)
        )

    def call(self, inputs):
        x, lengths = inputs
        mask = self._mask(x, lengths)
        if self.fill is None:
            return ops.copy(x)
        if self.fill == "zeros":
            return x * ops.cast(mask, x.dtype)[..., None]
        classes = ops.arange(ops.shape(x)[-1])
        blank = ops.cast(ops.where(classes == 0, 0.0, _NEGATIVE), x.dtype)
        return ops.where(mask[..., None], x, blank)

    def compute_mask(self, inputs, mask=None):
        if self.fill == "blank":
            return None
        return self._mask(*inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config["fill"] = self.fill
        return config
