import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

import helpers
from keras_attention.layers import InverseShortTimeFourierTransform
from keras_attention.layers import ShortTimeFourierTransform
from keras_attention.layers.preprocessing import short_time_fourier as module


def _reference_stft(wave, frame_length, frame_step):
    """NumPy: zero-pad by one window, periodic Hann, rFFT of every frame."""
    padded = np.concatenate([np.zeros(frame_length), wave, np.zeros(frame_length)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_length) / frame_length)
    starts = range(0, len(padded) - frame_length + 1, frame_step)
    return np.stack([np.fft.rfft(padded[s : s + frame_length] * window) for s in starts])


@pytest.mark.parametrize("frame_length, frame_step, samples", [(16, 4, 100), (32, 16, 97), (14, 6, 64)])
def test_transform_matches_numpy(frame_length, frame_step, samples):
    waves = np.random.default_rng(0).normal(size=(2, samples)).astype("float32")
    got = keras.ops.convert_to_numpy(ShortTimeFourierTransform(frame_length, frame_step)(waves))
    assert got.shape == (2, module.num_frames(samples, frame_length, frame_step), frame_length // 2 + 1, 2)
    for b in range(2):
        expected = _reference_stft(waves[b].astype("float64"), frame_length, frame_step)
        np.testing.assert_allclose(got[b, ..., 0], expected.real, atol=2e-5)
        np.testing.assert_allclose(got[b, ..., 1], expected.imag, atol=2e-5)


@pytest.mark.parametrize("frame_length, frame_step", [(64, 16), (64, 32), (62, 20), (256, 64)])
def test_inverse_reconstructs_every_sample(frame_length, frame_step):
    waves = np.random.default_rng(1).normal(size=(3, 1000)).astype("float32")
    spectra = ShortTimeFourierTransform(frame_length, frame_step)(waves)
    back = keras.ops.convert_to_numpy(InverseShortTimeFourierTransform(frame_length, frame_step, 1000)(spectra))
    # Every sample, the first and last included.
    np.testing.assert_allclose(back, waves, atol=1e-5)


def test_inverse_of_a_masked_spectrum_is_the_filtered_signal():
    # Zeroing every bin above 1 kHz removes a 3 kHz tone and keeps a 500 Hz one.
    t = np.arange(4000) / 8000.0
    low, high = np.sin(2 * np.pi * 500 * t), 0.5 * np.sin(2 * np.pi * 3000 * t)
    waves = (low + high).astype("float32")[None]
    spectra = ShortTimeFourierTransform(256, 64)(waves)
    keep = (np.arange(129) * 8000 / 256 < 1000).astype("float32")
    back = keras.ops.convert_to_numpy(
        InverseShortTimeFourierTransform(256, 64, 4000)(spectra * keep[None, None, :, None])
    )[0]
    # Away from the ends (where the tone starts and stops abruptly).
    np.testing.assert_allclose(back[300:-300], low[300:-300], atol=2e-2)


def test_xla_gradients_and_roundtrips(tmp_path):
    inputs = keras.Input((400,))
    spectra = ShortTimeFourierTransform(64, 16)(inputs)
    gain = keras.layers.Dense(33, activation="sigmoid")(keras.ops.sum(spectra, axis=-1))
    outputs = InverseShortTimeFourierTransform(64, 16, 400)(spectra * gain[..., None])
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse", jit_compile=True)
    waves = np.random.default_rng(2).normal(size=(8, 400)).astype("float32")
    history = model.fit(waves, 0.5 * waves, epochs=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]
    x = tf.constant(waves)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(tf.square(model(x)))
    grad = tape.gradient(y, x).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
    helpers.assert_keras_roundtrip(model, waves, tmp_path)
    helpers.assert_export_roundtrip(model, waves, tmp_path)
    clone = InverseShortTimeFourierTransform.from_config(InverseShortTimeFourierTransform(64, 16, 400).get_config())
    assert (clone.frame_length, clone.frame_step, clone.length) == (64, 16, 400)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_are_transformed_in_float32(dtype):
    waves = np.random.default_rng(3).normal(size=(2, 300)).astype("float32")
    low = ShortTimeFourierTransform(32, 8)(keras.ops.cast(waves, dtype))
    assert keras.backend.standardize_dtype(low.dtype) == "float32"
    full = ShortTimeFourierTransform(32, 8)(keras.ops.cast(keras.ops.cast(waves, dtype), "float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(low), keras.ops.convert_to_numpy(full), atol=1e-5)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ShortTimeFourierTransform(0, 1), r"ShortTimeFourierTransform.*`frame_length`.*frame_length=0"),
        (lambda: ShortTimeFourierTransform(64, 40), r"ShortTimeFourierTransform.*`frame_step` must be at most half.*frame_step=40"),
        (lambda: ShortTimeFourierTransform(64, 2.5), r"ShortTimeFourierTransform.*`frame_step`.*2.5"),
        (lambda: InverseShortTimeFourierTransform(64, 16, 0), r"InverseShortTimeFourierTransform.*`length`.*length=0"),
        (lambda: ShortTimeFourierTransform(63, 16), r"ShortTimeFourierTransform.*`frame_length` must be even.*frame_length=63"),
    ],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_inverse_refuses_spectra_of_another_framing():
    spectra = ShortTimeFourierTransform(32, 8)(np.zeros((1, 200), "float32"))
    with pytest.raises(ValueError, match=r"InverseShortTimeFourierTransform.*`inputs`.*\(batch, >= 34, 33, 2\).*inputs.shape=\(1, 30, 17, 2\)"):
        InverseShortTimeFourierTransform(64, 8, 200)(spectra)
    with pytest.raises(ValueError, match=r"`inputs`.*>= 55.*inputs.shape=\(1, 30, 17, 2\)"):
        InverseShortTimeFourierTransform(32, 8, 400)(spectra)


def test_docstring():
    runner = doctest.DocTestRunner()
    globs = {"keras": keras, **{name: getattr(module, name) for name in dir(module)}}
    for test in doctest.DocTestFinder().find(module, globs=globs):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0
