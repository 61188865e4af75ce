import doctest

import keras
import numpy as np
import pytest

import helpers
from keras_attention.layers import RandomShift
from keras_attention.layers.preprocessing import random_shift as module


def reference(image, dy, dx):
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[i, j] = image[i - dy, j - dx]
    return out


def test_shifts_match_numpy():
    images = np.random.default_rng(0).random((6, 5, 7, 2)).astype("float32")
    layer = RandomShift(2, seed=3)
    got = keras.ops.convert_to_numpy(layer(images, training=True))
    seen = set()
    for b in range(6):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.allclose(got[b], reference(images[b], dy, dx))]
        assert matches, b
        seen.add(matches[0])
    assert len(seen) > 1  # per-example shifts


def test_inference_is_identity_and_xla_fit(tmp_path):
    images = np.random.default_rng(1).random((4, 6, 6, 1)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(RandomShift(2)(images)), images)
    inputs = keras.Input((6, 6, 1))
    x = RandomShift(1)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(x)))
    model.compile("adam", "mse", jit_compile=True)
    model.fit(images, np.ones((4, 1)), epochs=1, verbose=0)
    assert model.jit_compile is True
    helpers.assert_keras_roundtrip(model, images, tmp_path)


def test_errors_and_docstring():
    with pytest.raises(ValueError, match="RandomShift: `max_shift`"):
        RandomShift(-1)
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(module, globs={"keras": keras, "RandomShift": RandomShift}):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0
