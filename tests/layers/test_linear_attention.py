"""Tests for `keras_attention.layers.attention.linear_attention.LinearAttention`.

Expected numbers come from the NumPy (float64) quadratic form of
`linear_reference.py` (`phi(Q) phi(K)^T`, masked, row-normalised, times V)
plugged into the projections of `attention_reference.multi_head`, with the
layer's own weights read back, including the FAVOR+ projection matrix.
"""

import json
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
import linear_reference as lin

from keras_attention.layers.attention import registry
from keras_attention.layers.attention.linear_attention import LinearAttention

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """The same random inputs for a test however the suite is filtered."""
    global RNG
    RNG = np.random.default_rng(0)


def normal(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype("float32")


def make_layer(query, value, key=None, scale=0.3, **init):
    """A built `LinearAttention` with random kernels and biases."""
    layer = LinearAttention(**{"num_heads": 4, "key_dim": 4, **init})
    layer.build(query.shape, value.shape, None if key is None else key.shape)
    # Random kernels *and biases*, so a mix-up of biases shows; the FAVOR+
    # projection keeps its seeded draw.
    for weight in layer.trainable_weights:
        weight.assign(normal(*weight.shape, scale=scale))
    return layer


def copy_of(layer, **overrides):
    """A fresh layer with `layer`'s config (plus overrides) and weights."""
    config = {**layer.get_config(), **overrides}
    config.pop("name")
    clone = LinearAttention.from_config(config)
    clone.build_from_config(layer.get_build_config())
    clone.set_weights(layer.get_weights())
    return clone


def reference(layer, query, value, key=None, **kwargs):
    """`ref.multi_head` with the linear-attention core of the layer."""
    projection = None
    if layer.feature_map == "favor":
        projection = ref.to_np(layer.feature_projection)

    def attend(q, k, v, allowed):
        return lin.linear_attention(
            q,
            k,
            v,
            layer.feature_map,
            projection,
            allowed=allowed,
            eps=layer.epsilon,
        )

    return ref.multi_head(layer, query, value, key, attend=attend, **kwargs)


# --------------------------------------------------------------------------
# Keras' layer conformance harness: config round trip, build, symbolic call,
# output shapes, weight and seed counts, mixed-precision dtypes, masking.
# --------------------------------------------------------------------------
class TestConformance(testing.TestCase):
    def test_defaults(self):
        self.run_layer_test(
            LinearAttention,
            init_kwargs={"num_heads": 2, "key_dim": 4},
            input_shape={"query_shape": (2, 8, 16), "value_shape": (2, 4, 12)},
            expected_output_shape=(2, 8, 16),
            expected_num_trainable_weights=8,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=True,
            run_training_check=False,
        )

    def test_favor_gqa_causal(self):
        self.run_layer_test(
            LinearAttention,
            init_kwargs={
                "num_heads": 4,
                "key_dim": 6,
                "num_key_value_heads": 2,
                "feature_map": "favor",
                "num_features": 10,
                "chunk_size": 3,
                "use_bias": False,
                "output_shape": 5,
                "kernel_regularizer": "l2",
            },
            input_shape={
                "query_shape": (2, 8, 16),
                "value_shape": (2, 7, 12),
                "key_shape": (2, 7, 10),
            },
            call_kwargs={"use_causal_mask": True},
            expected_output_shape=(2, 8, 5),
            expected_num_trainable_weights=4,
            # The FAVOR+ projection.
            expected_num_non_trainable_weights=1,
            expected_num_losses=4,
            supports_masking=True,
            run_training_check=False,
        )

    def test_return_attention_scores(self):
        self.run_layer_test(
            LinearAttention,
            init_kwargs={"num_heads": 2, "key_dim": 4, "feature_map": "relu"},
            input_shape={"query_shape": (2, 8, 16), "value_shape": (2, 4, 16)},
            call_kwargs={"return_attention_scores": True},
            expected_output_shape=((2, 8, 16), (2, 2, 8, 4)),
            supports_masking=True,
            run_training_check=False,
        )


# --------------------------------------------------------------------------
# NumPy reference
# --------------------------------------------------------------------------
CASES = {
    # name: (init, query shape, value shape, key shape, causal)
    "self": ({}, (2, 7, 8), None, None, False),
    "self_causal": ({}, (2, 7, 8), None, None, True),
    "cross_gqa": (
        {"num_key_value_heads": 2},
        (2, 5, 8),
        (2, 9, 6),
        None,
        False,
    ),
    "cross_mqa_causal_longer_keys": (
        {"num_key_value_heads": 1, "chunk_size": 2},
        (2, 5, 8),
        (2, 9, 6),
        None,
        True,
    ),
    "separate_key_causal_longer_queries": (
        {"value_dim": 3, "output_shape": 5, "chunk_size": 3},
        (2, 9, 8),
        (2, 6, 6),
        (2, 6, 4),
        True,
    ),
}


@pytest.mark.parametrize("feature_map", ["elu", "relu", "favor"])
@pytest.mark.parametrize("case", CASES)
def test_matches_numpy_reference(case, feature_map):
    init, q_shape, v_shape, k_shape, causal = CASES[case]
    query = normal(*q_shape)
    value = query if v_shape is None else normal(*v_shape)
    key = None if k_shape is None else normal(*k_shape)
    # Padded keys and queries in the second example.
    value_mask = np.ones(value.shape[:2], bool)
    value_mask[1, -2:] = False
    query_mask = np.ones(query.shape[:2], bool)
    query_mask[1, -1] = False
    extra = {"num_features": 12} if feature_map == "favor" else {}
    layer = make_layer(
        query, value, key, feature_map=feature_map, **init, **extra
    )
    kwargs = {
        "use_causal_mask": causal,
        "value_mask": value_mask,
        "query_mask": query_mask,
    }
    want, want_scores = reference(layer, query, value, key, **kwargs)
    out, scores = layer(
        query, value, key, return_attention_scores=True, **kwargs
    )
    np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(ref.to_np(scores), want_scores, atol=1e-6)
    # Without the scores, the same output.
    np.testing.assert_allclose(
        ref.to_np(layer(query, value, key, **kwargs)), ref.to_np(out), atol=1e-6
    )


def test_gqa_shares_key_value_heads_between_query_heads():
    # 4 query heads reading 2 key/value heads: with identical query
    # projections, heads 0 and 1 (same kv head) have equal weights, heads 0
    # and 2 (different kv heads) don't.
    x = normal(1, 5, 8)
    layer = make_layer(x, x, num_key_value_heads=2)
    kernel = ref.to_np(layer.query_dense.kernel)
    kernel[:, 1] = kernel[:, 0]
    bias = ref.to_np(layer.query_dense.bias)
    bias[1] = bias[0]
    layer.query_dense.kernel.assign(kernel)
    layer.query_dense.bias.assign(bias)
    _, scores = layer(x, x, return_attention_scores=True)
    scores = ref.to_np(scores)
    np.testing.assert_allclose(scores[:, 0], scores[:, 1], atol=1e-6)
    assert np.abs(scores[:, 0] - scores[:, 2]).max() > 1e-3
    assert tuple(layer.key_dense.kernel.shape) == (8, 2, 4)


# --------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------
@pytest.mark.parametrize("use_causal_mask", [False, True])
def test_keras_masks_and_padding_change_nothing_else(use_causal_mask):
    # Each example alone and unpadded vs. both padded into one batch, with
    # Keras masks from `mask_zero`: real positions agree, padded queries are
    # zeros, and the output carries the query's mask.
    q_ids = [[3, 1, 4], [1, 5, 9, 2, 6]]
    v_ids = [[2, 7, 1, 8, 2, 8], [1, 8]]
    q_emb = keras.layers.Embedding(10, 8, mask_zero=True)
    v_emb = keras.layers.Embedding(10, 6, mask_zero=True)

    def pad(rows, length):
        return np.array([r + [0] * (length - len(r)) for r in rows])

    kwargs = {"use_causal_mask": use_causal_mask}
    padded_q, padded_v = pad(q_ids, 7), pad(v_ids, 8)
    query, value = q_emb(padded_q), v_emb(padded_v)
    layer = make_layer(
        query, value, num_heads=2, num_key_value_heads=1, chunk_size=2
    )
    out = layer(q_emb(padded_q), v_emb(padded_v), **kwargs)
    np.testing.assert_array_equal(ref.to_np(get_keras_mask(out)), padded_q > 0)
    batch = ref.to_np(out)
    want, _ = reference(
        layer,
        ref.to_np(query),
        ref.to_np(value),
        query_mask=padded_q > 0,
        value_mask=padded_v > 0,
        **kwargs,
    )
    np.testing.assert_allclose(batch, want, atol=1e-5)
    for i, (q_row, v_row) in enumerate(zip(q_ids, v_ids)):
        alone = ref.to_np(
            layer(q_emb(np.array([q_row])), v_emb(np.array([v_row])), **kwargs)
        )
        np.testing.assert_allclose(batch[i, : len(q_row)], alone[0], atol=1e-5)
        np.testing.assert_array_equal(batch[i, len(q_row) :], 0.0)


@pytest.mark.parametrize("feature_map", ["elu", "relu", "favor"])
def test_rows_with_nothing_to_attend_are_finite(feature_map):
    query, value = normal(3, 4, 8), normal(3, 5, 6)
    layer = make_layer(query, value, num_heads=2, feature_map=feature_map)
    value_mask = np.ones((3, 5), bool)
    value_mask[1] = False  # example 1 has no values at all
    value_mask[2, 0] = False  # causal query 0 of example 2 sees nothing
    query_mask = np.ones((3, 4), bool)
    query_mask[0, 3] = False  # a padded query
    query, value = tf.constant(query), tf.constant(value)
    with tf.GradientTape() as tape:
        tape.watch([query, value])
        out, scores = layer(
            query,
            value,
            value_mask=value_mask,
            query_mask=query_mask,
            use_causal_mask=True,
            return_attention_scores=True,
        )
        loss = tf.reduce_sum(out * out)
    grads = tape.gradient(loss, [query, value] + layer.trainable_variables)
    assert all(np.isfinite(ref.to_np(g)).all() for g in grads)
    out, scores = ref.to_np(out), ref.to_np(scores)
    assert np.isfinite(out).all()
    # Nothing to attend to: zero attention, i.e. the output projection's
    # bias; padded queries: exact zeros.
    out_bias = ref.to_np(layer.output_dense.bias)
    np.testing.assert_allclose(
        out[1], np.broadcast_to(out_bias, (4, 8)), atol=1e-6
    )
    np.testing.assert_allclose(out[2, 0], out_bias, atol=1e-6)
    np.testing.assert_array_equal(out[0, 3], 0.0)
    np.testing.assert_array_equal(scores[1], 0.0)
    np.testing.assert_array_equal(scores[2, :, 0], 0.0)
    np.testing.assert_array_equal(scores[0, :, 3], 0.0)


def test_general_attention_masks_are_refused():
    q, v = normal(2, 5, 8), normal(2, 7, 6)
    layer = LinearAttention(num_heads=2, key_dim=4, name="lin")
    message = (
        r"'lin' \(LinearAttention\): `attention_mask` cannot be expressed in "
        r"linear attention.*only key padding masks.*use_causal_mask=True.*"
        r"Received: attention_mask.shape="
    )
    for shape in [(2, 5, 7), (5, 7), (2, 1, 5, 7), (2, 2, 1, 7)]:
        with pytest.raises(ValueError, match=message + rf"\({shape[0]}, "):
            layer(q, v, attention_mask=np.ones(shape, bool))
    # Also when a functional model is built.
    with pytest.raises(ValueError, match=message):
        layer(
            keras.Input((5, 8)),
            keras.Input((7, 6)),
            attention_mask=keras.Input((5, 7), dtype="bool"),
        )


def test_single_query_attention_mask_is_a_key_padding_mask():
    # With one query position, a (batch, 1, Tv) mask is the same for every
    # query: a key padding mask, which linear attention can express.
    query, value = normal(2, 1, 8), normal(2, 6, 6)
    layer = make_layer(query, value, num_heads=2)
    keys = np.array([[1, 1, 1, 0, 0, 1], [1, 0, 1, 1, 1, 1]], bool)
    np.testing.assert_allclose(
        ref.to_np(layer(query, value, attention_mask=keys[:, None])),
        ref.to_np(layer(query, value, value_mask=keys)),
        atol=1e-6,
    )


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("feature_map", ["elu", "favor"])
def test_key_padding_attention_mask_broadcasts_over_queries(feature_map, causal):
    # The documented key padding form `(batch, 1, Tv)` (and `(1, Tv)`,
    # `(batch, 1, 1, Tv)`) holds for every one of several queries: it is the
    # same `value_mask`, checked against the NumPy reference.
    query, value = normal(2, 6, 8), normal(2, 6, 6)
    layer = make_layer(query, value, num_heads=2, feature_map=feature_map, seed=3)
    keep = np.array([[1, 1, 1, 0, 0, 1], [1, 0, 1, 1, 1, 1]], bool)
    want, want_scores = reference(
        layer, query, value, value_mask=keep, use_causal_mask=causal
    )
    np.testing.assert_allclose(
        ref.to_np(layer(query, value, value_mask=keep, use_causal_mask=causal)),
        want,
        atol=1e-5,
    )
    for mask in (keep[:, None, :], keep[:, None, None, :]):
        out, scores = layer(
            query,
            value,
            attention_mask=mask,
            use_causal_mask=causal,
            return_attention_scores=True,
        )
        np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)
        np.testing.assert_allclose(ref.to_np(scores), want_scores, atol=1e-5)
    # One mask for the whole batch.
    shared = keep[:1]
    want, _ = reference(
        layer,
        query,
        value,
        value_mask=np.repeat(shared, 2, 0),
        use_causal_mask=causal,
    )
    got = layer(query, value, attention_mask=shared, use_causal_mask=causal)
    np.testing.assert_allclose(ref.to_np(got), want, atol=1e-5)


