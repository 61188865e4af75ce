"""Training on several devices and machines with `tf.distribute`.

Keras 3 on TensorFlow trains under any `tf.distribute` strategy: build and
compile the model inside `strategy.scope()`, then call `fit` as usual. This
module picks the strategy by name and smooths the two places where Keras 3
and TensorFlow's strategies do not meet on their own:

- `MultiWorkerMirroredStrategy` here is TensorFlow's, with a `reduce` that
  accepts what Keras 3 hands it (nested batches when it builds a model on
  the first batch; scalar per-replica values with `axis=0` when it reduces
  metrics). Keras 3.15's `fit` fails under the plain TensorFlow class.
- Gradient clipping: Keras 3 clips each replica's partial gradient before
  the all-reduce, so `clipnorm` means something different on 2 devices
  than on 1. `CrossReplicaAdamW` clips the summed gradient instead, and
  `keras_attention.models.compile_model` uses it under multi-replica
  strategies.
- XLA: Keras compiles the whole multi-replica step (`strategy.run` and the
  all-reduce) as one XLA cluster when `jit_compile=True`. On TPUs that is the
  design; under `MirroredStrategy` with several devices XLA cannot reach the
  other replicas' variables, and under `MultiWorkerMirroredStrategy` on CPU
  XLA has no collective ops. `xla_supported(strategy)` says which case
  applies and `keras_attention.models.compile_model` turns XLA off (with a
  warning) where it cannot work, as Keras' own `jit_compile="auto"` does.

Example:

>>> from keras_attention import distribute, models
>>> strategy = distribute.get_strategy("mirrored")  # all GPUs, else 1 CPU
>>> with strategy.scope():
...     model = models.text_classifier(100, 2, 16, hidden_dim=16,
...                                    num_layers=1, num_heads=2)
...     _ = models.compile_classifier(model)
>>> model.distribute_strategy is strategy
True
"""

import json
import os
import warnings

import keras
import tensorflow as tf

from keras_attention.arguments import argument_error

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
"""The strategy names `get_strategy` accepts (`keras-attention fit --strategy`)."""

_TPU_STRATEGIES = tuple(
    cls
    for cls in (
        getattr(tf.distribute, "TPUStrategy", None),
        getattr(tf.distribute.experimental, "TPUStrategy", None),
    )
    if cls is not None
)


def _fail(source, argument, expected, received, error=ValueError):
    """Raises `argument_error`'s message as `error` (a `ValueError` unless
    the problem is the machine, not the value: then a `RuntimeError`)."""
    raise error(str(argument_error(source, argument, expected, received)))


__all__ = [
    "STRATEGIES",
    "CrossReplicaAdamW",
    "MultiWorkerMirroredStrategy",
    "get_strategy",
    "is_chief",
    "resolve_jit_compile",
    "shard_by_example",
    "split_cpu",
    "xla_supported",
]

# What TensorFlow's collective reduction (`CollectiveReduceV2`) accepts.
_COLLECTIVE_DTYPES = (tf.bfloat16, tf.float16, tf.float32, tf.float64, tf.int32, tf.int64)


class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`tf.distribute.MultiWorkerMirroredStrategy` that Keras 3 `fit` accepts.

    Synchronous data-parallel training over several worker processes (one
    per machine, or several on one machine), each with its local devices;
    gradients are all-reduced across all replicas every step. The cluster is
    described by the `TF_CONFIG` environment variable (or a
    `cluster_resolver`), exactly as for TensorFlow's class.

    The only change is `reduce`: it maps over nested values, reduces
    rank-0 per-replica values without an `axis` (Keras 3 asks for
    `axis=0` on scalars, which TensorFlow's collective implementation
    rejects), and reduces dtypes that collectives lack (`uint8` images,
    `bool` masks: Keras reduces the first batch to build the model) in
    float32, cast back afterwards. Every other behaviour is TensorFlow's.

    Args:
        cluster_resolver: optional `tf.distribute.cluster_resolver`;
            defaults to the `TF_CONFIG` resolver.
        communication_options: optional
            `tf.distribute.experimental.CommunicationOptions`.

    Example:

    ```python
    # On each worker, with TF_CONFIG set for that worker:
    strategy = keras_attention.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = keras_attention.models.text_classifier(...)
        keras_attention.models.compile_classifier(model)
    model.fit(dataset, epochs=3)  # the same global dataset on every worker
    ```

    Reference:
        - TensorFlow guide, "Multi-worker training with Keras".
    """

    def reduce(self, reduce_op, value, axis):
        def reduce_one(item):
            local = self.experimental_local_results(item)[0]
            rank = getattr(getattr(local, "shape", None), "rank", None)
            item_axis = None if (axis is not None and rank == 0) else axis
            dtype = getattr(local, "dtype", None)
            if dtype is not None and dtype not in _COLLECTIVE_DTYPES:
                item = self.run(tf.cast, args=(item, tf.float32))
            reduced = super(MultiWorkerMirroredStrategy, self).reduce(
                reduce_op, item, item_axis
            )
            return reduced if dtype is None or dtype in _COLLECTIVE_DTYPES else tf.cast(reduced, dtype)

        return tf.nest.map_structure(reduce_one, value)


def _replicated():
    """True inside the replica function of a multi-replica strategy."""
    return (
        tf.distribute.has_strategy()
        and not tf.distribute.in_cross_replica_context()
        and tf.distribute.get_strategy().num_replicas_in_sync > 1
    )


@keras.saving.register_keras_serializable(package="keras_attention")
class CrossReplicaAdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` that clips the all-reduced gradient.

    Under a `tf.distribute` strategy with several replicas, Keras 3 applies
    `clipnorm` / `global_clipnorm` / `clipvalue` to each replica's partial
    gradient before summing them, so clipping depends on the number of
    devices. This optimizer sums first and clips the sum, which is what the
    same arguments mean on one device: training on `n` replicas then
    follows the single-device run step for step. Outside a multi-replica
    replica context it is exactly `AdamW`.

    Args:
        **kwargs: `keras.optimizers.AdamW` arguments.

    Example:

    >>> optimizer = CrossReplicaAdamW(learning_rate=1e-3, clipnorm=1.0)
    >>> optimizer.get_config()["clipnorm"]
    1.0

    Reference:
        - Loshchilov and Hutter, "Decoupled Weight Decay Regularization",
          ICLR 2019.
    """

    def _clip_gradients(self, grads):
        if _replicated():
            return grads  # Clipped after the all-reduce.
        return super()._clip_gradients(grads)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not _replicated():
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        variables = [
            v.value if isinstance(v, keras.Variable) else v for v in trainable_variables
        ]
        pairs = self._all_reduce_sum_gradients(list(zip(grads, variables)))
        clipped = super()._clip_gradients([g for g, _ in pairs])
        pairs = [(g, v) for g, (_, v) in zip(clipped, pairs)]
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._distributed_tf_update_step,
            self._distribution_strategy,
            pairs,
            learning_rate,
        )


