import doctest

import numpy as np
import tensorflow as tf

from keras_attention.data import feeding


def test_prefetched_keeps_the_elements_and_turns_model_autotuning_off():
    ds = tf.data.Dataset.range(10).batch(4)
    fed = feeding.prefetched(ds)
    assert fed.options().autotune.enabled is False
    assert ds.options().autotune.enabled is not False
    assert [b.numpy().tolist() for b in fed] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # Options set later (as the distributed path sets its sharding) merge in.
    later = tf.data.Options()
    later.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    merged = fed.with_options(later)
    assert merged.options().autotune.enabled is False
    assert merged.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA


def test_parallel_map_after_prefetched_still_runs_every_element():
    ds = feeding.prefetched(tf.data.Dataset.range(50).map(lambda x: x * 2, num_parallel_calls=tf.data.AUTOTUNE).batch(7))
    assert np.concatenate([b.numpy() for b in ds]).tolist() == [2 * i for i in range(50)]


def test_docstring_examples_run():
    result = doctest.testmod(feeding, verbose=False)
    assert result.attempted >= 1 and result.failed == 0
