import doctest

import keras
import numpy as np
import pytest

import helpers
from keras_attention.layers import SpecAugment
from keras_attention.layers.preprocessing import spec_augment as module


def test_masks_and_shift_match_their_definitions():
    rng = np.random.default_rng(0)
    x = rng.random((16, 30, 12)).astype("float32") + 1.0  # no zeros of its own
    shift_only = SpecAugment(max_time_shift=3, max_time_mask=0, max_freq_mask=0, seed=1)
    got = keras.ops.convert_to_numpy(shift_only(x, training=True))
    shifts = set()
    for b in range(16):
        found = [s for s in range(-3, 4) if np.allclose(got[b], np.roll(x[b], s, axis=0) * _keep(30, s)[:, None])]
        assert found, b
        shifts.add(found[0])
    assert len(shifts) > 1
    masks_only = SpecAugment(max_time_shift=0, max_time_mask=5, max_freq_mask=4, seed=2)
    got = keras.ops.convert_to_numpy(masks_only(x, training=True))
    for b in range(16):
        zero = got[b] == 0
        rows = np.where(zero.all(axis=1))[0]
        cols = np.where(zero.all(axis=0))[0]
        # Zeros are exactly whole time bands and whole frequency bands.
        expected = np.zeros_like(zero)
        expected[rows] = True
        expected[:, cols] = True
        np.testing.assert_array_equal(zero, expected)
        assert len(rows) <= 5 and len(cols) <= 4
        for band in (rows, cols):
            if len(band):
                assert band.max() - band.min() + 1 == len(band)  # contiguous
        np.testing.assert_array_equal(got[b][~zero], x[b][~zero])


def _keep(size, shift):
    keep = np.ones(size)
    if shift > 0:
        keep[:shift] = 0
    elif shift < 0:
        keep[shift:] = 0
    return keep


def test_inference_identity_xla_and_roundtrip(tmp_path):
    x = np.random.default_rng(1).random((4, 10, 6)).astype("float32")
    layer = SpecAugment()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    inputs = keras.Input((10, 6))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(SpecAugment(2, 3, 2)(inputs))))
    model.compile("adam", "mse", jit_compile=True)
    model.fit(x, np.ones((4, 1)), verbose=0)
    helpers.assert_keras_roundtrip(model, x, tmp_path)
    clone = SpecAugment.from_config(SpecAugment(1, 2, 3, 4, 5, seed=6).get_config())
    assert (clone.max_time_shift, clone.num_freq_masks, clone.seed) == (1, 5, 6)


def test_errors_and_docstring():
    with pytest.raises(ValueError, match="SpecAugment: `max_time_mask`"):
        SpecAugment(max_time_mask=-1)
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(module, globs={"keras": keras, "SpecAugment": SpecAugment}):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0
