"""`RawInputModel`: string-like inputs become one string tensor per input."""

import keras
import numpy as np
import tensorflow as tf

from keras_attention.models import RawInputModel


def _lengths(x):
    # Characters per string, float: a weightless string -> number layer.
    return tf.cast(tf.strings.length(x, unit="UTF8_CHAR"), "float32")


class Lengths(keras.layers.Layer):
    def call(self, x):
        return _lengths(x)

    def compute_output_shape(self, input_shape):
        return input_shape


def test_docstring_example():
    vectorizer = keras.layers.TextVectorization(output_sequence_length=4)
    vectorizer.adapt(["a good film", "a bad film"])
    raw = keras.Input((), dtype="string")
    ids = vectorizer(raw)
    model = RawInputModel(raw, keras.layers.Embedding(10, 2)(ids))
    assert model.predict(["a good film", "bad"], verbose=0).shape == (2, 4, 2)


def test_two_string_inputs_by_position_and_by_name():
    left = keras.Input((2,), dtype="string", name="left")
    right = keras.Input((), dtype="string", name="right")
    lengths = Lengths()
    total = keras.ops.sum(lengths(left), axis=-1) - lengths(right)
    model = RawInputModel([left, right], total)
    # "ab"+"é" - "xyz" = 0; "" + "four" - "" = 4.
    pairs = [[["ab", "é"], ["", "four"]], ["xyz", ""]]
    expected = [0.0, 4.0]
    np.testing.assert_allclose(model.predict(pairs, verbose=0), expected)
    np.testing.assert_allclose(model.predict(tuple(np.array(p) for p in pairs), verbose=0), expected)
    np.testing.assert_allclose(model.predict({"left": pairs[0], "right": np.array(pairs[1])}, verbose=0), expected)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(pairs)), expected)


def test_numbers_pass_through():
    x = keras.Input((3,))
    model = RawInputModel(x, keras.layers.Dense(1, kernel_initializer="ones", use_bias=False)(x))
    np.testing.assert_allclose(model.predict(np.array([[1.0, 2.0, 3.0]]), verbose=0), [[6.0]])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(tf.ones((2, 3)))), [[3.0], [3.0]])
