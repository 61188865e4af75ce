"""`speech_enhancer`: noisy waveforms in, enhanced waveforms out, with any attention."""

import keras
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_choice
from keras_attention.arguments import check_heads
from keras_attention.arguments import check_positive_int
from keras_attention.layers.embeddings.position_embedding import PositionEmbedding
from keras_attention.layers.transformer.axial_transformer_encoder import AxialTransformerEncoder
from keras_attention.layers.preprocessing.short_time_fourier import InverseShortTimeFourierTransform
from keras_attention.layers.preprocessing.short_time_fourier import ShortTimeFourierTransform
from keras_attention.models import common
from keras_attention.models.scale_invariant_sdr import NegativeScaleInvariantSDR
from keras_attention.models.scale_invariant_sdr import ScaleInvariantSDR

BUILDER = "speech_enhancer"
# Log-magnitudes are floored this far (in decades, 20 dB each) below the
# example's loudest bin.
_FLOOR_DECADES = 4.0


def speech_enhancer(
    num_samples,
    sample_rate=8000,
    frame_length=None,
    frame_step=None,
    hidden_dim=128,
    num_layers=3,
    num_heads=4,
    intermediate_dim=None,
    dropout=0.1,
    attention="multi_head",
    attention_kwargs=None,
    frequency_attention=False,
    frequency_dim=16,
    name=BUILDER,
):
    """A transformer that masks the noisy spectrogram; STFT and inverse inside.

    The model takes float waveforms `(batch, num_samples)` and returns
    waveforms of the same shape. Inside: a short-time Fourier transform
    (`ShortTimeFourierTransform`, Hann windows), per-frame features from the
    log-magnitude spectrum (decades below the example's loudest bin, floored
    at 80 dB, so an example's features never depend on its scale), a frame
    embedding with learned positions, `num_layers` transformer blocks whose
    attention runs over time (every frame sees every frame), a sigmoid
    magnitude mask per frequency bin, applied to the noisy complex
    spectrum (the noisy phase is kept), and the inverse transform
    (`InverseShortTimeFourierTransform`). Train it with
    `compile_speech_enhancer` (negative SI-SDR).

    With `frequency_attention=True`, each frame is first read bin by bin:
    every frequency bin becomes a `frequency_dim` token (its feature,
    embedded, plus a learned bin position), one
    `AxialTransformerEncoder` block attends across the bins of each frame
    (every bin sees every bin of its frame), and the frame embedding is
    taken from all its bins' tokens; attention over time follows.

    Args:
        num_samples: int, samples per waveform.
        sample_rate: int, in Hz (sets the default framing).
        frame_length: int, STFT window in samples (default 32 ms rounded to
            an even number).
        frame_step: int, hop in samples, at most `frame_length // 2`
            (default `frame_length // 4`).
        hidden_dim, num_layers, num_heads, intermediate_dim, dropout: the
            encoder's sizes (`intermediate_dim` defaults to `2 * hidden_dim`).
        attention, attention_kwargs: the attention variant over frames
            (and over frequency bins).
        frequency_attention: bool, the attention across frequency bins.
        frequency_dim: even int, the width of the bin tokens.
        name: model name.

    Returns:
        An uncompiled functional `keras.Model`.

    Example:

    >>> model = speech_enhancer(8000, hidden_dim=32, num_layers=1, num_heads=2)
    >>> model = compile_speech_enhancer(model)
    >>> model.output_shape
    (None, 8000)
    >>> # model.fit(noisy_and_clean_batches, epochs=10)
    >>> # enhanced = model.predict(noisy)

    Reference:
        - [Williamson & Wang, 2017, "Time-frequency masking in the complex
          domain for speech dereverberation and denoising"](
          https://doi.org/10.1109/TASLP.2017.2696307);
        - [Kim et al., 2020, "T-GSA: Transformer with Gaussian-weighted
          self-attention for speech enhancement"](
          https://arxiv.org/abs/1910.06762).
    """
    check_positive_int(BUILDER, "num_samples", num_samples)
    check_positive_int(BUILDER, "sample_rate", sample_rate)
    frame_length = frame_length or max(2, 2 * int(0.016 * sample_rate))
    frame_step = frame_step or max(1, frame_length // 4)
    check_heads(BUILDER, hidden_dim, num_heads)
    check_choice(BUILDER, "frequency_attention", frequency_attention, (True, False))
    check_positive_int(BUILDER, "frequency_dim", frequency_dim)
    if frequency_dim % 2:
        raise argument_error(BUILDER, "frequency_dim", "must be even (two heads)", f"frequency_dim={frequency_dim}")

    waves = keras.Input((num_samples,), name="waveform")
    spectra = ShortTimeFourierTransform(frame_length, frame_step, name="stft")(waves)
    bins = spectra.shape[2]
    magnitude = ops.sqrt(ops.sum(ops.square(spectra), axis=-1) + 1e-12)
    peak = ops.max(magnitude, axis=(1, 2), keepdims=True)
    decades = ops.log(magnitude / peak) / ops.log(10.0)
    features = ops.maximum(decades, -_FLOOR_DECADES) / _FLOOR_DECADES + 0.5  # in [-0.5, 0.5]
    if frequency_attention:
        features = _attend_across_bins(features, frequency_dim, attention, attention_kwargs, dropout)
    x = keras.layers.Dense(hidden_dim, name="frame_embedding")(features)
    x = common.encode_with_positions(
        x,
        builder=BUILDER,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim or 2 * hidden_dim,
        attention=attention,
        attention_kwargs=attention_kwargs,
        dropout=dropout,
    )
    mask = keras.layers.Dense(bins, activation="sigmoid", name="magnitude_mask")(x)
    masked = spectra * mask[..., None]
    enhanced = InverseShortTimeFourierTransform(frame_length, frame_step, num_samples, name="istft")(masked)
    return keras.Model(waves, enhanced, name=name)


def _attend_across_bins(features, frequency_dim, attention, attention_kwargs, dropout):
    """`(batch, frames, bins)` features -> `(batch, frames, bins *
    frequency_dim)`: bin tokens after one attention block across bins."""
    frames, bins = features.shape[1], features.shape[2]
    attention, attention_kwargs = common.attention_arguments(BUILDER, attention, attention_kwargs, bins)
    tokens = keras.layers.Dense(frequency_dim, name="bin_embedding")(ops.expand_dims(features, -1))
    tokens = tokens + PositionEmbedding(bins, name="bin_position_embedding")(tokens)
    tokens = AxialTransformerEncoder(
        2,
        intermediate_dim=2 * frequency_dim,
        num_heads=2,
        attention=attention,
        attention_kwargs=attention_kwargs,
        dropout=dropout,
        activation="gelu",
        norm_first=True,
        name="frequency_attention",
    )(tokens)
    tokens = keras.layers.LayerNormalization(epsilon=1e-5, name="frequency_norm")(tokens)
    return keras.layers.Reshape((frames, bins * frequency_dim), name="frame_bins")(tokens)


def compile_speech_enhancer(model, learning_rate=1e-3, warmup_steps=0, decay_steps=None, **kwargs):
    """Compiles a `speech_enhancer` with the negative SI-SDR loss and the
    SI-SDR metric (AdamW, optional warm-up and cosine decay, XLA).

    Args:
        model: the model.
        learning_rate, warmup_steps, decay_steps: see `compile_model`.
        **kwargs: passed to `compile_model`.

    Returns:
        The compiled model.
    """
    return common.compile_model(
        model,
        loss=NegativeScaleInvariantSDR(),
        metrics=[ScaleInvariantSDR()],
        learning_rate=learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=decay_steps,
        **kwargs,
    )
