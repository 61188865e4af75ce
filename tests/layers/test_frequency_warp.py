import keras
import numpy as np
import pytest
import tensorflow as tf

import helpers
from keras_attention.layers import FrequencyWarp


def _reference(features, factor):
    """np.interp of every frame at bin f / factor (positions in float32, as the layer), clamped to the last bin."""
    bins = features.shape[-1]
    position = (np.arange(bins, dtype="float32") / np.float32(factor)).astype("float64")
    return np.stack([np.interp(position, np.arange(bins), frame) for frame in features])


def test_warp_matches_numpy_interpolation():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(4, 7, 33)).astype("float32")
    factors = np.array([0.7, 1.0, 1.13, 1.5], "float32")
    got = keras.ops.convert_to_numpy(FrequencyWarp.warp(features, factors))
    for b in range(4):
        np.testing.assert_allclose(got[b], _reference(features[b], factors[b]), atol=1e-5)
    np.testing.assert_allclose(got[1], features[1], atol=1e-6)  # factor 1 is the identity
    assert np.all(got[0, :, 24:] == features[0, :, 32:])  # 24 / 0.7 > 32: reads the last bin


def test_a_larger_factor_moves_a_spectral_peak_up():
    bins = np.arange(64, dtype="float32")
    peak = np.exp(-0.5 * ((bins - 20.0) / 2.0) ** 2)[None, None, :].repeat(3, axis=1)
    got = keras.ops.convert_to_numpy(FrequencyWarp.warp(peak, np.array([1.25], "float32")))
    assert np.argmax(got[0, 0]) == 25 and got.shape == (1, 3, 64)
    got = keras.ops.convert_to_numpy(FrequencyWarp.warp(peak, np.array([0.8], "float32")))
    assert np.argmax(got[0, 0]) == 16


def test_training_draws_factors_within_bounds_and_inference_is_identity():
    ramps = np.tile(np.arange(40, dtype="float32"), (16, 5, 1))  # bin f holds f
    layer = FrequencyWarp(0.2, seed=3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(ramps)), ramps)
    got = keras.ops.convert_to_numpy(layer(ramps, training=True))
    factors = 10.0 / got[:, 0, 10]  # a ramp read at f / a holds f / a
    assert np.all((factors >= 0.8 - 1e-5) & (factors <= 1.2 + 1e-5))
    assert len(np.unique(np.round(factors, 3))) > 8  # every example draws its own factor
    for b in range(16):
        np.testing.assert_array_equal(got[b, 0], got[b, 4])  # one factor for all frames of an example
        np.testing.assert_allclose(got[b], _reference(ramps[b], factors[b]), atol=1e-3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(FrequencyWarp(0.0)(ramps, training=True)), ramps)


def test_xla_training_gradients_and_roundtrip(tmp_path):
    features = np.random.default_rng(2).normal(size=(8, 6, 16)).astype("float32")
    inputs = keras.Input((6, 16))
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(FrequencyWarp(0.1, seed=0)(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse", jit_compile=True)
    history = model.fit(features, np.ones((8, 1)), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    x = tf.constant(features)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(FrequencyWarp.warp(x, tf.constant([0.9] * 8)) * tf.range(16, dtype="float32"))
    gradient = tape.gradient(y, x).numpy()
    # d/dx of sum_f w_f * interp(x, f / a): each input bin collects the weights of the outputs that read it.
    matrix = np.stack([_reference(np.eye(16, dtype="float32")[j][None], 0.9)[0] for j in range(16)])
    np.testing.assert_allclose(gradient[0, 0], matrix @ np.arange(16), rtol=1e-5, atol=1e-4)
    helpers.assert_keras_roundtrip(model, features, tmp_path)
    clone = FrequencyWarp.from_config(FrequencyWarp(0.25, seed=7).get_config())
    assert (clone.max_warp, clone.seed) == (0.25, 7)


@pytest.mark.parametrize("bad", [-0.1, 0.6, "wide", True, None])
def test_errors(bad):
    with pytest.raises(ValueError, match=r"FrequencyWarp: `max_warp` must be a float in \[0, 0.5\]\. Received: max_warp="):
        FrequencyWarp(bad)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_matches_float32(dtype):
    features = np.tile(np.linspace(0.0, 4.0, 32, dtype="float32"), (3, 4, 1))
    factors = np.array([0.9, 1.0, 1.1], "float32")
    low = FrequencyWarp.warp(keras.ops.cast(features, dtype), factors)
    assert keras.backend.standardize_dtype(low.dtype) == dtype
    full = FrequencyWarp.warp(features, factors)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(low, "float32")), keras.ops.convert_to_numpy(full), atol=5e-2
    )
    layer = FrequencyWarp(0.1, seed=0, dtype=dtype)
    out = layer(keras.ops.cast(features, dtype), training=True)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))))
