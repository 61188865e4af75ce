import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

import helpers
from keras_attention.layers import SpeedPerturbation
from keras_attention.layers.preprocessing import speed_perturbation as module


def _reference(wave, rate):
    """np.interp at n * rate (positions in float32, as the layer), zeros past the end."""
    n = len(wave)
    position = (np.arange(n, dtype="float32") * np.float32(rate)).astype("float64")
    padded = np.concatenate([wave, [0.0]])
    return np.interp(position, np.arange(n + 1), padded, right=0.0)


def test_resample_matches_numpy_interpolation():
    rng = np.random.default_rng(0)
    waves = rng.normal(size=(4, 101)).astype("float32")
    rates = np.array([0.8, 1.0, 1.13, 1.5], "float32")
    got = keras.ops.convert_to_numpy(SpeedPerturbation.resample(waves, rates))
    for b in range(4):
        np.testing.assert_allclose(got[b], _reference(waves[b], rates[b]), atol=1e-5)
    np.testing.assert_allclose(got[1], waves[1], atol=1e-6)  # rate 1 is the identity
    assert np.all(got[3, 68:] == 0.0)  # read past the end: zeros


def test_a_faster_rate_raises_the_pitch():
    t = np.arange(8000) / 8000.0
    tone = np.sin(2 * np.pi * 200.0 * t).astype("float32")[None]
    got = keras.ops.convert_to_numpy(SpeedPerturbation.resample(tone, np.array([1.25], "float32")))[0]
    spectrum = np.abs(np.fft.rfft(got[:6000]))
    peak_hz = np.argmax(spectrum) * 8000.0 / 6000
    assert abs(peak_hz - 250.0) < 3.0


def test_training_draws_rates_within_bounds_and_inference_is_identity():
    ramps = np.tile(np.arange(300, dtype="float32"), (16, 1))  # sample n holds n
    layer = SpeedPerturbation(0.2, seed=3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(ramps)), ramps)
    got = keras.ops.convert_to_numpy(layer(ramps, training=True))
    rates = got[:, 100] / 100.0  # a ramp read at n * r holds n * r
    assert np.all((rates >= 0.8 - 1e-6) & (rates <= 1.2 + 1e-6))
    assert len(np.unique(np.round(rates, 3))) > 8  # every example draws its own rate
    for b in range(16):
        np.testing.assert_allclose(got[b], _reference(ramps[b], rates[b]), atol=1e-3)


def test_xla_training_gradients_and_roundtrip(tmp_path):
    waves = np.random.default_rng(2).normal(size=(8, 200)).astype("float32")
    inputs = keras.Input((200,))
    outputs = keras.layers.Dense(1)(SpeedPerturbation(0.1, seed=0)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse", jit_compile=True)
    history = model.fit(waves, np.ones((8, 1)), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    x = tf.constant(waves)
    layer = SpeedPerturbation(0.1, seed=0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(layer(x, training=True))
    assert np.all(np.isfinite(tape.gradient(y, x).numpy()))
    helpers.assert_keras_roundtrip(model, waves, tmp_path)
    clone = SpeedPerturbation.from_config(SpeedPerturbation(0.25, seed=7).get_config())
    assert (clone.max_change, clone.seed) == (0.25, 7)


@pytest.mark.parametrize("bad", [-0.1, 0.6, "fast", True])
def test_errors(bad):
    with pytest.raises(ValueError, match=r"SpeedPerturbation: `max_change` must be a float in \[0, 0.5\]"):
        SpeedPerturbation(bad)


def test_docstring():
    runner = doctest.DocTestRunner()
    globs = {"keras": keras, "SpeedPerturbation": SpeedPerturbation}
    for test in doctest.DocTestFinder().find(module, globs=globs):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_matches_float32(dtype):
    ramps = np.tile(np.linspace(-1.0, 1.0, 200, dtype="float32"), (3, 1))
    rates = np.array([0.9, 1.0, 1.1], "float32")
    low = SpeedPerturbation.resample(keras.ops.cast(ramps, dtype), rates)
    assert keras.backend.standardize_dtype(low.dtype) == dtype
    full = SpeedPerturbation.resample(ramps, rates)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(low, "float32")), keras.ops.convert_to_numpy(full), atol=2e-2
    )
    layer = SpeedPerturbation(0.1, seed=0, dtype=dtype)
    out = layer(keras.ops.cast(ramps, dtype), training=True)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))))
