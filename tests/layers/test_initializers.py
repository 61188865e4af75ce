import doctest

import keras
import numpy as np

from keras_attention.layers import initializers
from keras_attention.layers.initializers import clone_initializer


def test_seeded_copies_shift_the_seed_and_repeat_without_offset():
    base = keras.initializers.GlorotUniform(seed=7)
    same = clone_initializer(base)
    shifted = clone_initializer(base, seed_offset=1)
    a = keras.ops.convert_to_numpy(base((4, 4)))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(same((4, 4))), a)
    assert shifted.get_config()["seed"] == 8
    assert not np.allclose(keras.ops.convert_to_numpy(shifted((4, 4))), a)
    assert base.get_config()["seed"] == 7  # the original is left alone


def test_unseeded_copies_are_independent_draws():
    base = keras.initializers.RandomNormal()
    first = keras.ops.convert_to_numpy(clone_initializer(base)((8,)))
    second = keras.ops.convert_to_numpy(clone_initializer(base)((8,)))
    assert not np.allclose(first, second)


def test_docstring_example():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    tests = finder.find(initializers)
    assert sum(len(t.examples) for t in tests) > 0
    for test in tests:
        runner.run(test)
    assert runner.failures == 0
