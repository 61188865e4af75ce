"""Tests for `LowRankAttention` (Linformer).

Expected numbers come from a NumPy (float64) reference of the layer's own
definition, written out below with the layer's weights read back as arrays:

    q = query Wq + bq,  k = key Wk + bk,  v = value Wv + bv     (per head)
    k[t] = v[t] = 0 at padded key positions t
    K' = E[:, :Tk] k,   V' = F[:, :Tk] v                         (per head)
    heads = softmax(q K'^T / sqrt(key_dim)) V'   (zeros for an example
                                                  with no real key)
    output = heads Wo + bo,  zeros at padded queries

The projections and the softmax core come from `attention_reference.py`,
shared with the other attention layers' tests.
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
from keras.src.backend.common.masking import get_keras_mask

import attention_reference as ref
import helpers

from keras_attention.layers.attention import registry
from keras_attention.layers.attention.low_rank_attention import LowRankAttention

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """The same random inputs for a test however the suite is filtered."""
    global RNG
    RNG = np.random.default_rng(0)


def normal(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype("float32")


def make_layer(query, value, key=None, scale=0.3, **init):
    """A built `LowRankAttention` with random kernels, biases and E/F."""
    init = {"num_heads": 2, "key_dim": 4, "max_length": 9, "rank": 3, **init}
    layer = LowRankAttention(**init)
    layer.build(query.shape, value.shape, None if key is None else key.shape)
    layer.set_weights(
        [normal(*w.shape, scale=scale) for w in layer.get_weights()]
    )
    return layer


def copy_of(layer, **overrides):
    config = {**layer.get_config(), **overrides}
    config.pop("name")
    clone = LowRankAttention.from_config(config)
    clone.build_from_config(layer.get_build_config())
    clone.set_weights(layer.get_weights())
    return clone


# --------------------------------------------------------------------------
# The reference
# --------------------------------------------------------------------------
def reference(
    layer, query, value, key=None, value_mask=None, key_mask=None, query_mask=None
):
    """What the layer should compute, in float64: `(output, weights)`."""
    e = ref.to_np(layer.key_projection)
    f = ref.to_np(layer.value_projection)
    b, tk = query.shape[0], value.shape[1]
    keep = np.ones((b, tk), bool)
    for m in (value_mask, key_mask):
        if m is not None:
            keep &= np.asarray(m, bool)

    def attend(q, k, v, allowed):
        k = np.where(keep[:, :, None, None], k, 0.0)
        v = np.where(keep[:, :, None, None], v, 0.0)
        k_c = np.einsum("rt,bthd->brhd", e[:, :tk], k)
        v_c = np.einsum("rt,bthd->brhd", f[:, :tk], v)
        has_key = keep.any(axis=-1)[:, None, None, None]
        return ref.attention(q, k_c, v_c, allowed=has_key)

    return ref.multi_head(
        layer, query, value, key, query_mask=query_mask, attend=attend
    )


# --------------------------------------------------------------------------
# Keras' layer conformance harness
# --------------------------------------------------------------------------
class TestConformance(testing.TestCase):
    def test_defaults(self):
        self.run_layer_test(
            LowRankAttention,
            init_kwargs={"num_heads": 2, "key_dim": 4, "max_length": 6, "rank": 3},
            input_shape={"query_shape": (2, 8, 16), "value_shape": (2, 4, 12)},
            expected_output_shape=(2, 8, 16),
            # q/k/v/o kernels and biases, E and F.
            expected_num_trainable_weights=10,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=True,
            run_training_check=False,
        )

    def test_shared_projection_gqa_dropout_regularizers(self):
        self.run_layer_test(
            LowRankAttention,
            init_kwargs={
                "num_heads": 4,
                "key_dim": 2,
                "value_dim": 3,
                "num_key_value_heads": 2,
                "max_length": 4,
                "rank": 2,
                "share_kv_projection": True,
                "use_bias": False,
                "output_shape": 5,
                "dropout": 0.5,
                "kernel_regularizer": "l2",
                "projection_regularizer": "l1",
            },
            input_shape={
                "query_shape": (2, 8, 16),
                "value_shape": (2, 4, 12),
                "key_shape": (2, 4, 10),
            },
            call_kwargs={"training": True},
            expected_output_shape=(2, 8, 5),
            # q/k/v/o kernels and one shared E = F.
            expected_num_trainable_weights=5,
            expected_num_losses=5,
            supports_masking=True,
            run_training_check=False,
        )

    def test_return_attention_scores(self):
        self.run_layer_test(
            LowRankAttention,
            init_kwargs={"num_heads": 2, "key_dim": 4, "max_length": 8, "rank": 5},
            input_shape={"query_shape": (2, 3, 16), "value_shape": (2, 7, 16)},
            call_kwargs={"return_attention_scores": True},
            # Weights over the rank compressed positions, not the 7 tokens.
            expected_output_shape=((2, 3, 16), (2, 2, 3, 5)),
            supports_masking=True,
            run_training_check=False,
        )


# --------------------------------------------------------------------------
# The NumPy reference
# --------------------------------------------------------------------------
CASES = {
    # name: (init, query shape, value shape, key shape)
    "self_full_length": ({}, (2, 9, 8), None, None),
    "self_shorter": ({}, (2, 6, 8), None, None),
    "cross_longer_query": ({}, (2, 12, 8), (2, 7, 6), None),
    "cross_one_query": ({}, (2, 1, 8), (2, 7, 6), None),
    "separate_key": ({}, (2, 5, 8), (2, 7, 6), (2, 7, 4)),
    "shared_kv": ({"share_kv_projection": True}, (2, 5, 8), (2, 7, 6), None),
    "gqa": (
        {"num_heads": 4, "num_key_value_heads": 2},
        (2, 5, 8),
        (2, 7, 6),
        None,
    ),
    "mqa_value_dim_output_shape": (
        {"num_heads": 4, "num_key_value_heads": 1, "value_dim": 3, "output_shape": 5},
        (2, 5, 8),
        (2, 7, 6),
        None,
    ),
    "no_bias": ({"use_bias": False}, (2, 5, 8), (2, 7, 6), None),
    "rank_equals_max_length": ({"rank": 9}, (2, 5, 8), (2, 9, 6), None),
    "rank_one": ({"rank": 1}, (2, 5, 8), (2, 4, 6), None),
}


@pytest.mark.parametrize("case", CASES)
def test_matches_numpy_reference(case):
    init, q_shape, v_shape, k_shape = CASES[case]
    query = normal(*q_shape)
    value = query if v_shape is None else normal(*v_shape)
    key = None if k_shape is None else normal(*k_shape)
    layer = make_layer(query, value, key, **init)
    want, want_scores = reference(layer, query, value, key)
    out, scores = layer(query, value, key, return_attention_scores=True)
    assert tuple(scores.shape) == (q_shape[0], layer.num_heads, q_shape[1], layer.rank)
    np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)
    np.testing.assert_allclose(ref.to_np(scores), want_scores, atol=1e-6)
    np.testing.assert_allclose(ref.to_np(scores).sum(-1), 1.0, atol=1e-5)
    # Without the weights: the same output.
    np.testing.assert_allclose(ref.to_np(layer(query, value, key)), want, atol=1e-5)


def test_shared_projection_is_one_weight():
    x = normal(2, 5, 8)
    layer = make_layer(x, x, share_kv_projection=True)
    assert layer.key_projection is layer.value_projection
    assert len(layer.trainable_weights) == 9
    assert [w.name for w in layer.weights].count("key_value_projection") == 1
    separate = make_layer(x, x)
    names = {w.name for w in separate.weights}
    assert {"key_projection", "value_projection"} <= names
    assert tuple(separate.key_projection.shape) == (3, 9)


def test_masks_match_numpy_reference():
    query, value, key = normal(3, 5, 8), normal(3, 7, 6), normal(3, 7, 4)
    layer = make_layer(query, value, key, num_heads=4, num_key_value_heads=2)
    value_mask = np.array([[1] * 7, [1, 1, 1, 0, 0, 0, 0], [0] * 7], bool)
    key_mask = np.array([[1, 1, 0, 1, 1, 1, 1], [1] * 7, [1] * 7], bool)
    query_mask = np.array([[1] * 5, [1, 1, 1, 1, 0], [1] * 5], bool)
    want, want_scores = reference(
        layer,
        query,
        value,
        key,
        value_mask=value_mask,
        key_mask=key_mask,
        query_mask=query_mask,
    )
    out, scores = layer(
        query,
        value,
        key,
        value_mask=value_mask,
        key_mask=key_mask,
        query_mask=query_mask,
        return_attention_scores=True,
    )
    out, scores = ref.to_np(out), ref.to_np(scores)
    np.testing.assert_allclose(out, want, atol=1e-5)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    # Padded query: zeros. Example with no real key: zero weights, and
    # its output is the output projection's bias (zero heads).
    np.testing.assert_array_equal(out[1, 4], 0.0)
    np.testing.assert_array_equal(scores[1, :, 4], 0.0)
    np.testing.assert_array_equal(scores[2], 0.0)
    bias = ref.to_np(layer.output_dense.bias)
    np.testing.assert_allclose(out[2], np.broadcast_to(bias, out[2].shape), atol=1e-6)


def test_keras_masks_from_embedding():
    q_ids = np.array([[3, 1, 4, 1, 5, 0], [9, 2, 6, 0, 0, 0]])
    v_ids = np.array([[2, 7, 1, 8, 2, 8, 1], [8, 2, 8, 0, 0, 0, 0]])
    q_emb = keras.layers.Embedding(10, 8, mask_zero=True)
    v_emb = keras.layers.Embedding(10, 6, mask_zero=True)
    query, value = q_emb(q_ids), v_emb(v_ids)
    layer = make_layer(query, value)
    out = layer(query, value)
    np.testing.assert_array_equal(
        ref.to_np(get_keras_mask(out)).astype(bool), q_ids > 0
    )
    want, _ = reference(
        layer,
        ref.to_np(query),
        ref.to_np(value),
        value_mask=v_ids > 0,
        query_mask=q_ids > 0,
    )
    np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)


def test_padding_is_the_same_as_a_shorter_input():
    # Padding an input to max_length (and masking the padding) changes
    # nothing: E and F columns past the real length see zeros either way.
    x = normal(2, 5, 8)
    padded = np.concatenate([x, normal(2, 4, 8, scale=10.0)], axis=1)
    mask = np.arange(9)[None, :] < 5
    mask = np.broadcast_to(mask, (2, 9))
    layer = make_layer(padded, padded)
    short = ref.to_np(layer(x, x))
    long = ref.to_np(layer(padded, padded, value_mask=mask, query_mask=mask))
    np.testing.assert_allclose(long[:, :5], short, atol=1e-5)
    np.testing.assert_array_equal(long[:, 5:], 0.0)


def test_single_query_attention_mask_is_a_padding_mask():
    query, value = normal(2, 1, 8), normal(2, 7, 6)
    layer = make_layer(query, value)
    keep = np.array([[1, 1, 1, 1, 0, 0, 0], [1] * 7], bool)
    want = ref.to_np(layer(query, value, value_mask=keep))
    got = ref.to_np(layer(query, value, attention_mask=keep[:, None, :]))
    np.testing.assert_allclose(got, want, atol=1e-6)
    got = ref.to_np(layer(query, value, attention_mask=keep[:, None, None, :]))
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_key_padding_attention_mask_broadcasts_over_queries():
    # The documented key padding form `(batch, 1, Tv)` (and `(1, Tv)`,
    # `(batch, 1, 1, Tv)`) holds for every one of several queries: it is the
    # same `value_mask`, checked against the NumPy reference.
    query, value = normal(2, 5, 8), normal(2, 7, 6)
    layer = make_layer(query, value)
    keep = np.array([[1, 1, 1, 1, 0, 0, 0], [1, 0, 1, 1, 1, 0, 1]], bool)
    want, _ = reference(layer, query, value, value_mask=keep)
    np.testing.assert_allclose(
        ref.to_np(layer(query, value, value_mask=keep)), want, atol=1e-5
    )
    for mask in (keep[:, None, :], keep[:, None, None, :]):
        got = ref.to_np(layer(query, value, attention_mask=mask))
        np.testing.assert_allclose(got, want, atol=1e-5)
    # One mask for the whole batch.
    shared = keep[:1]
    want, _ = reference(layer, query, value, value_mask=np.repeat(shared, 2, 0))
    got = ref.to_np(layer(query, value, attention_mask=shared))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # With the weights too, and in a functional model.
    _, scores = layer(
        query, value, attention_mask=keep[:, None], return_attention_scores=True
    )
    _, want_scores = reference(layer, query, value, value_mask=keep)
    np.testing.assert_allclose(ref.to_np(scores), want_scores, atol=1e-5)
    inputs = [
        keras.Input((5, 8), batch_size=2),
        keras.Input((7, 6), batch_size=2),
        keras.Input((1, 7), batch_size=2, dtype="bool"),
    ]
    model = keras.Model(
        inputs, layer(inputs[0], inputs[1], attention_mask=inputs[2])
    )
    want, _ = reference(layer, query, value, value_mask=keep)
    np.testing.assert_allclose(
        ref.to_np(model([query, value, keep[:, None]])), want, atol=1e-5
    )


def test_gradients_skip_padding_and_unused_columns():
    # Masking happens before the compression: E/F columns of padded
    # positions, and those past the input's length, get no gradient; all
    # the others, and every other weight, do.
    query, value = normal(2, 5, 8), normal(2, 7, 6)
    layer = make_layer(query, value)
    value_mask = np.array([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 0]], bool)
    with tf.GradientTape() as tape:
        out = layer(query, value, value_mask=value_mask)
        loss = tf.reduce_sum(out * normal(2, 5, 8))
    grads = tape.gradient(loss, layer.trainable_variables)
    by_name = dict(zip([w.path for w in layer.trainable_variables], grads))
    for name in ("key_projection", "value_projection"):
        g = ref.to_np(by_name.pop(f"{layer.name}/{name}"))
        assert np.abs(g[:, :6]).min() > 0, name
        np.testing.assert_array_equal(g[:, 6:], 0.0)
    # Unlike in full attention, the key bias matters: each compressed key
    # gets it times the sum of its row of E, a different amount per row.
    assert len(by_name) == 8
    for name, g in by_name.items():
        assert np.abs(ref.to_np(g)).max() > 0, name


# --------------------------------------------------------------------------
# Dtype policies
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "policy, atol", [("mixed_float16", 2e-2), ("mixed_bfloat16", 1e-1)]
)
def test_mixed_precision_close_to_float32(policy, atol):
    query, value = normal(3, 6, 8), normal(3, 9, 6)
    full = make_layer(query, value, num_heads=4, num_key_value_heads=2, rank=4)
    mixed = copy_of(full, dtype=policy)
    assert mixed.compute_dtype == policy.split("_")[1]
    assert all(w.dtype == "float32" for w in mixed.weights)
    value_mask = np.ones((3, 9), bool)
    value_mask[1, 5:] = False
    value_mask[2] = False  # nothing to attend to
    query_mask = np.ones((3, 6), bool)
    query_mask[0, 4:] = False
    kwargs = {
        "value_mask": value_mask,
        "query_mask": query_mask,
        "return_attention_scores": True,
    }
    want, want_scores = (ref.to_np(t) for t in full(query, value, **kwargs))
    out, scores = mixed(query, value, **kwargs)
    for t in (out, scores):
        assert keras.backend.standardize_dtype(t.dtype) == mixed.compute_dtype
    out, scores = ref.to_np(out), ref.to_np(scores)
    assert np.isfinite(out).all() and np.isfinite(scores).all()
    np.testing.assert_allclose(out, want, atol=atol, rtol=atol)
    np.testing.assert_allclose(scores, want_scores, atol=atol)
    np.testing.assert_array_equal(scores[2], 0.0)
    np.testing.assert_array_equal(out[0, 4:], 0.0)


# --------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------
def test_dropout_only_in_training():
    query, value = normal(2, 6, 8), normal(2, 7, 6)
    plain = make_layer(query, value)
    dropped = copy_of(plain, dropout=0.5, seed=7)
    want = ref.to_np(plain(query, value))
    for training in (None, False):
        np.testing.assert_allclose(
            ref.to_np(dropped(query, value, training=training)), want, atol=1e-6
        )
    trained = ref.to_np(dropped(query, value, training=True))
    assert np.isfinite(trained).all()
    assert np.abs(trained - want).max() > 1e-3


# --------------------------------------------------------------------------
# Models: XLA training, serialization, export, registry, encoder block
# --------------------------------------------------------------------------
def test_jit_compiled_fit_with_padding():
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(12, 16, mask_zero=True)(tokens)
    attention = LowRankAttention(
        num_heads=4, key_dim=4, num_key_value_heads=2, max_length=10, rank=4,
        dropout=0.1,
    )
    x = x + attention(x, x)
    model = keras.Model(tokens, keras.layers.Dense(12)(x))
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 12, size=(8, 10))
    ids[::2, 7:] = 0
    targets = np.roll(ids, -1, axis=1)
    before = [ref.to_np(w) for w in attention.trainable_weights]
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = model.fit(ids, targets, batch_size=8, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]
    after = [ref.to_np(w) for w in attention.trainable_weights]
    names = [w.name for w in attention.trainable_weights]
    assert "key_projection" in names and "value_projection" in names
    assert len(names) == 10
    for name, b, a in zip(names, before, after):
        assert np.abs(a - b).max() > 1e-6, name


def test_keras_file_round_trip(tmp_path):
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(12, 8, mask_zero=True)(tokens)
    layer = LowRankAttention(
        num_heads=2,
        key_dim=4,
        value_dim=3,
        num_key_value_heads=1,
        max_length=8,
        rank=3,
        share_kv_projection=True,
        projection_initializer=keras.initializers.RandomNormal(seed=5),
        projection_regularizer="l2",
        projection_constraint="non_neg",
        dropout=0.2,
        output_shape=6,
        bias_initializer="ones",
    )
    x = layer(x, x)
    model = keras.Model(tokens, keras.layers.GlobalAveragePooling1D()(x))
    ids = np.array([[1, 2, 3, 4, 0, 0], [5, 6, 7, 8, 9, 10]])
    restored = helpers.assert_keras_roundtrip(model, ids, tmp_path)
    loaded = restored.layers[2]
    assert isinstance(loaded, LowRankAttention)
    assert loaded.get_config() == layer.get_config()


def test_export_serves_without_the_package(tmp_path):
    # A dynamic length: the served graph slices E and F at run time.
    query = keras.Input((None, 8))
    value = keras.layers.Dense(6)(query)
    out = LowRankAttention(num_heads=2, key_dim=4, max_length=8, rank=3)(
        query, value
    )
    model = keras.Model(query, out)
    helpers.assert_export_roundtrip(model, normal(2, 6, 8), tmp_path)


def test_registry_and_get_config():
    assert "low_rank" in registry.available()
    assert registry.get_class("low_rank") is LowRankAttention
    layer = registry.get(
        "low_rank", num_heads=2, key_dim=4, max_length=16, rank=8
    )
    assert isinstance(layer, LowRankAttention)
    layer = LowRankAttention(
        num_heads=4,
        key_dim=6,
        value_dim=3,
        num_key_value_heads=2,
        max_length=32,
        rank=8,
        share_kv_projection=True,
        projection_initializer="he_normal",
        projection_regularizer="l2",
        dropout=0.25,
        use_bias=False,
        output_shape=7,
        seed=11,
        name="linformer",
    )
    config = layer.get_config()
    for name, value in {
        "num_heads": 4,
        "key_dim": 6,
        "value_dim": 3,
        "num_key_value_heads": 2,
        "max_length": 32,
        "rank": 8,
        "share_kv_projection": True,
        "dropout": 0.25,
        "use_bias": False,
        "output_shape": 7,
        "seed": 11,
    }.items():
        assert config[name] == value, name
    assert config["projection_initializer"]["class_name"] == "HeNormal"
    assert config["projection_regularizer"]["class_name"] == "L2"
    assert LowRankAttention.from_config(config).get_config() == config
    restored = registry.get(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == config


def test_int_seeded_initializer_gives_different_e_and_f():
    x = normal(1, 6, 8)
    layer = LowRankAttention(
        num_heads=2,
        key_dim=4,
        max_length=6,
        rank=3,
        projection_initializer=keras.initializers.GlorotUniform(seed=3),
    )
    layer(x, x)
    e, f = ref.to_np(layer.key_projection), ref.to_np(layer.value_projection)
    assert np.abs(e - f).max() > 1e-3


def test_inside_transformer_encoder(tmp_path):
    encoder_module = pytest.importorskip(
        "keras_attention.layers.transformer.transformer_encoder"
    )
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 16, mask_zero=True)(tokens)
    block = encoder_module.TransformerEncoder(
        intermediate_dim=32,
        num_heads=2,
        attention="low_rank",
        attention_kwargs={"max_length": 12, "rank": 4},
    )
    x, scores = block(x, return_attention_scores=True)
    assert tuple(scores.shape) == (None, 2, None, 4)
    pooled = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(tokens, keras.layers.Dense(2)(pooled))
    attention = block.self_attention_layer
    assert isinstance(attention, LowRankAttention)
    ids = np.array([[1, 2, 3, 4, 5, 0, 0, 0], [6, 7, 8, 9, 10, 11, 12, 13]])
    out = ref.to_np(model(ids))
    assert np.isfinite(out).all()
    # Padding doesn't change the first example's output.
    np.testing.assert_allclose(ref.to_np(model(ids[:1, :5])), out[:1], atol=1e-5)
    helpers.assert_keras_roundtrip(model, ids, tmp_path)


# --------------------------------------------------------------------------
# Arguments and inputs
# --------------------------------------------------------------------------
BAD_INIT = [
    (
        {"max_length": 0},
        r"LowRankAttention: `max_length` must be a positive integer.*max_length=0",
    ),
    (
        {"max_length": 8.0},
        r"LowRankAttention: `max_length` must be a positive integer.*max_length=8.0",
    ),
    (
        {"max_length": 8, "rank": 0},
        r"LowRankAttention: `rank` must be a positive integer.*rank=0",
    ),
    (
        {"max_length": 8, "rank": 9},
        r"LowRankAttention: `rank` must be at most `max_length`.*rank=9, max_length=8",
    ),
    (
        {"max_length": 8, "rank": 4, "share_kv_projection": "yes"},
        r"LowRankAttention: `share_kv_projection` must be a bool.*'yes'",
    ),
    (
        {"max_length": 8, "rank": 4, "num_key_value_heads": 3},
        r"LowRankAttention: `num_key_value_heads` must divide `num_heads`",
    ),
    (
        {"max_length": 8, "rank": 4, "dropout": 1.0},
        r"LowRankAttention: `dropout` must be a float in \[0, 1\)",
    ),
]


@pytest.mark.parametrize("init, message", BAD_INIT)
def test_bad_arguments(init, message):
    with pytest.raises(ValueError, match=message):
        LowRankAttention(num_heads=2, key_dim=4, **init)


def test_too_long_inputs():
    q, v = normal(2, 5, 8), normal(2, 10, 6)
    message = (
        r"'lr' \(LowRankAttention\): `value` must have at most max_length=8 "
        r"positions.*value.shape=\((2|None), 10, 6\), i.e. 10 positions"
    )
    layer = LowRankAttention(num_heads=2, key_dim=4, max_length=8, rank=4, name="lr")
    with pytest.raises(ValueError, match=message):
        layer(q, v)  # at build time
    layer(q, v[:, :8])
    with pytest.raises(ValueError, match=message):
        layer(q, v)  # at call time
    with pytest.raises(ValueError, match=message):
        layer(keras.Input((5, 8)), keras.Input((10, 6)))  # symbolic
    # The query may be longer than max_length (cross-attention).
    assert tuple(layer(normal(2, 20, 8), v[:, :8]).shape) == (2, 20, 8)


def test_causal_and_per_query_masks_are_refused():
    q, v = normal(2, 5, 8), normal(2, 7, 6)
    layer = LowRankAttention(num_heads=2, key_dim=4, max_length=8, rank=4, name="lr")
    causal = r"'lr' \(LowRankAttention\): `use_causal_mask` must be False"
    with pytest.raises(ValueError, match=causal):
        layer(q, v, use_causal_mask=True)
    with pytest.raises(ValueError, match=causal):
        layer(keras.Input((5, 8)), keras.Input((7, 6)), use_causal_mask=True)
    per_query = (
        r"'lr' \(LowRankAttention\): `attention_mask` must be a key padding "
        r"mask.*value_mask.*attention_mask.shape=\(2, 5, 7\)"
    )
    with pytest.raises(ValueError, match=per_query):
        layer(q, v, attention_mask=np.ones((2, 5, 7), bool))
    with pytest.raises(ValueError, match=per_query):
        layer(
            keras.Input((5, 8), batch_size=2),
            keras.Input((7, 6), batch_size=2),
            attention_mask=keras.Input((5, 7), batch_size=2, dtype="bool"),
        )
    with pytest.raises(ValueError, match=r"`attention_mask` must be a key padding"):
        layer(q, v, attention_mask=np.ones((2, 2, 1, 7), bool))  # per head
    with pytest.raises(ValueError, match=r"`attention_mask` must be a key padding"):
        layer(q, v, attention_mask=np.ones((5, 7), bool))


def test_bad_inputs_from_the_shell():
    layer = LowRankAttention(num_heads=2, key_dim=4, max_length=8, rank=4, name="lr")
    with pytest.raises(
        ValueError, match=r"'lr' \(LowRankAttention\): `query` must have rank 3"
    ):
        layer(normal(2, 8), normal(2, 7, 6))
    with pytest.raises(
        ValueError,
        match=r"'lr' \(LowRankAttention\): `value_mask` must have shape \(2, 7\)",
    ):
        layer(normal(2, 5, 8), normal(2, 7, 6), value_mask=np.ones((2, 5), bool))


def test_compute_output_shape_and_spec():
    layer = LowRankAttention(
        num_heads=2, key_dim=4, max_length=8, rank=3, output_shape=5
    )
    assert layer.compute_output_shape((None, 3, 8), (None, 4, 6)) == (None, 3, 5)
    out, scores = layer(
        keras.Input((3, 8)), keras.Input((4, 6)), return_attention_scores=True
    )
    assert tuple(out.shape) == (None, 3, 5)
    assert tuple(scores.shape) == (None, 2, 3, 3)


# --------------------------------------------------------------------------
# Long inputs: linear memory, forward and backward
# --------------------------------------------------------------------------
_LONG_INPUT = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    import tensorflow as tf
    import keras
    from keras_attention.layers.attention.low_rank_attention import LowRankAttention

    T = int(sys.argv[1])
    layer = LowRankAttention(num_heads=4, key_dim=64, max_length=T, rank=128)
    x = tf.constant(np.random.default_rng(0).standard_normal((1, T, 256)),
                    "float32")
    layer.build(x.shape, x.shape)

    def step(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(layer(inputs, inputs) ** 2)
        return tape.gradient(loss, [inputs] + layer.trainable_variables)

    step(x[:, :256])  # warm up kernels and thread pools on a short input

    def rss_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def mapped_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    baseline = rss_mib()
    # Backstop: refuse allocations beyond 3 GiB more address space, so a
    # quadratic regression fails fast instead of swapping the machine.
    cap = mapped_bytes() + 3 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    grads = step(x)
    ok = all(bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads)
    print(json.dumps({"baseline": baseline, "peak": rss_mib(), "finite": ok}))
    """
)


def test_long_input_forward_backward_in_linear_memory():
    # T = 16384, 4 heads: one (T, T) float32 score matrix per head is
    # 4 * 16384**2 * 4 B = 4 GiB, and exact attention's forward + backward
    # holds several. The Linformer step must stay far below one of them.
    import json

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", _LONG_INPUT, "16384"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["finite"]
    added = report["peak"] - report["baseline"]
    assert added < 1024, report  # MiB; a quarter of one score matrix
