
import keras
import numpy as np
import pytest

import helpers
from keras_attention.layers import Dice


def reference(x, alpha, mean, variance, epsilon):
    p = 1.0 / (1.0 + np.exp(-(x - mean) / np.sqrt(variance + epsilon)))
    return p * x + (1.0 - p) * alpha * x


def test_training_uses_batch_statistics_and_updates_moving_ones():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5)).astype("float32") * 2 + 1
    layer = Dice(momentum=0.9, epsilon=1e-3)
    layer.build(x.shape)
    alpha = rng.standard_normal(5).astype("float32")
    layer.alpha.assign(alpha)
    got = keras.ops.convert_to_numpy(layer(x, training=True))
    flat = x.reshape(-1, 5).astype("float64")
    expected = reference(x, alpha, flat.mean(0), flat.var(0), 1e-3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), 0.1 * flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance), 0.9 + 0.1 * flat.var(0), rtol=1e-5)
    # Inference: the moving statistics.
    inferred = keras.ops.convert_to_numpy(layer(x, training=False))
    expected = reference(x, alpha, 0.1 * flat.mean(0), 0.9 + 0.1 * flat.var(0), 1e-3)
    np.testing.assert_allclose(inferred, expected, rtol=1e-5, atol=1e-5)


def test_masked_steps_are_left_out_of_the_statistics():
    x = np.array([[[1.0], [3.0], [100.0]]], "float32")
    mask = np.array([[True, True, False]])
    layer = Dice(momentum=0.0)
    layer(x, training=True, mask=mask)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), [2.0])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance), [1.0])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision(dtype):
    x = np.linspace(-3, 3, 12, dtype="float32").reshape(4, 3)
    layer = Dice(dtype=keras.DTypePolicy(f"mixed_{dtype}"))
    got = keras.ops.convert_to_numpy(keras.ops.cast(layer(keras.ops.cast(x, dtype)), "float32"))
    np.testing.assert_allclose(got, reference(x, 0.0, 0.0, 1.0, 1e-8), atol=0.03)


def test_serialization_and_xla_fit(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(Dice()(keras.layers.Dense(8)(inputs))))
    model.compile("adam", "mse", jit_compile=True)
    x = np.random.default_rng(1).standard_normal((16, 4)).astype("float32")
    model.fit(x, x[:, :1], epochs=2, verbose=0)
    helpers.assert_keras_roundtrip(model, x, tmp_path)
    clone = Dice.from_config(Dice(momentum=0.5, epsilon=0.1).get_config())
    assert (clone.momentum, clone.epsilon) == (0.5, 0.1)


@pytest.mark.parametrize("kwargs,match", [({"momentum": 1.0}, "momentum"), ({"epsilon": 0}, "epsilon")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"Dice: `{match}`"):
        Dice(**kwargs)


