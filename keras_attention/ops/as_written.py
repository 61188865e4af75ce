"""Ops that `tf.function` runs as written, never rewritten by AutoGraph.

Inside `tf.function`, AutoGraph parses the source of every Python function a
traced function calls (unless its module is on its skip list, as `keras`
and `tensorflow` are) and rewrites `if`/`for`/`while` into graph control
flow. The ops of this package need none of that: their control flow is
already `keras.ops` (`fori_loop`, `cond`, `where`) and every Python `if`
tests a static value. The rewriting only costs time, once per process and
again for every new shape: the first trace of
`dot_product_attention(implementation="chunked")` forward and backward at
T=1024 took 2.6 s, 2.3 s of it in AutoGraph (against 0.2 s for
`keras.ops.dot_product_attention`); see docs/benchmark_compile_cpu.md.
"""

import keras


def as_written(function):
    """Marks `function` to be traced as written by TensorFlow's AutoGraph.

    Under another backend it is returned unchanged.

    Args:
        function: a Python function built from `keras.ops`.

    Returns:
        The function, wrapped with `tf.autograph.experimental.do_not_convert`
        (same name, docstring and signature).

    Example:

    >>> @as_written
    ... def double(x):
    ...     return x * 2
    >>> double.__name__
    'double'
    """
    if keras.backend.backend() != "tensorflow":
        return function
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(function)
