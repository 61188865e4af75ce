"""`keras_attention.distribute` in-process: strategy names and their
errors, when XLA stays on, who writes, and the per-element MSE."""

import doctest
import warnings

import numpy as np
import pytest
import tensorflow as tf

from keras_attention import distribute
from keras_attention.models import elementwise_mean_squared_error


def test_default_strategy_is_the_current_one():
    strategy = distribute.get_strategy("default")
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert distribute.xla_supported(strategy) is True
    assert distribute.is_chief(strategy) is True


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"name": "gpus"}, ValueError, "`get_strategy`: `name` must be one of ['default', 'mirrored', 'multiworker', 'tpu']. Received: name='gpus'"),
        ({"name": "default", "devices": 2}, ValueError, "`get_strategy`: `devices` is not used by the default strategy. Received: devices=2"),
        ({"name": "mirrored", "devices": 0}, ValueError, "`get_strategy`: `devices` must be a positive int or a list of device names. Received: devices=0"),
        ({"name": "mirrored", "devices": [""]}, ValueError, "`devices` must be None, a positive int or a non-empty list of device names"),
        ({"name": "multiworker", "devices": 2}, ValueError, "`get_strategy`: `devices` is not used by the multiworker strategy"),
        ({"name": "tpu", "devices": 3}, ValueError, "`devices` is the TPU name or address (a string) for the tpu strategy. Received: devices=3"),
        ({"name": "tpu"}, RuntimeError, "`get_strategy`: `name` 'tpu' needs a reachable TPU"),
    ],
)  # fmt: skip
def test_get_strategy_errors(kwargs, error, message, monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(error) as raised:
        distribute.get_strategy(**kwargs)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "config,message",
    [
        (None, "`TF_CONFIG` must describe the cluster for the multiworker strategy"),
        ('{"cluster": {}}', "`TF_CONFIG` must be JSON with cluster.worker (a list of host:port) and task.type / task.index"),
        ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "cluster.worker must be a non-empty list"),
    ],
)
def test_multiworker_needs_a_tf_config(config, message, monkeypatch):
    if config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", config)
    with pytest.raises(ValueError, match="`get_strategy`: ") as raised:
        distribute.get_strategy("multiworker")
    assert message in str(raised.value)


def test_split_cpu_after_initialisation_says_why():
    tf.constant(1.0)  # devices are initialised now
    count = len(tf.config.list_logical_devices("CPU"))
    assert distribute.split_cpu(count) == [d.name for d in tf.config.list_logical_devices("CPU")]
    with pytest.raises(RuntimeError, match=r"`split_cpu`: `count` can only change before TensorFlow initialises"):
        distribute.split_cpu(count + 1)
    with pytest.raises(ValueError, match=r"`split_cpu`: `count` must be a positive int. Received: count=0"):
        distribute.split_cpu(0)


def test_resolve_jit_compile_keeps_xla_on_one_replica():
    one = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert distribute.xla_supported(one) is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert distribute.resolve_jit_compile(True, one) is True
    assert distribute.resolve_jit_compile("auto", one) == "auto"


def test_elementwise_mse_averages_every_element():
    loss = elementwise_mean_squared_error.ElementwiseMeanSquaredError()
    y_true = np.array([1.0, 3.0, 0.0, 2.0], "float32")
    y_pred = np.array([2.0, 1.0, 0.0, 2.0], "float32")
    # (1 + 4 + 0 + 0) / 4
    assert float(loss(y_true, y_pred)) == pytest.approx(1.25)
    # A trailing axis of 1 on either side is the same loss.
    assert float(loss(y_true[:, None], y_pred)) == pytest.approx(1.25)
    assert float(loss(y_true, y_pred[:, None])) == pytest.approx(1.25)
    # Per element, not per row: what a replica's half contributes is
    # rescaled by Keras like any other per-example loss.
    unreduced = elementwise_mean_squared_error.ElementwiseMeanSquaredError(reduction=None)
    np.testing.assert_allclose(unreduced(y_true, y_pred), [1.0, 4.0, 0.0, 0.0])


@pytest.mark.parametrize("module", [distribute, elementwise_mean_squared_error], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = [t for t in finder.find(module, globs=vars(module).copy()) if t.examples]
    for test in tests:
        runner.run(test)
    assert runner.failures == 0 and runner.tries >= 2