def split_cpu(count):
    """Splits the host CPU into `count` logical devices; returns their names.

    Lets `MirroredStrategy` (and `DistributedAttention`) run over several
    devices on a machine without accelerators, e.g. to test a distributed
    set-up on a laptop. It must run before TensorFlow initialises its
    devices (before the first op runs); afterwards it succeeds only if the
    CPU is already split into `count` devices.

    Args:
        count: positive int, the number of logical CPU devices.

    Returns:
        The list of logical CPU device names, e.g.
        `["/device:CPU:0", "/device:CPU:1"]`.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        _fail("split_cpu", "count", "must be a positive int", f"count={count!r}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    # An unsplit CPU is one device already.
    if len(current or [None]) != count:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * count
            )
        except RuntimeError as error:
            _fail(
                "split_cpu",
                "count",
                "can only change before TensorFlow initialises its devices "
                "(call split_cpu first thing, before any op runs)",
                f"count={count}, devices now: "
                f"{[d.name for d in tf.config.list_logical_devices('CPU')]} "
                f"({error})",
                error=RuntimeError,
            )
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _mirrored(devices):
    if devices is None:
        return tf.distribute.MirroredStrategy()
    if isinstance(devices, int) and not isinstance(devices, bool):
        if devices < 1:
            _fail("get_strategy", "devices", "must be a positive int or a list of device names", f"devices={devices!r}")
        # Physical first: listing logical devices initialises them, after
        # which the CPU can no longer be split.
        gpus = tf.config.list_physical_devices("GPU") and tf.config.list_logical_devices("GPU")
        if gpus:
            if len(gpus) < devices:
                _fail("get_strategy", "devices", f"asks for more GPUs than the {len(gpus)} present", f"devices={devices}")
            names = [d.name for d in gpus[:devices]]
        else:
            names = split_cpu(devices)
        return tf.distribute.MirroredStrategy(names)
    if (
        isinstance(devices, (list, tuple))
        and devices
        and all(isinstance(d, str) and d for d in devices)
    ):
        return tf.distribute.MirroredStrategy(list(devices))
    _fail(
        "get_strategy",
        "devices",
        "must be None, a positive int or a non-empty list of device names",
        f"devices={devices!r}",
    )


def _multiworker(devices):
    if devices is not None:
        _fail(
            "get_strategy",
            "devices",
            "is not used by the multiworker strategy (each worker uses all "
            "its local GPUs, else its CPU; the cluster comes from TF_CONFIG)",
            f"devices={devices!r}",
        )
    config = os.environ.get("TF_CONFIG")
    if not config:
        _fail(
            "get_strategy",
            "TF_CONFIG",
            "must describe the cluster for the multiworker strategy, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}',
            "no TF_CONFIG environment variable",
        )
    try:
        parsed = json.loads(config)
        workers = parsed["cluster"]["worker"]
        parsed["task"]["type"], parsed["task"]["index"]
    except (ValueError, KeyError, TypeError) as error:
        _fail(
            "get_strategy",
            "TF_CONFIG",
            "must be JSON with cluster.worker (a list of host:port) and "
            "task.type / task.index",
            f"TF_CONFIG={config!r} ({error})",
        )
    if not isinstance(workers, list) or not workers:
        _fail("get_strategy", "TF_CONFIG", "cluster.worker must be a non-empty list", f"TF_CONFIG={config!r}")
    return MultiWorkerMirroredStrategy()


def _tpu(devices):
    if devices is not None and not isinstance(devices, str):
        _fail("get_strategy", "devices", "is the TPU name or address (a string) for the tpu strategy", f"devices={devices!r}")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=devices or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        _fail(
            "get_strategy",
            "name",
            "'tpu' needs a reachable TPU (a TPU VM, or `devices` naming the "
            "TPU / its grpc:// address)",
            f"no TPU found ({type(error).__name__}: {error})",
            error=RuntimeError,
        )
    return tf.distribute.TPUStrategy(resolver)


def get_strategy(name="default", devices=None):
    """Returns the `tf.distribute` strategy called `name`.

    Args:
        name: one of `"default"` (the current strategy: one device unless a
            strategy scope is open), `"mirrored"` (synchronous
            data-parallel over the devices of this machine),
            `"multiworker"` (synchronous data-parallel over several worker
            processes, the cluster described by `TF_CONFIG`; see
            `MultiWorkerMirroredStrategy`) or `"tpu"` (`TPUStrategy`).
        devices: for `"mirrored"`: `None` (all GPUs, else the CPU), an int
            `n` (the first `n` GPUs; on a machine without GPUs the CPU split
            into `n` logical devices with `split_cpu`) or a list of device
            names. For `"tpu"`: `None` (the local TPU) or the TPU's name or
            `grpc://` address. Not used by the other strategies.

    Returns:
        A `tf.distribute.Strategy`. Build and compile models in its
        `scope()`.

    Example:

    >>> strategy = get_strategy("default")
    >>> strategy.num_replicas_in_sync
    1
    """
    if name not in STRATEGIES:
        _fail("get_strategy", "name", f"must be one of {list(STRATEGIES)}", f"name={name!r}")
    if name == "default":
        if devices is not None:
            _fail("get_strategy", "devices", "is not used by the default strategy", f"devices={devices!r}")
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return _mirrored(devices)
    if name == "multiworker":
        return _multiworker(devices)
    return _tpu(devices)


def xla_supported(strategy=None):
    """Whether Keras can train with `jit_compile=True` under `strategy`.

    `True` for `TPUStrategy` (TPUs always compile with XLA) and for
    single-replica strategies; `False` for `MirroredStrategy` with several
    devices and for `MultiWorkerMirroredStrategy`, where Keras 3 would have
    to compile the cross-replica step as one XLA cluster (see the module
    docstring). The replicas then run TensorFlow graphs.

    Args:
        strategy: a `tf.distribute.Strategy`; defaults to the current one.

    Returns:
        bool.
    """
    strategy = strategy or tf.distribute.get_strategy()
    if isinstance(strategy, _TPU_STRATEGIES):
        return True
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    return strategy.num_replicas_in_sync == 1


def resolve_jit_compile(jit_compile, strategy=None):
    """`jit_compile`, turned off with a warning where XLA can't train.

    Args:
        jit_compile: the requested value (bool or `"auto"`).
        strategy: a `tf.distribute.Strategy`; defaults to the current one.

    Returns:
        `jit_compile`, or `False` when it was true and
        `xla_supported(strategy)` is false.
    """
    strategy = strategy or tf.distribute.get_strategy()
    if jit_compile is True and not xla_supported(strategy):
        warnings.warn(
            f"keras_attention: XLA (jit_compile=True) is turned off under "
            f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} "
            "replicas: Keras compiles the whole cross-replica step as one XLA "
            "cluster, which only TPUs support. Each replica runs a TensorFlow "
            "graph instead.",
            stacklevel=3,
        )
        return False
    return jit_compile


def shard_by_example(dataset):
    """`dataset` set to be split between workers example by example.

    Under `MultiWorkerMirroredStrategy` Keras splits a dataset between the
    workers with its `auto_shard_policy`. The default (`AUTO`) splits by
    input file first, which fails or unbalances the workers when a split
    has fewer files than there are workers (a generated or small tfds
    split is one file). With `DATA` every worker reads the same global
    batches and keeps its part of each, which is what the single-device run
    sees, batch for batch.

    Args:
        dataset: a `tf.data.Dataset`.

    Returns:
        The dataset with `auto_shard_policy=DATA`.

    Example:

    >>> import tensorflow as tf
    >>> ds = shard_by_example(tf.data.Dataset.range(8).batch(4))
    >>> policy = ds.options().experimental_distribute.auto_shard_policy
    >>> policy == tf.data.experimental.AutoShardPolicy.DATA
    True
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def is_chief(strategy=None):
    """Whether this process should write files (checkpoints, exports).

    `True` except on the non-chief workers of a multi-worker cluster (the
    chief is the task of type `"chief"`, else worker 0).

    Args:
        strategy: a `tf.distribute.Strategy`; defaults to the current one.

    Returns:
        bool.
    """
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    if task_type == "worker":
        has_chief = "chief" in resolver.cluster_spec().as_dict()
        return not has_chief and task_id == 0
    return False
