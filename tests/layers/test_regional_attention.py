"""Tests for `keras_attention.layers.RegionalAttention` (registry: "regional").

Expected numbers come from a NumPy (float64) reference of the layer's own
definition, written out below (`allowed_by_region`): dense attention with the
region's boolean mask built explicitly,

- sliding: query i sees key j iff |i - j| < w (causal: 0 <= i - j < w);
- block:   iff |i // R - j // R| <= n (causal: j <= i and i // R - j // R <= n),

composed with the caller's masks, then the textbook softmax attention of
`attention_reference.attention` on the layer's own projection weights.
Gradients are compared with `MultiHeadAttention(implementation="exact")`
holding the same weights and the same region as a dense `attention_mask`.
"""

import os
import re
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

from keras_attention.layers.attention import registry
from keras_attention.layers.attention.multi_head_attention import MultiHeadAttention
from keras_attention.layers.attention.regional_attention import RegionalAttention
from keras_attention.layers.attention.regional_attention import sliding_block_size
from keras_attention.ops import regional as regional_ops

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """The same random inputs for a test however the suite is filtered."""
    global RNG
    RNG = np.random.default_rng(0)


def normal(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype("float32")


def make_layer(query, value, **init):
    """A built `RegionalAttention` with random kernels *and biases*."""
    init = {"num_heads": 4, "key_dim": 4, **init}
    layer = RegionalAttention(**init)
    layer.build(query.shape, value.shape)
    layer.set_weights(
        [normal(*w.shape, scale=0.3) for w in layer.get_weights()]
    )
    return layer


def copy_of(layer, **overrides):
    config = {**layer.get_config(), **overrides}
    config.pop("name")
    clone = type(layer).from_config(config)
    clone.build_from_config(layer.get_build_config())
    clone.set_weights(layer.get_weights())
    return clone


# --------------------------------------------------------------------------
# The reference: the region as an explicit dense mask.
# --------------------------------------------------------------------------
def allowed_by_region(layer, tq, tk, causal):
    """Boolean (Tq, Tk): which keys each query may see, by definition."""
    i = np.arange(tq)[:, None]
    j = np.arange(tk)[None, :]
    if layer.mode == "sliding":
        w = layer.window_size
        if causal:
            return (i - j >= 0) & (i - j < w)
        return np.abs(i - j) < w
    r, n = layer.region_size, layer.num_neighbors
    if causal:
        return (j <= i) & (i // r - j // r <= n)
    return np.abs(i // r - j // r) <= n


def expected(
    layer,
    query,
    value,
    attention_mask=None,
    value_mask=None,
    query_mask=None,
    causal=False,
):
    """What `layer` should compute, in float64: `(output, weights)`."""
    query, value = np.float64(query), np.float64(value)
    w = ref.weights_of(layer)

    def project(x, name):
        kernel, bias = w[name]
        return np.einsum("btc,chd->bthd", x, kernel) + bias

    q = project(query, "query_dense")
    k = project(value, "key_dense")
    v = project(value, "value_dense")
    b, tq, tk = query.shape[0], query.shape[1], value.shape[1]
    allowed = np.broadcast_to(
        allowed_by_region(layer, tq, tk, causal), (b, 1, tq, tk)
    )
    if attention_mask is not None:
        m = np.asarray(attention_mask, bool)
        allowed = allowed & (m[:, None] if m.ndim == 3 else m)
    if value_mask is not None:
        allowed = allowed & np.asarray(value_mask, bool)[:, None, None, :]
    heads, weights = ref.attention(q, k, v, allowed)
    kernel, bias = w["output_dense"]
    out = np.einsum("bthd,hde->bte", heads, kernel) + bias
    if query_mask is not None:
        keep = np.asarray(query_mask, bool)
        out = np.where(keep[:, :, None], out, 0.0)
        weights = np.where(keep[:, None, :, None], weights, 0.0)
    return out, weights


def some_true_mask(b, tq, tk, p=0.6):
    mask = RNG.random((b, tq, tk)) < p
    mask[:, np.arange(tq), np.arange(tq) % tk] = True  # every row sees a key
    return mask


# --------------------------------------------------------------------------
# Keras' layer conformance harness (config round trip, build, symbolic
# call, weight and seed counts, mixed precision, masking).
# --------------------------------------------------------------------------
class TestConformance(testing.TestCase):
    def test_sliding(self):
        self.run_layer_test(
            RegionalAttention,
            init_kwargs={"num_heads": 2, "key_dim": 4, "window_size": 3},
            input_shape={"query_shape": (2, 8, 16), "value_shape": (2, 5, 12)},
            expected_output_shape=(2, 8, 16),
            expected_num_trainable_weights=8,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=True,
            run_training_check=False,
        )

    def test_block_gqa_dropout_scores(self):
        self.run_layer_test(
            RegionalAttention,
            init_kwargs={
                "num_heads": 4,
                "key_dim": 4,
                "num_key_value_heads": 2,
                "mode": "block",
                "region_size": 3,
                "num_neighbors": 1,
                "dropout": 0.5,
            },
            input_shape={"query_shape": (2, 8, 16), "value_shape": (2, 8, 12)},
            call_kwargs={"training": True, "return_attention_scores": True},
            expected_output_shape=((2, 8, 16), (2, 4, 8, 8)),
            expected_num_trainable_weights=8,
            supports_masking=True,
            run_training_check=False,
        )


# --------------------------------------------------------------------------
# Against the NumPy reference
# --------------------------------------------------------------------------
CASES = {
    # name: (init, query length, value length, call kwargs)
    # block_size=4 over 11 positions: several tiles, a padded last one.
    "sliding": ({"window_size": 3, "block_size": 4}, 11, 11, {}),
    "sliding_causal": (
        {"window_size": 3, "block_size": 4},
        11,
        11,
        {"use_causal_mask": True},
    ),
    "sliding_default_tiles_gqa": (
        {"window_size": 2, "num_key_value_heads": 2},
        9,
        9,
        {"use_causal_mask": True},
    ),
    # Cross-attention: positions compared by index from the start.
    "sliding_cross": ({"window_size": 2, "block_size": 4}, 6, 9, {}),
    "sliding_cross_causal": (
        {"window_size": 4, "block_size": 2},
        9,
        5,
        {"use_causal_mask": True},
    ),
    "block": ({"mode": "block", "region_size": 3}, 11, 11, {}),
    "block_neighbors": (
        {"mode": "block", "region_size": 3, "num_neighbors": 1},
        11,
        11,
        {},
    ),
    "block_causal": (
        {"mode": "block", "region_size": 4},
        11,
        11,
        {"use_causal_mask": True},
    ),
    "block_causal_neighbors_mqa": (
        {
            "mode": "block",
            "region_size": 2,
            "num_neighbors": 2,
            "num_key_value_heads": 1,
        },
        11,
        11,
        {"use_causal_mask": True},
    ),
    # More neighbours than regions: full attention.
    "block_covers_everything": (
        {"mode": "block", "region_size": 4, "num_neighbors": 5},
        10,
        10,
        {},
    ),
    "block_value_dim_output_shape": (
        {
            "mode": "block",
            "region_size": 5,
            "num_neighbors": 1,
            "value_dim": 3,
            "output_shape": 6,
        },
        12,
        12,
        {},
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_matches_numpy_reference(case):
    init, tq, tv, kwargs = CASES[case]
    query, value = normal(2, tq, 8), normal(2, tv, 6)
    layer = make_layer(query, value, **init)
    causal = kwargs.get("use_causal_mask", False)
    want, want_weights = expected(layer, query, value, causal=causal)
    got = ref.to_np(layer(query, value, **kwargs))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)
    out, weights = layer(query, value, return_attention_scores=True, **kwargs)
    assert tuple(weights.shape) == (2, 4, tq, tv)
    np.testing.assert_allclose(ref.to_np(weights), want_weights, atol=1e-5)
    np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)
    # Zero outside the region, rows of weights sum to one inside it.
    region = allowed_by_region(layer, tq, tv, causal)
    assert np.all(ref.to_np(weights)[..., ~region] == 0.0)


@pytest.mark.parametrize("mode", ["sliding", "block"])
@pytest.mark.parametrize("shape", [(2, 11, 11), (11, 11), (2, 4, 11, 11)])
def test_attention_mask_and_value_mask(mode, shape):
    # A general attention mask (block mode gathers its diagonal band of
    # tiles), with a key padding mask on top, causal.
    init = (
        {"window_size": 3, "block_size": 4}
        if mode == "sliding"
        else {"mode": "block", "region_size": 3, "num_neighbors": 1}
    )
    x = normal(2, 11, 8)
    layer = make_layer(x, x, **init)
    attention_mask = RNG.random(shape) < 0.6
    value_mask = np.ones((2, 11), bool)
    value_mask[0, 7:] = False
    kwargs = {
        "attention_mask": attention_mask,
        "value_mask": value_mask,
        "use_causal_mask": True,
    }
    full = np.broadcast_to(
        attention_mask, (2, 4, 11, 11) if len(shape) == 4 else (2, 11, 11)
    )
    want, want_weights = expected(
        layer, x, x, full, value_mask=value_mask, causal=True
    )
    np.testing.assert_allclose(ref.to_np(layer(x, x, **kwargs)), want, atol=1e-5)
    _, weights = layer(x, x, return_attention_scores=True, **kwargs)
    np.testing.assert_allclose(ref.to_np(weights), want_weights, atol=1e-5)


@pytest.mark.parametrize("mode", ["sliding", "block"])
def test_rows_with_nothing_to_attend_are_finite(mode):
    init = (
        {"window_size": 2}
        if mode == "sliding"
        else {"mode": "block", "region_size": 2}
    )
    x = normal(3, 6, 8)
    layer = make_layer(x, x, **init)
    attention_mask = np.ones((3, 6, 6), bool)
    attention_mask[0, 1] = False  # one query of example 0 sees nothing
    value_mask = np.ones((3, 6), bool)
    value_mask[1] = False  # example 1 has no values at all
    query_mask = np.ones((3, 6), bool)
    query_mask[2, 4] = False  # a padded query
    kwargs = {
        "attention_mask": attention_mask,
        "value_mask": value_mask,
        "query_mask": query_mask,
    }
    out = ref.to_np(layer(x, x, **kwargs))
    assert np.isfinite(out).all()
    bias = ref.to_np(layer.output_dense.bias)
    np.testing.assert_allclose(out[0, 1], bias, atol=1e-6)  # zero attention
    np.testing.assert_allclose(out[1], np.broadcast_to(bias, (6, 8)), atol=1e-6)
    np.testing.assert_array_equal(out[2, 4], 0.0)
    want, _ = expected(layer, x, x, attention_mask, value_mask, query_mask)
    np.testing.assert_allclose(out, want, atol=1e-5)
    _, weights = layer(x, x, return_attention_scores=True, **kwargs)
    weights = ref.to_np(weights)
    np.testing.assert_array_equal(weights[0, :, 1], 0.0)
    np.testing.assert_array_equal(weights[1], 0.0)
    np.testing.assert_array_equal(weights[2, :, 4], 0.0)


@pytest.mark.parametrize(
    "tq, tk, region, neighbors, causal, window, kv_heads",
    [
        (10, 10, 3, 1, False, None, 4),
        (10, 10, 3, 1, True, None, 2),
        (11, 7, 4, 0, False, None, 4),
        (9, 13, 2, 2, True, 3, 2),
        (16, 16, 4, 1, False, 4, 1),
    ],
)
@pytest.mark.parametrize("mask_kind", ["none", "keys", "general", "per_head"])
def test_op_matches_numpy_reference(
    tq, tk, region, neighbors, causal, window, kv_heads, mask_kind
):
    # The pure op, any lengths (positions compared by index), GQA, windows.
    q = normal(2, tq, 4, 5)
    k, v = normal(2, tk, kv_heads, 5), normal(2, tk, kv_heads, 3)
    mask = {
        "none": None,
        "keys": RNG.random((2, 1, 1, tk)) < 0.7,
        "general": RNG.random((2, 1, tq, tk)) < 0.7,
        "per_head": RNG.random((2, 4, tq, tk)) < 0.7,
    }[mask_kind]
    i, j = np.arange(tq)[:, None], np.arange(tk)[None, :]
    allowed = np.abs(i // region - j // region) <= neighbors
    if causal:
        allowed = (j <= i) & (i // region - j // region <= neighbors)
    if window:
        near = (i - j >= 0) & (i - j < window) if causal else np.abs(i - j) < window
        allowed = allowed & near
    allowed = allowed[None, None] & (True if mask is None else mask)
    want, _ = ref.attention(q, k, v, allowed)
    got = regional_ops.regional_attention(
        q,
        k,
        v,
        region_size=region,
        num_neighbors=neighbors,
        mask=mask,
        is_causal=causal,
        window_size=window,
    )
    np.testing.assert_allclose(ref.to_np(got), want, atol=1e-5)


def test_region_mask():
    m = ref.to_np(
        regional_ops.region_mask(5, 6, region_size=2, num_neighbors=1, is_causal=True)
    ).astype(int)
    i, j = np.arange(5)[:, None], np.arange(6)[None, :]
    np.testing.assert_array_equal(m, (j <= i) & (i // 2 - j // 2 <= 1))
    with pytest.raises(ValueError, match=r"`region_size` must be a positive int"):
        regional_ops.region_mask(4, region_size=0)


# --------------------------------------------------------------------------
# Gradients, compared with dense exact attention holding the same weights
# --------------------------------------------------------------------------
def _gradients(layer, query, value, cotangent, **kwargs):
    query, value = tf.constant(query), tf.constant(value)
    with tf.GradientTape() as tape:
        tape.watch([query, value])
        loss = tf.reduce_sum(layer(query, value, **kwargs) * cotangent)
    grads = tape.gradient(loss, [query, value] + layer.trainable_variables)
    return [ref.to_np(g) for g in grads]


@pytest.mark.parametrize(
    "init, causal",
    [
        ({"window_size": 3, "block_size": 4}, False),
        ({"window_size": 2, "num_key_value_heads": 2}, True),
        ({"mode": "block", "region_size": 3, "num_neighbors": 1}, False),
        ({"mode": "block", "region_size": 4, "num_neighbors": 1}, True),
    ],
    ids=["sliding", "sliding_gqa_causal", "block", "block_causal"],
)
def test_gradients_match_dense_attention(init, causal):
    x = normal(2, 11, 8)
    layer = make_layer(x, x, **init)
    config = {
        k: v
        for k, v in layer.get_config().items()
        if k not in ("mode", "window_size", "region_size", "num_neighbors")
        and k not in ("block_size", "name")
    }
    dense = MultiHeadAttention(**config, implementation="exact")
    dense.build(x.shape, x.shape)
    dense.set_weights(layer.get_weights())
    region = allowed_by_region(layer, 11, 11, causal)
    value_mask = np.ones((2, 11), bool)
    value_mask[1, 9:] = False
    kwargs = {"use_causal_mask": causal, "value_mask": value_mask}
    cotangent = normal(2, 11, 8)
    want = _gradients(
        dense, x, x, cotangent, attention_mask=np.stack([region] * 2), **kwargs
    )
    got = _gradients(layer, x, x, cotangent, **kwargs)
    assert len(got) == 2 + 8
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------
# The region path of the sliding window (dropout, unknown lengths)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
def test_unknown_lengths_use_the_region_path(causal):
    # Traced with a None length, the sliding mode can't use the tiled core
    # (static lengths only) and computes the same window region by region.
    x = normal(2, 10, 8)
    mask = np.ones((2, 10), bool)
    mask[0, 6:] = False
    sliding = make_layer(x, x, window_size=3)
    block = make_layer(x, x, mode="block", region_size=4, num_neighbors=1)
    for layer in (sliding, block):
        fn = tf.function(
            lambda a, m, layer=layer: layer(
                a, a, value_mask=m, use_causal_mask=causal
            ),
            input_signature=[
                tf.TensorSpec((None, None, 8)),
                tf.TensorSpec((None, None), tf.bool),
            ],
        )
        want, _ = expected(layer, x, x, value_mask=mask, causal=causal)
        np.testing.assert_allclose(ref.to_np(fn(x, mask)), want, atol=1e-5)
    # Cross-attention with a sliding window, lengths unknown when traced.
    query, value = normal(2, 6, 8), normal(2, 9, 8)
    fn = tf.function(
        lambda q, v: sliding(q, v, use_causal_mask=causal),
        input_signature=[tf.TensorSpec((None, None, 8))] * 2,
    )
    want, _ = expected(sliding, query, value, causal=causal)
    np.testing.assert_allclose(ref.to_np(fn(query, value)), want, atol=1e-5)


@pytest.mark.parametrize("mode", ["sliding", "block"])
def test_dropout_only_in_training(mode):
    init = (
        {"window_size": 3}
        if mode == "sliding"
        else {"mode": "block", "region_size": 3, "num_neighbors": 1}
    )
    x = normal(2, 9, 8)
    plain = make_layer(x, x, **init)
    dropped = copy_of(plain, dropout=0.5, seed=7)
    want = ref.to_np(plain(x, x, use_causal_mask=True))
    for training in (None, False):
        got = dropped(x, x, use_causal_mask=True, training=training)
        np.testing.assert_allclose(ref.to_np(got), want, atol=1e-6)
    trained = ref.to_np(dropped(x, x, use_causal_mask=True, training=True))
    assert np.isfinite(trained).all()
    assert np.abs(trained - want).max() > 1e-3
    # Dropped weights are rescaled by 1 / (1 - rate): averaged over many
    # draws (one batch of 256 copies), the output is the one without dropout.
    copies = np.concatenate([x] * 256)
    many = ref.to_np(
        dropped(copies, copies, use_causal_mask=True, training=True)
    )
    many = many.reshape((256,) + want.shape).mean(axis=0)
    assert np.abs(many - want).mean() < 0.05
    np.testing.assert_allclose(many, want, atol=0.25)


# --------------------------------------------------------------------------
# Masks carried by Keras
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "init",
    [
        {"window_size": 2, "block_size": 2},
        {"mode": "block", "region_size": 2, "num_neighbors": 1},
    ],
    ids=["sliding", "block"],
)
@pytest.mark.parametrize("use_causal_mask", [False, True])
def test_padding_changes_nothing_else(init, use_causal_mask):
    # Each example alone and unpadded vs. both padded in one batch: outputs
    # at real positions agree, padded positions are zeros.
    rows = [[3, 1, 4], [1, 5, 9, 2, 6]]
    emb = keras.layers.Embedding(10, 8, mask_zero=True)
    padded = np.array([r + [0] * (7 - len(r)) for r in rows])
    x = emb(padded)
    layer = make_layer(x, x, **init)
    batch = ref.to_np(layer(x, x, use_causal_mask=use_causal_mask))
    for i, row in enumerate(rows):
        alone = emb(np.array([row]))
        alone = ref.to_np(layer(alone, alone, use_causal_mask=use_causal_mask))
        np.testing.assert_allclose(batch[i, : len(row)], alone[0], atol=1e-5)
        np.testing.assert_array_equal(batch[i, len(row) :], 0.0)


# --------------------------------------------------------------------------
# Dtype policies
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "policy, atol", [("mixed_float16", 2e-2), ("mixed_bfloat16", 1e-1)]
)
@pytest.mark.parametrize(
    "init",
    [
        {"window_size": 3, "block_size": 4},
        {"mode": "block", "region_size": 3, "num_neighbors": 1},
    ],
    ids=["sliding", "block"],
)
def test_mixed_precision_close_to_float32(policy, atol, init):
    x = normal(2, 10, 8)
    full = make_layer(x, x, **init, num_key_value_heads=2)
    mixed = copy_of(full, dtype=policy)
    assert mixed.compute_dtype == policy.split("_")[1]
    attention_mask = some_true_mask(2, 10, 10)
    attention_mask[1, 2] = False  # a row with nothing to attend to
    kwargs = {"attention_mask": attention_mask, "use_causal_mask": True}
    want = ref.to_np(full(x, x, **kwargs))
    got = mixed(x, x, **kwargs)
    assert keras.backend.standardize_dtype(got.dtype) == mixed.compute_dtype
    got = ref.to_np(got)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=atol, rtol=atol)
    _, scores = mixed(x, x, return_attention_scores=True, **kwargs)
    _, want_scores = full(x, x, return_attention_scores=True, **kwargs)
    np.testing.assert_allclose(
        ref.to_np(scores), ref.to_np(want_scores), atol=atol
    )


# --------------------------------------------------------------------------
# Models: XLA training, saving, serving, the encoder block
# --------------------------------------------------------------------------
def test_jit_compiled_fit():
    # One compiled model with both modes (XLA compiles are slow); padded
    # examples, causal, attention dropout on the block layer.
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(12, 16, mask_zero=True)(tokens)
    sliding = RegionalAttention(num_heads=2, key_dim=8, window_size=3)
    block = RegionalAttention(
        num_heads=2,
        key_dim=8,
        mode="block",
        region_size=4,
        num_neighbors=1,
        num_key_value_heads=1,
        dropout=0.1,
    )
    x = x + sliding(x, x, use_causal_mask=True)
    x = x + block(x, x, use_causal_mask=True)
    model = keras.Model(tokens, keras.layers.Dense(12)(x))
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 12, size=(8, 10))
    ids[::2, 7:] = 0
    targets = np.roll(ids, -1, axis=1)

    def weights():
        # Not the key biases: they shift a whole row of logits, which the
        # softmax ignores, so their gradient is zero.
        return [
            ref.to_np(w)
            for layer in (sliding, block)
            for w in layer.trainable_weights
            if w is not layer.key_dense.bias
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
    assert len(after) == 14
    for b, a in zip(before, after):
        assert np.abs(a - b).max() > 1e-6


def _two_mode_model(length):
    inputs = keras.Input((length, 8))
    x = RegionalAttention(
        num_heads=2, key_dim=4, window_size=3, block_size=4, name="sliding"
    )(inputs, inputs, use_causal_mask=True)
    y = RegionalAttention(
        num_heads=2,
        key_dim=4,
        value_dim=3,
        num_key_value_heads=1,
        mode="block",
        region_size=3,
        num_neighbors=1,
        dropout=0.2,
        output_shape=5,
        kernel_initializer=keras.initializers.GlorotUniform(seed=3),
        bias_initializer="ones",
        name="block",
    )(x, x)
    return keras.Model(inputs, [x, y])


def test_keras_file_round_trip(tmp_path):
    model = _two_mode_model(None)
    restored = helpers.assert_keras_roundtrip(model, normal(2, 10, 8), tmp_path)
    for name in ("sliding", "block"):
        layer = restored.get_layer(name)
        assert isinstance(layer, RegionalAttention)
        assert layer.get_config() == model.get_layer(name).get_config()


def test_export_serves_without_the_package(tmp_path):
    # A None length in the serving signature: the sliding window takes the
    # region path when traced, the tiled core when called eagerly.
    model = _two_mode_model(None)
    helpers.assert_export_roundtrip(model, normal(2, 10, 8), tmp_path)


def test_inside_transformer_encoder():
    from keras_attention.layers.transformer.transformer_encoder import TransformerEncoder

    ids = np.array([[1, 2, 3, 4, 5, 6, 7, 0, 0], [1, 2, 3, 4, 5, 6, 7, 8, 9]])
    for attention_kwargs in (
        {"window_size": 2},
        {"mode": "block", "region_size": 3, "num_neighbors": 1},
    ):
        tokens = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(12, 16, mask_zero=True)(tokens)
        block = TransformerEncoder(
            intermediate_dim=32,
            num_heads=2,
            attention="regional",
            attention_kwargs=attention_kwargs,
        )
        x = block(x, use_causal_mask=True)
        model = keras.Model(tokens, x)
        out = ref.to_np(model(ids))
        assert out.shape == (2, 9, 16) and np.isfinite(out).all()
        attention = block.self_attention_layer
        assert isinstance(attention, RegionalAttention)
        assert attention.key_dim == 8
        for k, v in attention_kwargs.items():
            assert getattr(attention, k) == v
        # Later positions don't change earlier outputs (causal), and the
        # padded example agrees with itself unpadded.
        alone = ref.to_np(model(ids[:1, :7]))
        np.testing.assert_allclose(out[0, :7], alone[0], atol=1e-5)
        config = keras.saving.serialize_keras_object(model)
        again = keras.saving.deserialize_keras_object(config)
        assert isinstance(again.layers[-1].self_attention_layer, RegionalAttention)


# --------------------------------------------------------------------------
# Arguments, registry, documentation
# --------------------------------------------------------------------------
def test_registered_by_name():
    assert "regional" in registry.available()
    layer = registry.get(
        "regional", num_heads=2, key_dim=4, mode="block", region_size=8
    )
    assert isinstance(layer, RegionalAttention)
    assert RegionalAttention.registry_name == "regional"
    assert (
        keras.saving.get_registered_name(RegionalAttention)
        == "keras_attention>RegionalAttention"
    )


def test_get_config_is_complete():
    layer = RegionalAttention(
        num_heads=4,
        key_dim=6,
        value_dim=3,
        num_key_value_heads=2,
        mode="block",
        region_size=16,
        num_neighbors=2,
        dropout=0.25,
        use_bias=False,
        output_shape=7,
        seed=11,
        name="regional",
    )
    config = layer.get_config()
    for name, value in {
        "num_heads": 4,
        "key_dim": 6,
        "value_dim": 3,
        "num_key_value_heads": 2,
        "mode": "block",
        "window_size": None,
        "region_size": 16,
        "num_neighbors": 2,
        "block_size": None,
        "dropout": 0.25,
        "use_bias": False,
        "output_shape": 7,
        "seed": 11,
    }.items():
        assert config[name] == value, name
    assert RegionalAttention.from_config(config).get_config() == config
    sliding = RegionalAttention(2, 4, window_size=5, block_size=64)
    config = sliding.get_config()
    assert (config["mode"], config["window_size"], config["block_size"]) == (
        "sliding",
        5,
        64,
    )


@pytest.mark.parametrize(
    "window, block", [(1, 32), (32, 32), (33, 64), (128, 128), (129, 256), (5000, 512)]
)
def test_sliding_block_size(window, block):
    assert sliding_block_size(window) == block


BAD_INIT = [
    (
        {"mode": "global"},
        r"RegionalAttention: `mode` must be one of \('sliding', 'block'\).*"
        r"mode='global'",
    ),
    (
        {},
        r"RegionalAttention: `mode='sliding'` needs `window_size`.*"
        r"window_size=None",
    ),
    (
        {"mode": "block"},
        r"RegionalAttention: `mode='block'` needs `region_size`.*"
        r"region_size=None",
    ),
    (
        {"window_size": 0},
        r"RegionalAttention: `window_size` must be a positive integer.*"
        r"window_size=0",
    ),
    (
        {"mode": "block", "region_size": 2.5},
        r"RegionalAttention: `region_size` must be a positive integer.*2\.5",
    ),
    (
        {"mode": "block", "region_size": 4, "num_neighbors": -1},
        r"RegionalAttention: `num_neighbors` must be a non-negative integer.*"
        r"num_neighbors=-1",
    ),
    (
        {"window_size": 4, "region_size": 4},
        r"RegionalAttention: `region_size` only applies to `mode='block'`.*"
        r"region_size=4",
    ),
    (
        {"window_size": 4, "num_neighbors": 1},
        r"RegionalAttention: `num_neighbors` only applies to `mode='block'`",
    ),
    (
        {"mode": "block", "region_size": 4, "window_size": 4},
        r"RegionalAttention: `window_size` only applies to `mode='sliding'`.*"
        r"window_size=4",
    ),
    (
        {"mode": "block", "region_size": 4, "block_size": 64},
        r"RegionalAttention: `block_size` only applies to `mode='sliding'`",
    ),
    (
        {"window_size": 4, "block_size": 0},
        r"RegionalAttention: `block_size` must be a positive integer",
    ),
    (
        {"window_size": 4, "num_key_value_heads": 3},
        r"RegionalAttention: `num_key_value_heads` must divide `num_heads`",
    ),
]


@pytest.mark.parametrize("init", BAD_INIT, ids=range(len(BAD_INIT)))
def test_bad_arguments(init):
    init, message = init
    with pytest.raises(ValueError, match=message):
        RegionalAttention(**{"num_heads": 4, "key_dim": 4, **init})


def test_block_mode_needs_equal_lengths():
    q, v = normal(2, 5, 8), normal(2, 7, 8)
    message = (
        r"'local' \(RegionalAttention\): `value` must have as many positions "
        r"as `query` in `mode='block'`.*query.shape=\(2, 5, 8\), "
        r"value.shape=\(2, 7, 8\)"
    )
    layer = RegionalAttention(2, 4, mode="block", region_size=2, name="local")
    with pytest.raises(ValueError, match=message):
        layer(q, v)  # at build
    layer(q, q)
    with pytest.raises(ValueError, match=message):
        layer(q, v)  # built
    with pytest.raises(ValueError, match=message):
        layer.compute_output_shape(q.shape, v.shape)
    # The sliding window accepts different lengths.
    sliding = RegionalAttention(2, 4, window_size=2)
    assert tuple(sliding(q, v).shape) == (2, 5, 8)


def test_bad_inputs_name_the_layer():
    x = normal(2, 5, 8)
    layer = RegionalAttention(2, 4, mode="block", region_size=2, name="local")
    with pytest.raises(
        ValueError,
        match=r"'local' \(RegionalAttention\): `attention_mask` must have "
        r"shape \(2, 5, 5\).*\(2, 4, 5\)",
    ):
        layer(x, x, attention_mask=np.ones((2, 4, 5), bool))
    with pytest.raises(
        ValueError,
        match=r"'local' \(RegionalAttention\): `query` must have rank 3",
    ):
        layer(normal(2, 8), x)


# --------------------------------------------------------------------------
# Efficient in fact
# --------------------------------------------------------------------------
_SHAPE = re.compile(r"\b(?:f16|bf16|f32|f64|pred|s32|s64)\[([0-9,]*)\]")


def _largest_array(fn, *args):
    """Elements of the largest array in `fn`'s HLO (forward + backward)."""
    hlo = fn.experimental_get_compiler_ir(*args)(stage="hlo")
    sizes = [
        int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
        for dims in _SHAPE.findall(hlo)
    ]
    return max(sizes)


@pytest.mark.parametrize(
    "init",
    [
        {"window_size": 64},
        {"window_size": 64, "dropout": 0.1},  # the region path
        {"mode": "block", "region_size": 64, "num_neighbors": 1},
    ],
    ids=["sliding", "sliding_dropout", "block"],
)
def test_no_quadratic_array_in_the_compiled_step(init):
    # The XLA program of a training step (forward + gradients) holds no
    # array anywhere near T x T: the region is never a mask over full
    # attention. Dense attention's program, checked the same way, does.
    t, heads = 2048, 2
    x = tf.constant(normal(1, t, 16))
    mask = tf.constant(np.arange(t)[None] < t - 5)

    def step_of(layer):
        layer.build(x.shape, x.shape)

        @tf.function(jit_compile=True)
        def step(x, mask):
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = layer(
                    x, x, value_mask=mask, use_causal_mask=True, training=True
                )
                loss = tf.reduce_sum(out * out)
            return tape.gradient(loss, [x] + layer.trainable_variables)

        return step

    layer = RegionalAttention(num_heads=heads, key_dim=8, **init)
    largest = _largest_array(step_of(layer), x, mask)
    assert largest <= heads * t * 3 * 64 * 2, largest
    dense = MultiHeadAttention(num_heads=heads, key_dim=8, implementation="exact")
    assert _largest_array(step_of(dense), x, mask) >= heads * t * t


_LONG_INPUT = textwrap.dedent(
    """
    import resource, sys, time
    import numpy as np
    import tensorflow as tf
    from keras_attention.layers.attention.regional_attention import RegionalAttention

    def status(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024

    def rss():
        return status("VmRSS")

    t, heads = int(sys.argv[1]), 4
    init = eval(sys.argv[2])
    layer = RegionalAttention(num_heads=heads, key_dim=16, **init)
    x = tf.random.normal((1, t, 32))
    layer.build(x.shape, x.shape)

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, x, use_causal_mask=True) ** 2)
        return tape.gradient(loss, [x] + layer.trainable_variables)

    # XLA's compile-time peak (which varies with the machine's load) is not
    # what this test is about: compile and run once, reset the peak (Linux:
    # "5" > clear_refs), run again. What the first run keeps resident (a
    # quadratic score buffer would stay in the allocator) and the second
    # run's own peak are counted from before the first call.
    before = rss()
    step(x)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    grads = step(x)
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    if reset:
        peak = status("VmHWM")
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(peak - before)
    """
)


@pytest.mark.parametrize(
    "init",
    [
        {"window_size": 128},
        {"mode": "block", "region_size": 128, "num_neighbors": 1},
    ],
    ids=["sliding", "block"],
)
def test_long_input_runs_in_bounded_memory(init, tmp_path):
    # T = 16384, batch 1, 4 heads: one float32 (T, T) score matrix per head
    # would be 4 GiB; a compiled forward + backward must stay far below.
    t = 16384
    result = subprocess.run(
        [sys.executable, "-c", _LONG_INPUT, str(t), repr(init)],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        cwd=str(tmp_path),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    grown = int(result.stdout.split()[-1])
    quadratic = 4 * t * t * 4
    assert grown < quadratic / 5, (grown, quadratic)
