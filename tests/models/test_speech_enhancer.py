import numpy as np
import pytest

from model_checks import check_builder_model
from keras_attention.models import compile_speech_enhancer
from keras_attention.models import scale_invariant_sdr
from keras_attention.models import speech_enhancer

SMALL = dict(hidden_dim=16, num_layers=1, num_heads=2, dropout=0.0)


def _tones_in_noise(batch=4, samples=1600, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 8000.0
    clean = np.sin(2 * np.pi * rng.uniform(200, 1200, (batch, 1)) * t) * rng.uniform(0.2, 0.8, (batch, 1))
    noisy = clean + noise * clean.std() * rng.normal(size=clean.shape)
    return noisy.astype("float32"), clean.astype("float32")


# One variant through the whole round trip (regional: the builder fills in
# its window); every variant's own layer tests cover the rest.
@pytest.mark.parametrize("attention, frequency_attention", [("regional", False), ("multi_head", True)])
def test_builds_trains_saves_exports(attention, frequency_attention, tmp_path):
    model = speech_enhancer(
        1600, frame_length=64, frame_step=16, attention=attention, frequency_attention=frequency_attention,
        frequency_dim=4, **SMALL,
    )
    compile_speech_enhancer(model)
    noisy, clean = _tones_in_noise()
    (enhanced,) = check_builder_model(model, noisy, clean, tmp_path)
    assert enhanced.shape == (4, 1600)


def _open_mask(model):
    """Sets the mask layer to output 1 everywhere (kernel 0, bias +30)."""
    layer = model.get_layer("magnitude_mask")
    kernel, bias = layer.get_weights()
    layer.set_weights([np.zeros_like(kernel), np.full_like(bias, 30.0)])


@pytest.mark.parametrize("frequency_attention", [False, True])
def test_an_open_mask_returns_the_input_exactly(frequency_attention):
    # STFT -> mask of ones -> inverse STFT is the identity on every sample.
    model = speech_enhancer(1600, frame_length=64, frame_step=16, frequency_attention=frequency_attention, frequency_dim=4, **SMALL)
    _open_mask(model)
    noisy, _ = _tones_in_noise()
    np.testing.assert_allclose(model.predict(noisy, verbose=0), noisy, atol=1e-5)


def test_output_scales_with_the_input():
    # The mask depends on scale-free features, so enhance(c x) = c enhance(x).
    model = speech_enhancer(1600, frame_length=64, frame_step=16, **SMALL)
    noisy, _ = _tones_in_noise()
    base = model.predict(noisy, verbose=0)
    np.testing.assert_allclose(model.predict(7.5 * noisy, verbose=0), 7.5 * base, rtol=1e-4, atol=1e-5)
    assert np.all(np.isfinite(model.predict(np.zeros_like(noisy), verbose=0)))


def test_training_under_xla_removes_noise():
    # Tones in white noise at ~6 dB: a few hundred steps on the CPU lift
    # SI-SDR on held-out examples well above the input's.
    model = speech_enhancer(1600, frame_length=64, frame_step=16, hidden_dim=32, num_layers=1, num_heads=2, dropout=0.0)
    compile_speech_enhancer(model, learning_rate=3e-3)
    assert model.jit_compile is True
    noisy, clean = _tones_in_noise(batch=256, noise=0.5, seed=1)
    model.fit(noisy, clean, batch_size=32, epochs=6, verbose=0)
    test_noisy, test_clean = _tones_in_noise(batch=32, noise=0.5, seed=2)
    before = float(np.mean(scale_invariant_sdr(test_clean, test_noisy)))
    after = float(np.mean(scale_invariant_sdr(test_clean, model.predict(test_noisy, verbose=0))))
    assert after > before + 3.0, (before, after)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(num_samples=0), r"speech_enhancer.*`num_samples`.*num_samples=0"),
        (dict(num_samples=1600, sample_rate=-1), r"speech_enhancer.*`sample_rate`.*sample_rate=-1"),
        (dict(num_samples=1600, hidden_dim=30, num_heads=4), r"speech_enhancer.*hidden_dim.*num_heads"),
        (dict(num_samples=1600, frame_length=64, frame_step=40), r"ShortTimeFourierTransform.*`frame_step`.*frame_step=40"),
        (dict(num_samples=1600, attention="nope"), r"speech_enhancer.*one of \["),
        (dict(num_samples=1600, frequency_dim=3), r"speech_enhancer.*`frequency_dim` must be even.*frequency_dim=3"),
        (dict(num_samples=1600, frequency_attention="yes"), r"speech_enhancer.*`frequency_attention`"),
    ],
)
def test_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        speech_enhancer(**{**SMALL, **arguments})
