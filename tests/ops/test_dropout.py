"""`ops.dropout` and `layers.Dropout`: Keras' dropout semantics with the
Philox generator (Keras' default generator is slow under XLA on CPU)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attention.layers.regularization.dropout import Dropout
from keras_attention.ops.dropout import dropout


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_drops_the_rate_and_rescales_the_rest(rate):
    x = np.full((400, 500), 3.0, "float32")
    y = keras.ops.convert_to_numpy(dropout(x, rate, seed=7))
    kept = y != 0
    # 200,000 draws: the kept fraction is within 5 standard deviations.
    sd = np.sqrt(rate * (1 - rate) / kept.size)
    assert abs(kept.mean() - (1 - rate)) < 5 * sd
    np.testing.assert_allclose(y[kept], 3.0 / (1 - rate), rtol=1e-6)


def test_edge_rates_seeds_and_noise_shape():
    x = np.random.default_rng(0).standard_normal((3, 4, 50)).astype("float32")
    assert dropout(x, 0.0) is x
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(dropout(x, 1.0)), 0.0)
    a = keras.ops.convert_to_numpy(dropout(x, 0.5, seed=3))
    b = keras.ops.convert_to_numpy(dropout(x, 0.5, seed=3))
    np.testing.assert_array_equal(a, b)  # an int seed is deterministic
    generator = keras.random.SeedGenerator(3)
    c = keras.ops.convert_to_numpy(dropout(x, 0.5, seed=generator))
    d = keras.ops.convert_to_numpy(dropout(x, 0.5, seed=generator))
    assert (c != d).any()  # a generator advances
    e = keras.ops.convert_to_numpy(dropout(x, 0.5, noise_shape=(3, 1, 50), seed=1))
    np.testing.assert_array_equal(e[:, 0] == 0, e[:, 3] == 0)  # one mask per row


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_keep_their_dtype(dtype):
    x = keras.ops.ones((8, 64), dtype=dtype)
    y = dropout(x, 0.25, seed=0)
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    values = keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))
    assert (values == 0).any() and (values != 0).any()
    np.testing.assert_allclose(values[values != 0], 4 / 3, rtol=1e-2)


def test_jit_compiled_matches_eager():
    x = tf.random.normal((16, 32))

    @tf.function(jit_compile=True)
    def compiled(x):
        return dropout(x, 0.3, seed=5)

    np.testing.assert_allclose(compiled(x).numpy(), dropout(x, 0.3, seed=5).numpy(), rtol=1e-6)


def test_layer_is_keras_dropout_with_its_config(tmp_path):
    layer = Dropout(0.4, noise_shape=(None, 1), seed=2, name="drop")
    assert isinstance(layer, keras.layers.Dropout)
    x = np.ones((6, 5), "float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    np.testing.assert_allclose(y[y != 0], 1 / 0.6, rtol=1e-6)
    assert all(len(set(row.tolist())) == 1 for row in y)  # noise_shape (None, 1)
    inputs = keras.Input((5,))
    model = keras.Model(inputs, Dropout(0.4, seed=2)(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.layers[-1]) is Dropout and loaded.layers[-1].rate == 0.4