# --------------------------------------------------------------------------
# FAVOR+ features
# --------------------------------------------------------------------------
def test_favor_projection_is_a_seeded_non_trainable_weight():
    x = normal(2, 6, 8)
    a = LinearAttention(2, 4, feature_map="favor", seed=7)
    b = LinearAttention(2, 4, feature_map="favor", seed=7)
    c = LinearAttention(2, 4, feature_map="favor", seed=8)
    for layer in (a, b, c):
        layer(x, x)
    assert a.feature_projection.trainable is False
    assert all(w is not a.feature_projection for w in a.trainable_weights)
    assert [w.path for w in a.non_trainable_weights] == [
        a.feature_projection.path
    ]
    assert a.feature_projection.dtype == "float32"
    # The default num_features: key_dim * round(ln(key_dim)) = 4 * 1.
    assert tuple(a.feature_projection.shape) == (4, 4)
    np.testing.assert_array_equal(
        ref.to_np(a.feature_projection), ref.to_np(b.feature_projection)
    )
    difference = ref.to_np(a.feature_projection) - ref.to_np(
        c.feature_projection
    )
    assert np.abs(difference).max() > 0.1
    big = LinearAttention(4, 64, feature_map="favor")
    big.build((1, 3, 8), (1, 3, 8))
    assert tuple(big.feature_projection.shape) == (256, 64)


