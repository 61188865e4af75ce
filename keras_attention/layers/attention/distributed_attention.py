"""Sequence-parallel exact attention: keys/values sharded across devices."""

import contextlib

import keras

from keras_attention import ops as attention_ops
from keras_attention.arguments import check_positive_int
from keras_attention.layers.attention.base import BaseAttention
from keras_attention.layers.attention.registry import register_attention
from keras_attention.ops import sequence_parallel


# --------------------------------------------------------------------------
# Placement: the only TensorFlow-specific code of the variant.
# --------------------------------------------------------------------------
def strategy_devices():
    """Devices of the current `tf.distribute` strategy, or `()`.

    Empty outside a strategy scope, with a non-TensorFlow backend, or when
    TensorFlow is not importable.
    """
    if keras.backend.backend() != "tensorflow":
        return ()
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover
        return ()
    if not tf.distribute.has_strategy():
        return ()
    return tuple(tf.distribute.get_strategy().extended.worker_devices)


def device_scope(device):
    """A context manager placing the ops built inside it on `device`.

    `tf.device` with the TensorFlow backend; a no-op for `None` and for other
    backends (which have no per-op placement scope).
    """
    if device is None or keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.device(device)


@register_attention("distributed")
class DistributedAttention(BaseAttention):
    """Exact multi-head attention with keys/values sharded along the sequence.

    The projected keys and values are cut into `num_shards` contiguous
    shards along the sequence. Every shard gives, for every query, its
    attended values normalised within the shard and the log-sum-exp `lse_s`
    of its scores (`keras_attention.ops.sequence_parallel.partial_attention`);
    the partials are then merged exactly,

        L = log sum_s exp(lse_s),   out = sum_s exp(lse_s - L) out_s

    (`merge_partials`, the algebra of ring attention). The result is the
    softmax attention over all keys: with the same weights the layer
    computes what `keras_attention.layers.MultiHeadAttention` computes
    (default position options), for any number of shards. Causal masks use
    each shard's global key offset; when the key length isn't a multiple of
    `num_shards` the last shard is padded with masked keys.

    What runs where: the q/k/v/output projections and the merge run on the
    current device. With `devices`, shard `s`'s scores, softmax and
    weighted sum run on `devices[s * len(devices) // num_shards]` (via
    `tf.device`; neighbouring shards share a device). With `devices=None`
    inside a `tf.distribute` strategy with several devices, the strategy's
    `worker_devices` are used the same way. Under `MirroredStrategy` each
    replica runs the whole layer on its own part of the batch, so the
    sequence sharding across devices happens per replica (every replica
    sends shards to every device). Outside a strategy and without `devices`
    nothing is placed: the shards run one after the other on the current
    device. XLA (`jit_compile=True`) compiles the one-device path; device
    scopes inside an XLA cluster are not a multi-device mechanism. The
    attention dropout is applied per shard to the within-shard weights,
    which is dropout on the merged weights (the merge factors are per-query
    constants).

    When to use it: when the key/value sequence is too long for one
    device's memory and several devices are at hand: each device then holds
    the `(Tq, Tk / num_shards)` score block of its shard only. On one
    device it is exact attention computed shard by shard (memory of one
    shard's scores at a time in eager mode; a graph may schedule shards
    together), so `MultiHeadAttention` (whose chunked core is faster) is the
    better choice there.

    Args:
        num_heads: int, number of query heads.
        key_dim: int, size of each query/key head.
        value_dim: int, size of each value head; defaults to `key_dim`.
        num_key_value_heads: int dividing `num_heads`; defaults to
            `num_heads` (grouped-query attention when smaller).
        num_shards: positive int or `None`: how many key/value shards.
            Defaults to `len(devices)`, else to the number of devices of the
            current `tf.distribute` strategy, else 1. With `devices`, it must
            be a multiple of `len(devices)`.
        devices: `None` or a non-empty list of device names (e.g.
            `["/device:CPU:0", "/device:CPU:1"]` or
            `[d.name for d in tf.config.list_logical_devices("GPU")]`).
            Stored in the config as given: device names are specific to the
            machine, so a saved model that names devices absent where it is
            loaded should be re-created with other `devices` (TensorFlow
            places ops on a missing device with soft placement only).
        **kwargs: the arguments of `BaseAttention` (`dropout`, `use_bias`,
            `output_shape`, initializers, regularizers, constraints, `seed`)
            and of `keras.layers.Layer`.

    Call arguments:
        Those of `keras.layers.MultiHeadAttention` (see `BaseAttention`).
        With `return_attention_scores=True` the dense weights
        `(batch, num_heads, Tq, Tv)` are needed, so the whole call runs
        through the exact single-device core
        (`keras_attention.ops.dot_product_attention`), without sharding.

    Returns:
        `(batch, Tq, output_shape)`, and with `return_attention_scores=True`
        also the weights `(batch, num_heads, Tq, Tv)`.

    Example:

    >>> layer = DistributedAttention(num_heads=4, key_dim=8, num_shards=3,
    ...                              num_key_value_heads=2)
    >>> x = keras.random.normal((2, 10, 16))
    >>> tuple(layer(x, x, use_causal_mask=True).shape)
    (2, 10, 16)

    Reference:
        - Milakov & Gimelshein, 2018, "Online normalizer calculation for
          softmax".
        - Liu, Zaharia & Abbeel, 2023, "Ring Attention with Blockwise
          Transformers for Near-Infinite Context".
        - Li et al., 2021, "Sequence Parallelism: Long Sequence Training
          from System Perspective".
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        num_key_value_heads=None,
        num_shards=None,
        devices=None,
        **kwargs,
    ):
        super().__init__(
            num_heads=num_heads,
            key_dim=key_dim,
            value_dim=value_dim,
            num_key_value_heads=num_key_value_heads,
            **kwargs,
        )
        cls = type(self)
        check_positive_int(cls, "num_shards", num_shards, allow_none=True)
        if devices is not None:
            if (
                not isinstance(devices, (list, tuple))
                or not devices
                or not all(isinstance(d, str) and d for d in devices)
            ):
                raise ValueError(
                    f"{cls.__name__}: `devices` must be None or a non-empty "
                    "list of device names (strings). Received: "
                    f"devices={devices!r}"
                )
            devices = list(devices)
            if num_shards is not None and num_shards % len(devices):
                raise ValueError(
                    f"{cls.__name__}: `num_shards` must be a multiple of "
                    "`len(devices)` (each device gets as many shards). "
                    f"Received: num_shards={num_shards}, "
                    f"len(devices)={len(devices)}"
                )
        self.num_shards = num_shards
        self.devices = devices

    def shard_plan(self):
        """`(num_shards, devices)` the next call uses; `devices` may be `()`.

        Shard `s` runs on `devices[s * len(devices) // num_shards]`.
        """
        devices = tuple(self.devices or ())
        if not devices:
            found = strategy_devices()
            if len(found) > 1:
                devices = found
        # A strategy's device count need not divide `num_shards`: the
        # formula above then spreads the shards as evenly as it can.
        return self.num_shards or len(devices) or 1, devices

    def attend(
        self,
        query,
        key,
        value,
        mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
    ):
        if return_attention_scores:
            return attention_ops.dot_product_attention(
                query,
                key,
                value,
                mask=mask,
                is_causal=use_causal_mask,
                dropout_rate=self.dropout,
                seed=self.seed_generator,
                training=bool(training),
                return_scores=True,
                implementation="exact",
            )
        num_shards, devices = self.shard_plan()

        def placement(s):
            if not devices:
                return contextlib.nullcontext()
            return device_scope(devices[s * len(devices) // num_shards])

        out = sequence_parallel.sequence_parallel_attention(
            query,
            key,
            value,
            num_shards=num_shards,
            mask=mask,
            is_causal=use_causal_mask,
            dropout_rate=self.dropout,
            seed=self.seed_generator,
            training=bool(training),
            placement=placement,
        )
        return keras.ops.cast(out, query.dtype), None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_shards": self.num_shards,
                "devices": None if self.devices is None else list(self.devices),
            }
        )
        return config
