"""Tests for `keras_attention.layers.DistributedAttention`.

The expected numbers come from `keras_attention.layers.MultiHeadAttention`
with the same weights copied in (itself tested against
`keras.layers.MultiHeadAttention` and NumPy float64 references): sharding
the keys and merging the partials must not change the function. The merge
algebra on its own is tested against NumPy in
`tests/ops/test_sequence_parallel.py`. Placement on several devices needs
logical CPU devices configured before TensorFlow initialises, so that test
runs in a subprocess.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src import testing

import attention_reference as ref
import helpers

from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import TransformerEncoder
from keras_attention.layers.attention import distributed_attention
from keras_attention.layers.attention import registry
from keras_attention.layers.attention.distributed_attention import DistributedAttention

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    global RNG
    RNG = np.random.default_rng(0)


def normal(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype("float32")


def pair(query, value, key=None, num_shards=3, dtype=None, **init):
    """A `MultiHeadAttention` with random weights and a sharded copy."""
    init = {"num_heads": 4, "key_dim": 4, **init}
    shape = (query.shape, value.shape, None if key is None else key.shape)
    mha = MultiHeadAttention(**init)
    mha.build(*shape)
    mha.set_weights([normal(*w.shape, scale=0.3) for w in mha.get_weights()])
    extra = {} if dtype is None else {"dtype": dtype}
    ours = DistributedAttention(num_shards=num_shards, **init, **extra)
    ours.build(*shape)
    ours.set_weights(mha.get_weights())
    return mha, ours


def some_true_mask(b, tq, tk):
    mask = RNG.random((b, tq, tk)) < 0.5
    mask[:, np.arange(tq), np.arange(tq) % tk] = True
    return mask


# --------------------------------------------------------------------------
# Keras' layer conformance harness.
# --------------------------------------------------------------------------
class TestConformance(testing.TestCase):
    def test_defaults(self):
        self.run_layer_test(
            DistributedAttention,
            init_kwargs={"num_heads": 2, "key_dim": 4, "num_shards": 3},
            input_shape={"query_shape": (2, 8, 16), "value_shape": (2, 7, 12)},
            expected_output_shape=(2, 8, 16),
            expected_num_trainable_weights=8,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=True,
            run_training_check=False,
        )

    def test_gqa_causal_dropout(self):
        self.run_layer_test(
            DistributedAttention,
            init_kwargs={
                "num_heads": 4,
                "key_dim": 2,
                "num_key_value_heads": 2,
                "num_shards": 2,
                "dropout": 0.3,
                "output_shape": 5,
            },
            input_shape={"query_shape": (2, 6, 8), "value_shape": (2, 6, 8)},
            call_kwargs={"use_causal_mask": True, "training": True},
            expected_output_shape=(2, 6, 5),
            expected_num_trainable_weights=8,
            supports_masking=True,
            run_training_check=False,
        )


# --------------------------------------------------------------------------
# Same weights: equal to MultiHeadAttention for any number of shards.
# --------------------------------------------------------------------------
CASES = {
    # name: (init, query shape, value shape, call kwargs)
    "self": ({}, (2, 6, 8), None, {}),
    "cross": ({}, (2, 5, 8), (2, 7, 6), {}),
    "causal": ({}, (2, 7, 8), None, {"use_causal_mask": True}),
    "causal_cross": ({}, (2, 6, 8), (2, 9, 6), {"use_causal_mask": True}),
    "gqa_causal": (
        {"num_key_value_heads": 2, "value_dim": 3, "output_shape": 5},
        (2, 7, 8),
        None,
        {"use_causal_mask": True},
    ),
    "mqa_padding": (
        {"num_key_value_heads": 1},
        (2, 5, 8),
        (2, 7, 6),
        {"value_mask": np.array([[1, 1, 1, 0, 0, 0, 0], [1] * 7], bool)},
    ),
    "attention_mask_causal": (
        {},
        (2, 7, 8),
        None,
        {"attention_mask": some_true_mask(2, 7, 7), "use_causal_mask": True},
    ),
}


@pytest.mark.parametrize("num_shards", [1, 2, 3, 5])
@pytest.mark.parametrize("case", CASES)
def test_matches_multi_head_attention(case, num_shards):
    init, q_shape, v_shape, kwargs = CASES[case]
    query = normal(*q_shape)
    value = query if v_shape is None else normal(*v_shape)
    mha, ours = pair(query, value, num_shards=num_shards, **init)
    want = ref.to_np(mha(query, value, **kwargs))
    got = ref.to_np(ours(query, value, **kwargs))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_separate_key_and_more_shards_than_keys():
    query, value, key = normal(2, 5, 8), normal(2, 3, 6), normal(2, 3, 4)
    mha, ours = pair(query, value, key, num_shards=5)
    for kwargs in ({}, {"use_causal_mask": True}):
        np.testing.assert_allclose(
            ref.to_np(ours(query, value, key, **kwargs)),
            ref.to_np(mha(query, value, key, **kwargs)),
            atol=1e-5,
        )


def test_rows_with_nothing_to_attend_are_zero_not_nan():
    query = normal(2, 4, 8)
    mha, ours = pair(query, query, num_shards=2)
    mask = np.ones((2, 4, 4), bool)
    mask[0, 1] = False  # query 1 sees nothing
    mask[1, 2, :2] = False  # query 2 sees nothing in the first shard
    got = ref.to_np(ours(query, query, attention_mask=mask))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(
        got, ref.to_np(mha(query, query, attention_mask=mask)), atol=1e-5
    )


@pytest.mark.parametrize("use_causal_mask", [False, True])
def test_keras_masks_from_embedding(use_causal_mask):
    q_ids = np.array([[3, 1, 4, 1, 5, 0], [9, 2, 6, 0, 0, 0]])
    v_ids = np.array([[2, 7, 1, 8, 2, 8, 1], [8, 2, 8, 0, 0, 0, 0]])
    q_emb = keras.layers.Embedding(10, 8, mask_zero=True)
    v_emb = keras.layers.Embedding(10, 6, mask_zero=True)
    mha, ours = pair(normal(2, 6, 8), normal(2, 7, 6), num_shards=3)
    kwargs = {"use_causal_mask": use_causal_mask}
    want = ref.to_np(mha(q_emb(q_ids), v_emb(v_ids), **kwargs))
    out = ours(q_emb(q_ids), v_emb(v_ids), **kwargs)
    np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)
    np.testing.assert_array_equal(ref.to_np(out)[q_ids == 0], 0.0)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(out._keras_mask), q_ids > 0
    )


def test_attention_scores_come_from_the_exact_core():
    query, value = normal(2, 6, 8), normal(2, 7, 6)
    mha, ours = pair(query, value, num_shards=3, num_key_value_heads=2)
    mask = some_true_mask(2, 6, 7)
    want = mha(query, value, attention_mask=mask, return_attention_scores=True)
    got = ours(query, value, attention_mask=mask, return_attention_scores=True)
    assert tuple(got[1].shape) == (2, 4, 6, 7)
    for g, w in zip(got, want):
        np.testing.assert_allclose(ref.to_np(g), ref.to_np(w), atol=1e-5)


def gradients(layer, query, value, cotangent, **kwargs):
    query, value = tf.constant(query), tf.constant(value)
    with tf.GradientTape() as tape:
        tape.watch([query, value])
        loss = tf.reduce_sum(layer(query, value, **kwargs) * cotangent)
    grads = tape.gradient(loss, [query, value] + layer.trainable_variables)
    return [ref.to_np(g) for g in grads]


def test_gradients_equal_multi_head_attention():
    query, value = normal(2, 6, 8), normal(2, 7, 6)
    mha, ours = pair(query, value, num_shards=3, num_key_value_heads=2)
    kwargs = {
        "use_causal_mask": True,
        "value_mask": np.array([[1, 1, 1, 1, 1, 0, 0], [1] * 7], bool),
    }
    cotangent = normal(2, 6, 8)
    want = gradients(mha, query, value, cotangent, **kwargs)
    got = gradients(ours, query, value, cotangent, **kwargs)
    assert len(got) == 2 + 8
    for g, w in zip(got, want):
        assert np.isfinite(g).all()
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-4)


def test_unknown_length_in_a_graph():
    query = normal(2, 7, 8)
    mha, ours = pair(query, query, num_shards=3)
    graph = tf.function(
        lambda t: ours(t, t, use_causal_mask=True),
        input_signature=[tf.TensorSpec((None, None, 8), "float32")],
    )
    np.testing.assert_allclose(
        ref.to_np(graph(query)),
        ref.to_np(mha(query, query, use_causal_mask=True)),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "policy, atol", [("mixed_float16", 2e-2), ("mixed_bfloat16", 1e-1)]
)
def test_mixed_precision_close_to_float32(policy, atol):
    query, value = normal(2, 6, 8), normal(2, 9, 6)
    mha, full = pair(query, value, num_shards=4, num_key_value_heads=2)
    _, mixed = pair(query, value, num_shards=4, num_key_value_heads=2, dtype=policy)
    mixed.set_weights(mha.get_weights())
    assert mixed.compute_dtype == policy.split("_")[1]
    mask = np.ones((2, 9), bool)
    mask[1, 5:] = False
    kwargs = {"use_causal_mask": True, "value_mask": mask}
    got = mixed(query, value, **kwargs)
    assert keras.backend.standardize_dtype(got.dtype) == mixed.compute_dtype
    got = ref.to_np(got)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref.to_np(full(query, value, **kwargs)), atol=atol)


def test_dropout_only_in_training():
    query = normal(2, 6, 8)
    mha, plain = pair(query, query, num_shards=2)
    dropped = DistributedAttention(
        num_heads=4, key_dim=4, num_shards=2, dropout=0.5, seed=3
    )
    dropped.build(query.shape, query.shape)
    dropped.set_weights(mha.get_weights())
    want = ref.to_np(plain(query, query))
    np.testing.assert_allclose(ref.to_np(dropped(query, query)), want, atol=1e-6)
    trained = ref.to_np(dropped(query, query, training=True))
    assert np.isfinite(trained).all()
    assert np.abs(trained - want).max() > 1e-3


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------
def test_jit_compiled_fit_on_one_device():
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(12, 16, mask_zero=True)(tokens)
    attention = DistributedAttention(
        num_heads=4, key_dim=4, num_key_value_heads=2, num_shards=3, dropout=0.1
    )
    x = x + attention(x, x, use_causal_mask=True)
    model = keras.Model(tokens, keras.layers.Dense(12)(x))
    ids = np.random.default_rng(1).integers(1, 12, size=(8, 10))
    ids[::2, 7:] = 0
    targets = np.roll(ids, -1, axis=1)
    before = ref.to_np(attention.query_dense.kernel)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    losses = model.fit(ids, targets, batch_size=8, epochs=3, verbose=0).history[
        "loss"
    ]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert np.abs(ref.to_np(attention.query_dense.kernel) - before).max() > 1e-6


def test_inside_transformer_encoder():
    x = normal(2, 7, 8)
    mask = np.ones((2, 7), bool)
    mask[0, 4:] = False
    plain = TransformerEncoder(12, 2, attention_kwargs={"num_key_value_heads": 1})
    plain(x)
    block = TransformerEncoder(
        12,
        2,
        attention="distributed",
        attention_kwargs={"num_shards": 3, "num_key_value_heads": 1},
    )
    block(x)
    assert isinstance(block.self_attention_layer, DistributedAttention)
    assert block.self_attention_layer.num_shards == 3
    block.set_weights(plain.get_weights())
    np.testing.assert_allclose(
        ref.to_np(block(x, padding_mask=mask)),
        ref.to_np(plain(x, padding_mask=mask)),
        atol=1e-5,
    )


def test_keras_file_round_trip(tmp_path):
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(12, 8, mask_zero=True)(tokens)
    x = DistributedAttention(
        num_heads=4,
        key_dim=4,
        num_key_value_heads=2,
        num_shards=2,
        devices=["/device:CPU:0"],
        output_shape=6,
        dropout=0.1,
    )(x, x, use_causal_mask=True)
    model = keras.Model(tokens, keras.layers.GlobalAveragePooling1D()(x))
    ids = np.array([[1, 2, 3, 4, 0, 0], [5, 6, 7, 8, 9, 10]])
    restored = helpers.assert_keras_roundtrip(model, ids, tmp_path, atol=1e-5)
    layer = restored.layers[2]
    assert isinstance(layer, DistributedAttention)
    assert layer.get_config() == model.layers[2].get_config()
    assert layer.devices == ["/device:CPU:0"]


def test_export_serves_without_the_package(tmp_path):
    query = keras.Input((5, 8))
    value = keras.layers.Dense(6)(query)
    out = DistributedAttention(
        num_heads=4, key_dim=4, num_key_value_heads=2, num_shards=2
    )(query, value, use_causal_mask=True)
    model = keras.Model(query, out)
    helpers.assert_export_roundtrip(model, normal(2, 5, 8), tmp_path)


# --------------------------------------------------------------------------
# Placement on several (logical CPU) devices and MirroredStrategy
# --------------------------------------------------------------------------
_PLACEMENT_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 4
    )
    import keras
    from keras_attention.layers import MultiHeadAttention
    from keras_attention.layers.attention.distributed_attention import (
        DistributedAttention,
    )

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) == 4, devices
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 7, 16)).astype("float32")
    v = rng.standard_normal((2, 10, 12)).astype("float32")
    mha = MultiHeadAttention(num_heads=4, key_dim=8, num_key_value_heads=2)
    mha(q, v)
    layer = DistributedAttention(
        num_heads=4, key_dim=8, num_key_value_heads=2, devices=devices
    )
    layer(q, v)
    layer.set_weights(mha.get_weights())
    assert layer.shard_plan() == (4, tuple(devices))
    pad = np.ones((2, 10), bool)
    pad[0, 6:] = False
    for kwargs in ({}, {"use_causal_mask": True}, {"value_mask": pad}):
        err = np.abs(
            np.asarray(layer(q, v, **kwargs)) - np.asarray(mha(q, v, **kwargs))
        ).max()
        assert err < 1e-5, (kwargs, err)

    # The traced graph: each shard's score ops sit on its own device.
    fn = tf.function(lambda a, b: layer(a, b, use_causal_mask=True))
    graph = fn.get_concrete_function(tf.constant(q), tf.constant(v)).graph
    placed = {}
    for op in graph.get_operations():
        if op.type in ("Exp", "Max"):
            placed.setdefault(op.device, []).append(op.type)
    # Unplaced (current device): the merge (its exps), no shard's scores.
    unplaced = placed.pop("")
    assert "Exp" in unplaced and "Max" not in unplaced, unplaced
    assert sorted(placed) == sorted(
        tf.DeviceSpec.from_string(d).to_string() for d in devices
    ), sorted(placed)
    for device, types in placed.items():
        assert {"Max", "Exp"} <= set(types), (device, types)
    err = np.abs(
        np.asarray(fn(q, v)) - np.asarray(mha(q, v, use_causal_mask=True))
    ).max()
    assert err < 1e-5, err

    # Two shards per device: neighbouring shards share one.
    layer8 = DistributedAttention(
        num_heads=4, key_dim=8, num_key_value_heads=2, num_shards=8,
        devices=devices,
    )
    layer8(q, v)
    layer8.set_weights(mha.get_weights())
    err = np.abs(np.asarray(layer8(q, v)) - np.asarray(mha(q, v))).max()
    assert err < 1e-5, err

    # MirroredStrategy over 2 logical CPUs: one fit step.
    strategy = tf.distribute.MirroredStrategy(devices[:2])
    with strategy.scope():
        inputs = keras.Input((6, 8))
        attention = DistributedAttention(num_heads=2, key_dim=4)
        assert attention.shard_plan()[0] == 2
        y = attention(inputs, inputs, use_causal_mask=True)
        y = keras.layers.GlobalAveragePooling1D()(y)
        model = keras.Model(inputs, keras.layers.Dense(1)(y))
        model.compile(optimizer="adam", loss="mse")
    x = rng.standard_normal((8, 6, 8)).astype("float32")
    t = rng.standard_normal((8, 1)).astype("float32")
    before = np.asarray(attention.key_dense.kernel).copy()
    history = model.fit(x, t, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.abs(np.asarray(attention.key_dense.kernel) - before).max() > 0
    print("PLACEMENT OK")
    """
)