def test_redraw_only_while_training():
    x = normal(2, 6, 8)
    layer = make_layer(
        x, x, num_heads=2, feature_map="favor", num_features=8, redraw=True
    )
    stored = ref.to_np(layer.feature_projection)
    want, _ = reference(layer, x, x, use_causal_mask=True)
    for training in (None, False):
        got = ref.to_np(layer(x, x, use_causal_mask=True, training=training))
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
    first = ref.to_np(layer(x, x, use_causal_mask=True, training=True))
    second = ref.to_np(layer(x, x, use_causal_mask=True, training=True))
    assert np.isfinite(first).all()
    assert np.abs(first - second).max() > 1e-4
    assert np.abs(first - want).max() > 1e-4
    # Also under XLA: the seed generator advances at each compiled call.
    compiled = tf.function(
        lambda x: layer(x, x, use_causal_mask=True, training=True),
        jit_compile=True,
    )
    first, second = ref.to_np(compiled(x)), ref.to_np(compiled(x))
    assert np.abs(first - second).max() > 1e-4
    # Inference keeps using the stored features.
    np.testing.assert_array_equal(ref.to_np(layer.feature_projection), stored)


# --------------------------------------------------------------------------
# Dtype policies
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "policy, atol", [("mixed_float16", 1e-2), ("mixed_bfloat16", 5e-2)]
)
@pytest.mark.parametrize("feature_map", ["elu", "favor"])
def test_mixed_precision_close_to_float32(policy, atol, feature_map):
    # Inputs of scale 3: the FAVOR+ exponentials span far more than
    # float16's range, so this needs the float32 feature computation.
    query, value = normal(2, 6, 8, scale=3.0), normal(2, 7, 6, scale=3.0)
    full = make_layer(
        query,
        value,
        feature_map=feature_map,
        num_key_value_heads=2,
        chunk_size=4,
        scale=0.5,
    )
    mixed = copy_of(full, dtype=policy)
    assert mixed.compute_dtype == policy.split("_")[1]
    assert all(w.dtype == "float32" for w in mixed.weights)
    value_mask = np.ones((2, 7), bool)
    value_mask[1] = False  # nothing to attend to
    for causal in (False, True):
        kwargs = {"value_mask": value_mask, "use_causal_mask": causal}
        want = ref.to_np(full(query, value, **kwargs))
        got = mixed(query, value, **kwargs)
        assert keras.backend.standardize_dtype(got.dtype) == mixed.compute_dtype
        got = ref.to_np(got)
        assert np.isfinite(got).all()
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, atol=atol * scale)
    _, scores = mixed(query, value, return_attention_scores=True)
    assert keras.backend.standardize_dtype(scores.dtype) == mixed.compute_dtype


