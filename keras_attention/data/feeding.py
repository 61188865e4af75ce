"""The last stage of every pipeline: prefetching, without autotuning's stalls.

tf.data's model-based autotuning (on by default) runs a background
optimisation thread beside every iterator. On the 2-core machine a
`model.fit` step fed by an autotuned dataset ran, in about one training run
in three, at a steady 1.5-2x its usual time with one core idle (ListOps,
XLA: 85 ms/step at 1.1-1.2 cores used against 57-62 ms at 1.7; SST-2-sized
text classifiers: 128 ms against 64-70), while `train_on_batch` on the very
same model stayed fast. With autotuning off, 20 runs out of 20 were fast
(`benchmarks/training.py`, docs/benchmark_training_cpu.md).

Turning it off costs the pipelines nothing they use: `prefetch(AUTOTUNE)`
still grows its buffer while the consumer waits (that tuner is separate),
and a `map(num_parallel_calls=AUTOTUNE)` runs on as many threads as there
are cores.
"""


def prefetched(ds):
    """`ds.prefetch(AUTOTUNE)` with tf.data's model-based autotuning off.

    Args:
        ds: a `tf.data.Dataset`, batched as the model consumes it.

    Returns:
        The same elements, prefetched, with `options().autotune.enabled`
        False (options set later with `with_options` are merged in).

    Example:

    >>> import tensorflow as tf
    >>> ds = prefetched(tf.data.Dataset.range(4).batch(2))
    >>> ds.options().autotune.enabled
    False
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)
