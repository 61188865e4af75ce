"""Public ops are traced as written: AutoGraph never rewrites them."""

import doctest
import inspect

import numpy as np
import pytest
import tensorflow as tf

import keras_attention as ka
from keras_attention.ops import as_written as as_written_module
from keras_attention.ops.as_written import as_written

PUBLIC_OPS = sorted(
    name for name, value in vars(ka.ops).items() if inspect.isfunction(value) and not name.startswith("_")
)


def test_a_marked_function_is_not_rewritten():
    # Unmarked, AutoGraph turns the tensor `if` into a `tf.cond`; marked, the
    # function runs as written, and graph mode refuses a tensor as a bool.
    def sign(x):
        if x > 0:
            return x
        return -x

    x = tf.constant(-2.0)
    assert float(tf.function(sign)(x)) == 2.0
    with pytest.raises(TypeError, match="bool"):
        tf.function(as_written(sign))(x)


def test_marking_keeps_name_docstring_and_signature():
    def f(query, *, scale=1.0):
        """Doc."""
        return query * scale

    g = as_written(f)
    assert g.__name__ == "f" and g.__doc__ == "Doc."
    assert inspect.signature(g) == inspect.signature(f)
    assert float(g(2.0, scale=3.0)) == 6.0


@pytest.mark.parametrize("name", PUBLIC_OPS)
def test_every_public_op_is_marked(name):
    # `as_written` functions carry the wrapper AutoGraph recognises; compare
    # with a freshly marked function rather than naming TF's private attribute.
    marked = as_written(lambda x: x)
    markers = set(vars(marked)) - {"__wrapped__"}
    assert markers, "as_written no longer marks functions"
    assert markers <= set(vars(getattr(ka.ops, name))), name


def test_tracing_the_chunked_core_converts_nothing_of_the_package():
    api = pytest.importorskip("tensorflow.python.autograph.impl.api")
    if not hasattr(api, "_convert_actual"):
        pytest.skip("this TensorFlow has no autograph.impl.api._convert_actual to count conversions with")
    converted = []
    original = api._convert_actual

    def counting(entity, program_ctx):
        converted.append(getattr(entity, "__module__", ""))
        return original(entity, program_ctx)

    q = tf.constant(np.random.default_rng(0).standard_normal((1, 64, 2, 8)).astype("float32"))

    def step(q):
        with tf.GradientTape() as tape:
            tape.watch(q)
            out = ka.ops.dot_product_attention(q, q, q, implementation="chunked", block_size=16, is_causal=True)
            out = out + ka.ops.apply_rotary_embedding(q) + ka.ops.sinusoidal_positions(64, 8)[None, :, None, :]
        return tape.gradient(tf.reduce_sum(out), q)

    api._convert_actual = counting
    try:
        tf.function(step, jit_compile=True).get_concrete_function(q)
    finally:
        api._convert_actual = original
    assert converted, "the test's own step function should have been converted"
    assert not [m for m in converted if m.startswith("keras_attention")], converted


def test_docstring_examples_run():
    result = doctest.testmod(as_written_module, verbose=False)
    assert result.attempted >= 1 and result.failed == 0