# --------------------------------------------------------------------------
# Models: training under XLA, saving, export, the encoder block
# --------------------------------------------------------------------------
def test_jit_compiled_fit():
    # One compiled model (XLA compiles are slow): a causal GQA elu layer,
    # then a FAVOR+ layer that redraws its features at each step.
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(12, 16, mask_zero=True)(tokens)
    first = LinearAttention(
        num_heads=4, key_dim=4, num_key_value_heads=2, chunk_size=4
    )
    second = LinearAttention(
        num_heads=2, key_dim=8, feature_map="favor", num_features=16,
        redraw=True,
    )
    x = x + first(x, x, use_causal_mask=True)
    x = x + second(x, x)
    model = keras.Model(tokens, keras.layers.Dense(12)(x))
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 12, size=(8, 10))
    ids[::2, 7:] = 0  # padded examples
    targets = np.roll(ids, -1, axis=1)
    stored = ref.to_np(second.feature_projection)

    def weights():
        layers = (first, second)
        return [
            ref.to_np(w) for layer in layers for w in layer.trainable_weights
        ]

    before = weights()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = model.fit(ids, targets, batch_size=8, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]
    after = weights()
    assert len(after) == 16
    for b, a in zip(before, after):
        assert np.abs(a - b).max() > 1e-6
    np.testing.assert_array_equal(ref.to_np(second.feature_projection), stored)