def test_shards_placed_on_logical_devices_and_mirrored_fit(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", _PLACEMENT_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "PLACEMENT OK" in result.stdout


def test_placement_plan_without_devices():
    layer = DistributedAttention(num_heads=2, key_dim=4)
    assert layer.shard_plan() == (1, ())
    layer = DistributedAttention(num_heads=2, key_dim=4, num_shards=3)
    assert layer.shard_plan() == (3, ())
    # A one-device strategy places nothing.
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        assert layer.shard_plan() == (3, ())
    assert distributed_attention.strategy_devices() == ()


# --------------------------------------------------------------------------
# Arguments, config, registry, docs
# --------------------------------------------------------------------------
def test_get_config_is_complete_and_registered():
    layer = DistributedAttention(
        num_heads=4,
        key_dim=6,
        value_dim=3,
        num_key_value_heads=2,
        num_shards=4,
        devices=("/device:CPU:0", "/device:CPU:1"),
        dropout=0.25,
        seed=11,
    )
    config = layer.get_config()
    assert config["num_shards"] == 4
    assert config["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert config["num_key_value_heads"] == 2 and config["dropout"] == 0.25
    assert DistributedAttention.from_config(config).get_config() == config
    assert registry.get_class("distributed") is DistributedAttention
    made = registry.get("distributed", num_heads=2, key_dim=4, num_shards=2)
    assert isinstance(made, DistributedAttention) and made.num_shards == 2
    assert keras.saving.get_registered_object(
        "keras_attention>DistributedAttention"
    ) is DistributedAttention


BAD_INIT = [
    ({"num_shards": 0}, r"DistributedAttention: `num_shards` must be a positive integer or None.*num_shards=0"),
    ({"num_shards": 2.0}, r"`num_shards` must be a positive integer"),
    ({"num_shards": True}, r"`num_shards` must be a positive integer"),
    ({"devices": "/device:CPU:0"}, r"DistributedAttention: `devices` must be None or a non-empty list of device names.*'/device:CPU:0'"),
    ({"devices": []}, r"`devices` must be None or a non-empty list"),
    ({"devices": ["/device:CPU:0", 1]}, r"`devices` must be None or a non-empty list"),
    (
        {"devices": ["/device:CPU:0", "/device:CPU:1"], "num_shards": 3},
        r"DistributedAttention: `num_shards` must be a multiple of `len\(devices\)`.*num_shards=3, len\(devices\)=2",
    ),
    ({"num_key_value_heads": 3}, r"`num_key_value_heads` must divide"),
]


@pytest.mark.parametrize("init, message", BAD_INIT)
def test_bad_arguments(init, message):
    with pytest.raises(ValueError, match=message):
        DistributedAttention(num_heads=4, key_dim=4, **init)