def test_keras_file_round_trip(tmp_path):
    # seed=None: the FAVOR+ projection is random, and must come back with
    # the file (it is a weight).
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(12, 8, mask_zero=True)(tokens)
    x = LinearAttention(
        num_heads=4,
        key_dim=4,
        value_dim=3,
        num_key_value_heads=2,
        feature_map="favor",
        num_features=6,
        redraw=True,
        chunk_size=2,
        epsilon=1e-4,
        output_shape=6,
        kernel_regularizer="l2",
    )(x, x, use_causal_mask=True)
    x = LinearAttention(num_heads=2, key_dim=4, feature_map="relu")(x, x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(tokens, x)
    ids = np.array([[1, 2, 3, 4, 0, 0], [5, 6, 7, 8, 9, 10]])
    restored = helpers.assert_keras_roundtrip(model, ids, tmp_path)
    layer = restored.layers[2]
    assert isinstance(layer, LinearAttention)
    assert layer.get_config() == model.layers[2].get_config()
    np.testing.assert_array_equal(
        ref.to_np(layer.feature_projection),
        ref.to_np(model.layers[2].feature_projection),
    )


def test_export_serves_without_the_package(tmp_path):
    # Unknown batch and length in the serving signature: the causal form's
    # dynamic-length path.
    query = keras.Input((None, 8))
    value = keras.layers.Dense(6)(query)
    attended = LinearAttention(
        num_heads=4,
        key_dim=4,
        num_key_value_heads=2,
        feature_map="favor",
        num_features=8,
        chunk_size=3,
    )(query, value, use_causal_mask=True)
    out = LinearAttention(num_heads=2, key_dim=4)(attended, attended)
    model = keras.Model(query, [attended, out])
    helpers.assert_export_roundtrip(model, normal(2, 7, 8), tmp_path)


def test_inside_transformer_encoder(tmp_path):
    encoder_module = pytest.importorskip(
        "keras_attention.layers.transformer.transformer_encoder"
    )
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 16, mask_zero=True)(tokens)
    x = encoder_module.TransformerEncoder(
        intermediate_dim=32, num_heads=2, attention="linear"
    )(x, use_causal_mask=True)
    block = encoder_module.TransformerEncoder(
        intermediate_dim=32,
        num_heads=2,
        attention="linear",
        attention_kwargs={"feature_map": "favor", "num_features": 8, "seed": 1},
        norm_first=True,
    )
    x, scores = block(x, return_attention_scores=True)
    assert tuple(scores.shape) == (None, 2, None, None)
    pooled = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(tokens, keras.layers.Dense(2)(pooled))
    attention = block.self_attention_layer
    assert isinstance(attention, LinearAttention)
    assert attention.feature_map == "favor"
    ids = np.array([[1, 2, 3, 4, 5, 0, 0, 0], [6, 7, 8, 9, 10, 11, 12, 13]])
    out = ref.to_np(model(ids))
    assert np.isfinite(out).all()
    # Padding doesn't change the first example's output.
    np.testing.assert_allclose(
        ref.to_np(model(ids[:1, :5])), out[:1], atol=1e-5
    )
    helpers.assert_keras_roundtrip(model, ids, tmp_path)


def test_registry_get_and_config():
    assert "linear" in registry.available()
    assert registry.get_class("linear") is LinearAttention
    layer = registry.get("linear", num_heads=2, key_dim=8, feature_map="relu")
    assert type(layer) is LinearAttention
    assert LinearAttention.registry_name == "linear"
    layer = LinearAttention(
        num_heads=4,
        key_dim=6,
        value_dim=3,
        num_key_value_heads=2,
        feature_map="favor",
        num_features=10,
        redraw=True,
        chunk_size=16,
        epsilon=1e-3,
        use_bias=False,
        output_shape=7,
        seed=11,
        name="lin",
    )
    config = layer.get_config()
    for name, value in {
        "num_heads": 4,
        "key_dim": 6,
        "value_dim": 3,
        "num_key_value_heads": 2,
        "feature_map": "favor",
        "num_features": 10,
        "redraw": True,
        "chunk_size": 16,
        "epsilon": 1e-3,
        "use_bias": False,
        "output_shape": 7,
        "seed": 11,
    }.items():
        assert config[name] == value, name
    json.dumps(config)
    assert LinearAttention.from_config(config).get_config() == config
    restored = registry.get(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == config


def test_compute_output_shape_and_spec():
    layer = LinearAttention(num_heads=2, key_dim=4, output_shape=5)
    shape = layer.compute_output_shape((None, 3, 8), (None, 4, 6))
    assert shape == (None, 3, 5)
    out, scores = layer(
        keras.Input((3, 8)), keras.Input((4, 6)), return_attention_scores=True
    )
    assert tuple(out.shape) == (None, 3, 5)
    assert tuple(scores.shape) == (None, 2, 3, 4)


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------
BAD_INIT = [
    (
        {"dropout": 0.1},
        r"LinearAttention: `dropout` must be 0: linear attention never forms "
        r"the attention weights.*dropout=0.1",
    ),
    (
        {"feature_map": "softmax"},
        r"LinearAttention: `feature_map` must be one of \('elu', 'relu', "
        r"'favor'\). Received: feature_map='softmax'",
    ),
    (
        {"feature_map": "favor", "num_features": 0},
        r"LinearAttention: `num_features` must be a positive integer or None.*"
        r"num_features=0",
    ),
    (
        {"num_features": 16},
        r"LinearAttention: `num_features` only applies to "
        r"`feature_map='favor'`.*num_features=16, feature_map='elu'",
    ),
    (
        {"feature_map": "favor", "redraw": "yes"},
        r"LinearAttention: `redraw` must be a bool. Received: redraw='yes'",
    ),
    (
        {"feature_map": "relu", "redraw": True},
        r"LinearAttention: `redraw=True` only applies to "
        r"`feature_map='favor'`.*feature_map='relu'",
    ),
    (
        {"chunk_size": 0},
        r"LinearAttention: `chunk_size` must be a positive integer.*chunk_size=0",
    ),
    (
        {"epsilon": -1e-6},
        r"LinearAttention: `epsilon` must be a finite number >= 0.*epsilon=-1e-06",
    ),
    (
        {"epsilon": float("inf")},
        r"LinearAttention: `epsilon` must be a finite number >= 0.*epsilon=inf",
    ),
    (
        {"num_key_value_heads": 3},
        r"LinearAttention: `num_key_value_heads` must divide `num_heads`",
    ),
]


@pytest.mark.parametrize("init, message", BAD_INIT)
def test_bad_arguments(init, message):
    with pytest.raises(ValueError, match=message):
        LinearAttention(**{"num_heads": 4, "key_dim": 4, **init})


def test_bad_inputs_from_the_shell():
    q, v = normal(2, 5, 8), normal(2, 7, 6)
    layer = LinearAttention(num_heads=2, key_dim=4, name="lin")
    with pytest.raises(
        ValueError,
        match=r"'lin' \(LinearAttention\): `query` must have rank 3.*\(2, 8\)",
    ):
        layer(normal(2, 8), v)
    with pytest.raises(
        ValueError,
        match=r"'lin' \(LinearAttention\): `value_mask` must have shape \(2, 7\)",
    ):
        layer(q, v, value_mask=np.ones((2, 5), bool))


# --------------------------------------------------------------------------
# Long inputs: bounded memory, linear time
# --------------------------------------------------------------------------
_LONG_INPUT = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    import tensorflow as tf
    from keras_attention.layers.attention.linear_attention import LinearAttention

    causal = sys.argv[1] == "causal"
    layer = LinearAttention(num_heads=4, key_dim=64, seed=0)
    layer.build((1, 8, 256), (1, 8, 256))

    @tf.function(jit_compile=True)
    def step(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            out = layer(inputs, inputs, use_causal_mask=causal)
            loss = tf.reduce_sum(out ** 2)
        return tape.gradient(loss, [inputs] + layer.trainable_variables)

    def x(length):
        rng = np.random.default_rng(0)
        return tf.constant(rng.standard_normal((1, length, 256)), "float32")

    def cpu_seconds(length):
        inputs = x(length)
        step(inputs)  # compile
        start = time.process_time()
        for _ in range(3):
            grads = step(inputs)
            [g.numpy() for g in grads]
        return (time.process_time() - start) / 3, grads

    def rss_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def mapped_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    short, _ = cpu_seconds(4096)
    baseline = rss_mib()
    # Backstop: refuse allocations beyond 2 GiB more address space (half of
    # one 4-head 16384^2 float32 score matrix), so a quadratic regression
    # fails fast instead of swapping the machine.
    cap = mapped_bytes() + 2 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    long, grads = cpu_seconds(16384)
    ok = all(bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads)
    print(json.dumps({"baseline": baseline, "peak": rss_mib(), "finite": ok,
                      "cpu_4096": short, "cpu_16384": long}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["causal", "full"])
def test_long_input_forward_backward_in_linear_time_and_memory(mode):
    # T = 16384, batch 1, 4 heads of 64 under XLA. One (T, T) float32
    # score matrix per head is 4 * 16384**2 * 4 B = 4 GiB; linear attention
    # must stay far below it, and 4x the length must cost about 4x the
    # time (16x for quadratic attention).
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "-c", _LONG_INPUT, mode],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["finite"]
    added = report["peak"] - report["baseline"]
    assert added < 512, report  # MiB; an eighth of one score matrix
    assert report["cpu_16384"] < 8 * report["cpu_4096"], report
