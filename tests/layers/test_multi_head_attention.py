"""Tests for `keras_attention.layers.MultiHeadAttention`.

Expected numbers come from two independent sources:

- `keras.layers.MultiHeadAttention` itself, with the same weights copied in
  (`set_weights(ref.get_weights())`), for everything the two layers share;
- the NumPy (float64) formulas of `attention_reference.py` for what Keras
  doesn't have: grouped/multi-query heads, RoPE, ALiBi, sliding windows.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src import testing
from keras.src.backend.common.masking import get_keras_mask

import attention_reference as ref
import helpers

from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import ScaledDotProductAttention

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """The same random inputs for a test however the suite is filtered."""
    global RNG
    RNG = np.random.default_rng(0)


def normal(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype("float32")


def randomize_weights(layer, scale=0.3):
    """Random kernels *and biases*, so a mix-up of biases shows."""
    layer.set_weights(
        [normal(*w.shape, scale=scale) for w in layer.get_weights()]
    )


def build_like(layer, query, value, key=None):
    layer.build(query.shape, value.shape, None if key is None else key.shape)
    return layer


def copy_of(layer, **overrides):
    """A fresh layer with `layer`'s config (plus overrides) and weights."""
    config = {**layer.get_config(), **overrides}
    config.pop("name")
    clone = MultiHeadAttention.from_config(config)
    clone.build_from_config(layer.get_build_config())
    clone.set_weights(layer.get_weights())
    return clone


def make_layer(query, value, key=None, **init):
    """A built `MultiHeadAttention` with random kernels and biases."""
    layer = build_like(MultiHeadAttention(**init), query, value, key)
    randomize_weights(layer)
    return layer


# --------------------------------------------------------------------------
# Keras' layer conformance harness: config round trip, build, symbolic call,
# output shapes, weight and seed counts, mixed-precision dtypes, masking.
# The harness's training step can't pass `value`, so training is tested
# below with `model.fit`.
# --------------------------------------------------------------------------
class TestConformance(testing.TestCase):
    def test_defaults(self):
        self.run_layer_test(
            MultiHeadAttention,
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

    def test_no_bias_value_dim_output_shape_dropout(self):
        self.run_layer_test(
            MultiHeadAttention,
            init_kwargs={
                "num_heads": 2,
                "key_dim": 2,
                "value_dim": 4,
                "use_bias": False,
                "output_shape": 5,
                "dropout": 0.5,
                "kernel_regularizer": "l2",
            },
            input_shape={"query_shape": (2, 8, 16), "value_shape": (2, 4, 16)},
            call_kwargs={"training": True},
            expected_output_shape=(2, 8, 5),
            expected_num_trainable_weights=4,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            expected_num_losses=4,
            supports_masking=True,
            run_training_check=False,
        )

    def test_key_gqa_rope_window_causal_chunked(self):
        self.run_layer_test(
            MultiHeadAttention,
            init_kwargs={
                "num_heads": 4,
                "key_dim": 6,
                "num_key_value_heads": 2,
                "position_encoding": "rope",
                "window_size": 3,
                "implementation": "chunked",
                "block_size": 3,
            },
            input_shape={
                "query_shape": (2, 8, 16),
                "value_shape": (2, 7, 12),
                "key_shape": (2, 7, 10),
            },
            call_kwargs={"use_causal_mask": True},
            expected_output_shape=(2, 8, 16),
            # q/k/v/o kernels and biases; k and v have 2 heads.
            expected_num_trainable_weights=8,
            supports_masking=True,
            run_training_check=False,
        )

    def test_return_attention_scores_alibi(self):
        self.run_layer_test(
            MultiHeadAttention,
            init_kwargs={
                "num_heads": 2,
                "key_dim": 4,
                "position_encoding": "alibi",
            },
            input_shape={"query_shape": (2, 8, 16), "value_shape": (2, 4, 16)},
            call_kwargs={"return_attention_scores": True},
            expected_output_shape=((2, 8, 16), (2, 2, 8, 4)),
            supports_masking=True,
            run_training_check=False,
        )


# --------------------------------------------------------------------------
# Copied weights: with default arguments the layer is keras.layers.MHA.
# --------------------------------------------------------------------------
def _some_true_mask(b, tq, tk):
    mask = RNG.random((b, tq, tk)) < 0.5
    mask[:, np.arange(tq), np.arange(tq) % tk] = True  # every row sees a key
    return mask


KERAS_CASES = {
    # name: (init, query shape, value shape, key shape, call kwargs)
    "self": ({}, (2, 6, 8), None, None, {}),
    "cross": ({}, (2, 5, 8), (2, 7, 6), None, {}),
    "separate_key": ({}, (2, 5, 8), (2, 7, 6), (2, 7, 4), {}),
    "output_shape": ({"output_shape": 3}, (2, 5, 8), (2, 7, 6), None, {}),
    "value_dim": (
        {"num_heads": 3, "value_dim": 6},
        (2, 5, 8),
        (2, 7, 6),
        None,
        {},
    ),
    "no_bias": ({"use_bias": False}, (2, 5, 8), (2, 7, 6), None, {}),
    "causal": ({}, (2, 6, 8), None, None, {"use_causal_mask": True}),
    "causal_cross": (
        {},
        (2, 6, 8),
        (2, 4, 6),
        None,
        {"use_causal_mask": True},
    ),
    "attention_mask": (
        {},
        (2, 5, 8),
        (2, 7, 6),
        None,
        {"attention_mask": _some_true_mask(2, 5, 7)},
    ),
    "attention_mask_causal": (
        {},
        (2, 6, 8),
        None,
        None,
        {"attention_mask": _some_true_mask(2, 6, 6), "use_causal_mask": True},
    ),
}


def _keras_pair(init, q_shape, v_shape, k_shape, **ours_init):
    init = {"num_heads": 2, "key_dim": 4, **init}
    query = normal(*q_shape)
    value = query if v_shape is None else normal(*v_shape)
    key = None if k_shape is None else normal(*k_shape)
    theirs = keras.layers.MultiHeadAttention(**init)
    build_like(theirs, query, value, key)
    randomize_weights(theirs)
    ours = build_like(
        MultiHeadAttention(**init, **ours_init), query, value, key
    )
    ours.set_weights(theirs.get_weights())
    return theirs, ours, query, value, key


IMPLEMENTATIONS = {
    "exact": {"implementation": "exact"},
    # Blocks of 3 keys: several blocks and a padded last one.
    "chunked": {"implementation": "chunked", "block_size": 3},
}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", KERAS_CASES)
def test_matches_keras_multi_head_attention(case, implementation):
    init, q_shape, v_shape, k_shape, kwargs = KERAS_CASES[case]
    theirs, ours, query, value, key = _keras_pair(
        init, q_shape, v_shape, k_shape, **IMPLEMENTATIONS[implementation]
    )
    expected = theirs(query, value, key, **kwargs)
    got = ours(query, value, key, **kwargs)
    assert tuple(got.shape) == tuple(expected.shape)
    np.testing.assert_allclose(ref.to_np(got), ref.to_np(expected), atol=1e-5)


@pytest.mark.parametrize(
    "case", ["cross", "separate_key", "causal_cross", "attention_mask_causal"]
)
def test_attention_scores_match_keras(case):
    init, q_shape, v_shape, k_shape, kwargs = KERAS_CASES[case]
    theirs, ours, query, value, key = _keras_pair(
        init, q_shape, v_shape, k_shape
    )
    want_out, want_scores = theirs(
        query, value, key, return_attention_scores=True, **kwargs
    )
    out, scores = ours(
        query, value, key, return_attention_scores=True, **kwargs
    )
    assert tuple(scores.shape) == (q_shape[0], 2, q_shape[1], value.shape[1])
    np.testing.assert_allclose(
        ref.to_np(scores), ref.to_np(want_scores), atol=1e-5
    )
    np.testing.assert_allclose(ref.to_np(out), ref.to_np(want_out), atol=1e-5)
    np.testing.assert_allclose(ref.to_np(scores).sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("use_causal_mask", [False, True])
def test_keras_masks_from_embedding_match_keras(
    implementation, use_causal_mask
):
    # Query and value padded differently; Keras masks from mask_zero.
    q_ids = np.array([[3, 1, 4, 1, 5, 0], [9, 2, 6, 0, 0, 0]])
    v_ids = np.array([[2, 7, 1, 8, 2, 8, 1], [8, 2, 8, 0, 0, 0, 0]])
    q_emb = keras.layers.Embedding(10, 8, mask_zero=True)
    v_emb = keras.layers.Embedding(10, 6, mask_zero=True)
    q_emb.build((None, None))
    v_emb.build((None, None))
    theirs, ours, *_ = _keras_pair(
        {}, (2, 6, 8), (2, 7, 6), None, **IMPLEMENTATIONS[implementation]
    )
    kwargs = {"use_causal_mask": use_causal_mask}
    # The layers consume the inputs' masks, so embed afresh for each call.
    expected = ref.to_np(theirs(q_emb(q_ids), v_emb(v_ids), **kwargs))
    got = ref.to_np(ours(q_emb(q_ids), v_emb(v_ids), **kwargs))
    real = q_ids > 0
    # Keras gives padded queries some weights; we give them zeros.
    np.testing.assert_allclose(got[real], expected[real], atol=1e-5)
    np.testing.assert_array_equal(got[~real], 0.0)


def _gradients(layer, query, value, cotangent, **kwargs):
    query, value = tf.constant(query), tf.constant(value)
    with tf.GradientTape() as tape:
        tape.watch([query, value])
        loss = tf.reduce_sum(layer(query, value, **kwargs) * cotangent)
    grads = tape.gradient(loss, [query, value] + layer.trainable_variables)
    return [ref.to_np(g) for g in grads]


@pytest.mark.parametrize(
    "init, kwargs",
    [
        (
            {},
            {
                "use_causal_mask": True,
                "attention_mask": _some_true_mask(2, 6, 7),
            },
        ),
        (
            {
                "num_key_value_heads": 1,
                "position_encoding": "alibi",
                "window_size": 2,
            },
            {"value_mask": np.array([[1, 1, 1, 1, 0, 0, 0], [1] * 7], bool)},
        ),
    ],
    ids=["causal_attention_mask", "mqa_alibi_window_value_mask"],
)
def test_chunked_gradients_match_exact(init, kwargs):
    query, value = normal(2, 6, 8), normal(2, 7, 6)
    exact = make_layer(query, value, num_heads=2, key_dim=4, **init)
    chunked = copy_of(exact, implementation="chunked", block_size=3)
    cotangent = normal(2, 6, 8)
    np.testing.assert_allclose(
        ref.to_np(chunked(query, value, **kwargs)),
        ref.to_np(exact(query, value, **kwargs)),
        atol=1e-5,
    )
    want = _gradients(exact, query, value, cotangent, **kwargs)
    got = _gradients(chunked, query, value, cotangent, **kwargs)
    assert len(got) == 2 + 8
    for g, w in zip(got, want):
        assert np.abs(w).max() > 0  # every input and weight gets a gradient
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-4)


def test_long_inputs_switch_to_chunked_and_match_exact():
    # implementation=None picks the chunked core from 1024 x 1024 scores on,
    # unless weights are requested.
    x = normal(1, 1024, 4)
    auto = make_layer(x, x, num_heads=1, key_dim=4)
    exact = copy_of(auto, implementation="exact")
    got = ref.to_np(auto(x, x, use_causal_mask=True))
    want = ref.to_np(exact(x, x, use_causal_mask=True))
    np.testing.assert_allclose(got, want, atol=1e-5)
    out, scores = auto(x, x, use_causal_mask=True, return_attention_scores=True)
    np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)
    assert tuple(scores.shape) == (1, 1, 1024, 1024)


# --------------------------------------------------------------------------
# NumPy reference: grouped/multi-query heads, RoPE, ALiBi, windows.
# --------------------------------------------------------------------------
NUMPY_CASES = {
    # name: (init, call kwargs)
    "gqa": ({"num_key_value_heads": 2}, {}),
    "mqa": ({"num_key_value_heads": 1}, {}),
    "mqa_causal": ({"num_key_value_heads": 1}, {"use_causal_mask": True}),
    "rope": ({"position_encoding": "rope", "rope_max_wavelength": 50.0}, {}),
    "rope_gqa_causal": (
        {"position_encoding": "rope", "num_key_value_heads": 2},
        {"use_causal_mask": True},
    ),
    "alibi": ({"position_encoding": "alibi"}, {}),
    "alibi_gqa_causal": (
        {"position_encoding": "alibi", "num_key_value_heads": 2},
        {"use_causal_mask": True},
    ),
    "window": ({"window_size": 2}, {}),
    "window_causal": ({"window_size": 3}, {"use_causal_mask": True}),
    "everything": (
        {
            "num_key_value_heads": 2,
            "position_encoding": "alibi",
            "window_size": 3,
            "value_dim": 3,
            "output_shape": 5,
        },
        {"attention_mask": _some_true_mask(2, 6, 7)},
    ),
}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", NUMPY_CASES)
def test_matches_numpy_reference(case, implementation):
    init, kwargs = NUMPY_CASES[case]
    if kwargs.get("use_causal_mask"):
        query = value = normal(2, 7, 8)
    else:
        query, value = normal(2, 6, 8), normal(2, 7, 6)
    layer = make_layer(
        query,
        value,
        num_heads=4,
        key_dim=4,
        **init,
        **IMPLEMENTATIONS[implementation],
    )
    want, want_scores = ref.multi_head(
        layer,
        query,
        value,
        allowed=kwargs.get("attention_mask"),
        use_causal_mask=kwargs.get("use_causal_mask", False),
    )
    np.testing.assert_allclose(
        ref.to_np(layer(query, value, **kwargs)), want, atol=1e-5
    )
    if implementation == "exact":
        out, scores = layer(
            query, value, return_attention_scores=True, **kwargs
        )
        np.testing.assert_allclose(ref.to_np(scores), want_scores, atol=1e-5)
        np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)


def test_gqa_shares_key_value_heads_between_query_heads():
    # 4 query heads reading 2 key/value heads: heads 0 and 1 read pair 0.
    # With identical query projections for heads 0 and 1, their weights
    # must be equal; heads 0 and 2 (different kv heads) must differ.
    x = normal(1, 5, 8)
    layer = make_layer(x, x, num_heads=4, key_dim=4, num_key_value_heads=2)
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


def test_rope_scores_depend_only_on_relative_position():
    # Constant query and key rows: after RoPE the logit of (i, j) depends on
    # i - j only, L[i, j] = f(i - j), so the weight ratios of row i over keys
    # (j, j') and of row i + 1 over keys (j + 1, j' + 1) agree.
    x = np.broadcast_to(normal(1, 1, 8), (1, 6, 8)).copy()
    layer = make_layer(x, x, num_heads=2, key_dim=4, position_encoding="rope")
    _, scores = layer(x, x, return_attention_scores=True)
    scores = ref.to_np(scores)
    ratio_a = scores[0, :, 2, 1] / scores[0, :, 2, 2]
    ratio_b = scores[0, :, 3, 2] / scores[0, :, 3, 3]
    np.testing.assert_allclose(ratio_a, ratio_b, rtol=1e-4)


# --------------------------------------------------------------------------
# Keras masks
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "init",
    [
        {},
        {
            "num_key_value_heads": 1,
            "position_encoding": "rope",
            "implementation": "chunked",
            "block_size": 2,
        },
        {"position_encoding": "alibi", "window_size": 2},
    ],
    ids=["default", "mqa_rope_chunked", "alibi_window"],
)
@pytest.mark.parametrize("use_causal_mask", [False, True])
def test_padding_changes_nothing_else(init, use_causal_mask):
    # Each example alone and unpadded vs. both examples padded to a batch:
    # outputs at real positions agree, padded positions are zeros.
    q_ids = [[3, 1, 4], [1, 5, 9, 2, 6]]
    v_ids = [[2, 7, 1, 8, 2, 8], [1, 8]]
    q_emb = keras.layers.Embedding(10, 8, mask_zero=True)
    v_emb = keras.layers.Embedding(10, 6, mask_zero=True)

    def pad(rows, length):
        return np.array([r + [0] * (length - len(r)) for r in rows])

    kwargs = {"use_causal_mask": use_causal_mask}
    padded_q, padded_v = pad(q_ids, 7), pad(v_ids, 8)
    query, value = q_emb(padded_q), v_emb(padded_v)
    layer = make_layer(query, value, num_heads=2, key_dim=4, **init)
    batch = ref.to_np(layer(query, value, **kwargs))
    for i, (q_row, v_row) in enumerate(zip(q_ids, v_ids)):
        alone = ref.to_np(
            layer(q_emb(np.array([q_row])), v_emb(np.array([v_row])), **kwargs)
        )
        np.testing.assert_allclose(batch[i, : len(q_row)], alone[0], atol=1e-5)
        np.testing.assert_array_equal(batch[i, len(q_row) :], 0.0)


def test_output_carries_the_query_mask():
    q_ids = np.array([[3, 1, 4, 0, 0], [1, 5, 9, 2, 0]])
    v_ids = np.array([[2, 7, 0, 0, 0, 0], [1, 8, 2, 8, 1, 8]])
    q_emb = keras.layers.Embedding(10, 8, mask_zero=True)
    v_emb = keras.layers.Embedding(10, 6, mask_zero=True)
    layer = MultiHeadAttention(num_heads=2, key_dim=4)

    # Eagerly.
    out = layer(q_emb(q_ids), v_emb(v_ids))
    np.testing.assert_array_equal(ref.to_np(get_keras_mask(out)), q_ids > 0)

    # In a functional model, to a following mask-aware layer.
    q_in = keras.Input((None,), dtype="int32")
    v_in = keras.Input((None,), dtype="int32")
    attended = layer(q_emb(q_in), v_emb(v_in))
    pooled = keras.layers.GlobalAveragePooling1D()(attended)
    model = keras.Model([q_in, v_in], pooled)
    real = (q_ids > 0)[..., None]
    expected = (ref.to_np(out) * real).sum(1) / real.sum(1)
    np.testing.assert_allclose(
        ref.to_np(model([q_ids, v_ids])), expected, atol=1e-6
    )
    # The padded rows are zeros, so an unmasked mean would differ.
    assert np.abs(ref.to_np(out).mean(1) - expected).max() > 1e-4


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_rows_with_nothing_to_attend_are_finite(implementation):
    query, value = normal(3, 4, 8), normal(3, 5, 6)
    layer = make_layer(
        query, value, num_heads=2, key_dim=4, **IMPLEMENTATIONS[implementation]
    )
    attention_mask = np.ones((3, 4, 5), bool)
    attention_mask[0, 1] = False  # one query of example 0 sees nothing
    value_mask = np.ones((3, 5), bool)
    value_mask[1] = False  # example 1 has no values at all
    query_mask = np.ones((3, 4), bool)
    query_mask[2, 3] = False  # a padded query
    out = ref.to_np(
        layer(
            query,
            value,
            attention_mask=attention_mask,
            value_mask=value_mask,
            query_mask=query_mask,
        )
    )
    assert np.isfinite(out).all()
    # Queries with no key to attend to: zero attention, i.e. the output
    # projection's bias; padded queries: exact zeros.
    out_bias = ref.to_np(layer.output_dense.bias)
    np.testing.assert_allclose(out[0, 1], out_bias, atol=1e-6)
    np.testing.assert_allclose(
        out[1], np.broadcast_to(out_bias, (4, 8)), atol=1e-6
    )
    np.testing.assert_array_equal(out[2, 3], 0.0)
    want, _ = ref.multi_head(
        layer,
        query,
        value,
        allowed=attention_mask,
        value_mask=value_mask,
        query_mask=query_mask,
    )
    np.testing.assert_allclose(out, want, atol=1e-5)
    if implementation == "exact":
        _, scores = layer(
            query,
            value,
            attention_mask=attention_mask,
            value_mask=value_mask,
            query_mask=query_mask,
            return_attention_scores=True,
        )
        scores = ref.to_np(scores)
        np.testing.assert_array_equal(scores[0, :, 1], 0.0)
        np.testing.assert_array_equal(scores[1], 0.0)
        np.testing.assert_array_equal(scores[2, :, 3], 0.0)
        np.testing.assert_allclose(scores[2, :, :3].sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("shape", [(5, 7), (2, 1, 5, 7), (2, 4, 5, 7)])
def test_attention_mask_ranks(shape):
    # (Tq, Tv), (batch, 1, Tq, Tv) and per-head (batch, heads, Tq, Tv).
    query, value = normal(2, 5, 8), normal(2, 7, 6)
    layer = make_layer(
        query, value, num_heads=4, key_dim=4, num_key_value_heads=2
    )
    mask = RNG.random(shape) < 0.6
    mask[..., 0] = True
    allowed = np.broadcast_to(
        mask, (2, 4, 5, 7) if len(shape) == 4 else (2, 5, 7)
    )
    want, want_scores = ref.multi_head(layer, query, value, allowed=allowed)
    out, scores = layer(
        query, value, attention_mask=mask, return_attention_scores=True
    )
    np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)
    np.testing.assert_allclose(ref.to_np(scores), want_scores, atol=1e-6)


# --------------------------------------------------------------------------
# Dtype policies
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "policy, atol", [("mixed_float16", 2e-2), ("mixed_bfloat16", 1e-1)]
)
@pytest.mark.parametrize(
    "init",
    [
        {"implementation": "exact"},
        {
            "implementation": "chunked",
            "block_size": 3,
            "num_key_value_heads": 2,
            "position_encoding": "rope",
            "window_size": 4,
        },
        {"position_encoding": "alibi"},
    ],
    ids=["exact", "chunked_gqa_rope_window", "alibi"],
)
def test_mixed_precision_close_to_float32(policy, atol, init):
    query, value = normal(2, 6, 8), normal(2, 7, 6)
    full = make_layer(query, value, num_heads=4, key_dim=4, **init)
    mixed = copy_of(full, dtype=policy)
    assert mixed.compute_dtype == policy.split("_")[1]
    assert all(w.dtype == "float32" for w in mixed.weights)
    attention_mask = _some_true_mask(2, 6, 7)
    attention_mask[1, 2] = False  # a row with nothing to attend to
    kwargs = {"attention_mask": attention_mask, "use_causal_mask": True}
    want = ref.to_np(full(query, value, **kwargs))
    got = mixed(query, value, **kwargs)
    assert keras.backend.standardize_dtype(got.dtype) == mixed.compute_dtype
    got = ref.to_np(got)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=atol, rtol=atol)
    if init.get("implementation") != "chunked":
        _, scores = mixed(query, value, return_attention_scores=True, **kwargs)
        _, want_scores = full(
            query, value, return_attention_scores=True, **kwargs
        )
        assert (
            keras.backend.standardize_dtype(scores.dtype) == mixed.compute_dtype
        )
        np.testing.assert_allclose(
            ref.to_np(scores), ref.to_np(want_scores), atol=atol
        )


def ordered_keys(batch, length, features, magnitude):
    """`(batch, length, features)` inputs `c_j * u_b`, `c_j` a shuffled
    `linspace(-1, 1)`: every logit is `c_j * a + b` for its query, so the
    keys a query prefers are ordered by `c_j`, with gaps of `2 / (length - 1)`
    of the logits' scale that float16 rounding (1e-3) cannot reorder."""
    c = RNG.permutation(np.linspace(-1.0, 1.0, length))
    u = RNG.standard_normal((batch, 1, features))
    return (magnitude * c[None, :, None] * u).astype("float32")


@pytest.mark.parametrize("implementation", [None, "exact", "chunked"])
def test_float16_large_inputs_are_finite_and_match_reference(implementation):
    # Inputs ~1e4 give scores ~1e7, far beyond float16's 65504: they must be
    # computed in float32 on every path (`None` picks the exact core at this
    # length), and the float16 output must still be the float64 answer.
    keras.config.set_dtype_policy("mixed_float16")
    query, value = normal(2, 6, 8, scale=1e4), ordered_keys(2, 7, 8, 1e4)
    layer = make_layer(
        query, value, num_heads=2, key_dim=4, implementation=implementation
    )
    assert layer.compute_dtype == "float16"
    # Padding and a causal mask on top (the first query then sees one key).
    value_mask = np.array([[1] * 7, [1, 1, 1, 1, 1, 0, 0]], bool)
    kwargs = {"value_mask": value_mask, "use_causal_mask": True}
    want, want_scores = ref.multi_head(layer, query, value, **kwargs)
    got = layer(query, value, **kwargs)
    assert keras.backend.standardize_dtype(got.dtype) == "float16"
    got = ref.to_np(got)
    assert np.isfinite(got).all()
    # float16 carries ~3 significant digits: 1% of the outputs' scale.
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2 * scale)
    if implementation != "chunked":
        _, scores = layer(query, value, return_attention_scores=True, **kwargs)
        assert keras.backend.standardize_dtype(scores.dtype) == "float16"
        np.testing.assert_allclose(ref.to_np(scores), want_scores, atol=1e-2)


# --------------------------------------------------------------------------
# Models: training under XLA, Sequential, functional, subclassed
# --------------------------------------------------------------------------
def test_jit_compiled_fit():
    # One compiled model (XLA compiles are slow) holding both cores: exact
    # GQA + RoPE + dropout, then chunked MQA + ALiBi + window, then a
    # ScaledDotProductAttention.
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(12, 16, mask_zero=True)(tokens)
    first = MultiHeadAttention(
        num_heads=4,
        key_dim=4,
        num_key_value_heads=2,
        position_encoding="rope",
        dropout=0.1,
    )
    second = MultiHeadAttention(
        num_heads=4,
        key_dim=4,
        num_key_value_heads=1,
        position_encoding="alibi",
        window_size=4,
        implementation="chunked",
        block_size=4,
    )
    x = x + first(x, x, use_causal_mask=True)
    x = x + second(x, x, use_causal_mask=True)
    x = x + ScaledDotProductAttention()(x, x, use_causal_mask=True)
    model = keras.Model(tokens, keras.layers.Dense(12)(x))
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 12, size=(8, 10))
    ids[::2, 7:] = 0  # padded examples
    targets = np.roll(ids, -1, axis=1)

    def weights():
        # Not the key biases: they shift every logit of a query row by the
        # same amount, which the softmax ignores, so their gradient is zero.
        return [
            ref.to_np(w)
            for layer in (first, second)
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


def test_sequential_with_functional_sub_model(tmp_path):
    # A self-attention block as a single-input functional sub-model.
    x = keras.Input((6, 8))
    block = keras.Model(
        x,
        MultiHeadAttention(num_heads=2, key_dim=4)(x, x, use_causal_mask=True),
    )
    model = keras.Sequential(
        [keras.Input((6, 8)), block, keras.layers.Dense(3)]
    )
    inputs = normal(3, 6, 8)
    attention = block.layers[-1]
    want, _ = ref.multi_head(attention, inputs, inputs, use_causal_mask=True)
    dense = model.layers[-1]
    want = want @ ref.to_np(dense.kernel) + ref.to_np(dense.bias)
    np.testing.assert_allclose(ref.to_np(model(inputs)), want, atol=1e-5)
    helpers.assert_keras_roundtrip(model, inputs, tmp_path)


class TinyDecoder(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attention = MultiHeadAttention(
            num_heads=2,
            key_dim=4,
            num_key_value_heads=1,
            position_encoding="rope",
        )
        self.head = keras.layers.Dense(1)

    def call(self, x):
        return self.head(self.attention(x, x, use_causal_mask=True))


def test_subclassed_model_trains():
    model = TinyDecoder()
    x, y = normal(8, 5, 8), normal(8, 5, 1)
    out = model(x)
    want, _ = ref.multi_head(model.attention, x, x, use_causal_mask=True)
    want = want @ ref.to_np(model.head.kernel) + ref.to_np(model.head.bias)
    np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)
    before = ref.to_np(model.attention.key_dense.kernel)
    model.compile(optimizer="adam", loss="mse", jit_compile=False)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert (
        np.abs(ref.to_np(model.attention.key_dense.kernel) - before).max() > 0
    )


def test_keras_file_round_trip(tmp_path):
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(12, 8, mask_zero=True)(tokens)
    x = MultiHeadAttention(
        num_heads=4,
        key_dim=4,
        value_dim=3,
        num_key_value_heads=2,
        position_encoding="alibi",
        window_size=3,
        dropout=0.2,
        output_shape=6,
        kernel_regularizer="l2",
        kernel_initializer=keras.initializers.GlorotUniform(seed=3),
        bias_initializer="ones",
    )(x, x, use_causal_mask=True)
    x = ScaledDotProductAttention(scale=0.5)(x, x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(tokens, x)
    ids = np.array([[1, 2, 3, 4, 0, 0], [5, 6, 7, 8, 9, 10]])
    restored = helpers.assert_keras_roundtrip(model, ids, tmp_path)
    layer = restored.layers[2]
    assert isinstance(layer, MultiHeadAttention)
    assert layer.get_config() == model.layers[2].get_config()


def test_export_serves_without_the_package(tmp_path):
    # Single input: the shared helper serves positional inputs.
    query = keras.Input((5, 8))
    value = keras.layers.Dense(6)(query)
    attended = MultiHeadAttention(
        num_heads=4,
        key_dim=4,
        num_key_value_heads=2,
        position_encoding="rope",
        implementation="chunked",
        block_size=3,
    )(query, value)
    out = ScaledDotProductAttention()(attended, attended, use_causal_mask=True)
    model = keras.Model(query, [attended, out])
    helpers.assert_export_roundtrip(model, normal(2, 5, 8), tmp_path)


# --------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------
def test_dropout_only_in_training():
    query, value = normal(2, 6, 8), normal(2, 7, 6)
    plain = make_layer(query, value, num_heads=2, key_dim=4)
    dropped = copy_of(plain, dropout=0.5, seed=7)
    want = ref.to_np(plain(query, value))
    for training in (None, False):
        np.testing.assert_allclose(
            ref.to_np(dropped(query, value, training=training)), want, atol=1e-6
        )
    trained = ref.to_np(dropped(query, value, training=True))
    assert np.isfinite(trained).all()
    assert np.abs(trained - want).max() > 1e-3
    # Scores returned while training are the softmax weights (rows sum to 1).
    _, scores = dropped(
        query, value, training=True, return_attention_scores=True
    )
    np.testing.assert_allclose(ref.to_np(scores).sum(-1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------
# Arguments and inputs
# --------------------------------------------------------------------------
def test_get_config_is_complete():
    layer = MultiHeadAttention(
        num_heads=4,
        key_dim=6,
        value_dim=3,
        num_key_value_heads=2,
        implementation="exact",
        position_encoding="rope",
        window_size=5,
        rope_max_wavelength=500.0,
        block_size=64,
        dropout=0.25,
        use_bias=False,
        output_shape=7,
        seed=11,
        name="mha",
    )
    config = layer.get_config()
    for name, value in {
        "num_heads": 4,
        "key_dim": 6,
        "value_dim": 3,
        "num_key_value_heads": 2,
        "implementation": "exact",
        "position_encoding": "rope",
        "window_size": 5,
        "rope_max_wavelength": 500.0,
        "block_size": 64,
        "dropout": 0.25,
        "use_bias": False,
        "output_shape": 7,
        "seed": 11,
    }.items():
        assert config[name] == value, name
    assert MultiHeadAttention.from_config(config).get_config() == config


def test_compute_output_shape_and_spec():
    layer = MultiHeadAttention(num_heads=2, key_dim=4, output_shape=5)
    assert layer.compute_output_shape((None, 3, 8), (None, 4, 6)) == (
        None,
        3,
        5,
    )
    query = keras.Input((3, 8))
    value = keras.Input((4, 6))
    out, scores = layer(query, value, return_attention_scores=True)
    assert tuple(out.shape) == (None, 3, 5)
    assert tuple(scores.shape) == (None, 2, 3, 4)


BAD_INIT = [
    (
        {"num_heads": 4, "key_dim": 4, "num_key_value_heads": 3},
        r"MultiHeadAttention: `num_key_value_heads` must divide `num_heads`.*"
        r"num_heads=4, num_key_value_heads=3",
    ),
    (
        {"num_heads": 2, "key_dim": 0},
        r"MultiHeadAttention: `key_dim` must be a positive integer.*key_dim=0",
    ),
    (
        {"num_heads": 0, "key_dim": 4},
        r"MultiHeadAttention: `num_heads` must be a positive integer",
    ),
    (
        {"num_heads": 2, "key_dim": 4, "dropout": 1.0},
        r"MultiHeadAttention: `dropout` must be a float in \[0, 1\).*dropout=1.0",
    ),
    (
        {"num_heads": 2, "key_dim": 4, "dropout": -0.1},
        r"MultiHeadAttention: `dropout`",
    ),
    (
        {"num_heads": 2, "key_dim": 4, "implementation": "flash"},
        r"MultiHeadAttention: `implementation` must be None or one of.*'flash'",
    ),
    (
        {
            "num_heads": 2,
            "key_dim": 4,
            "implementation": "chunked",
            "dropout": 0.1,
        },
        r"MultiHeadAttention: `implementation='chunked'` has no attention dropout",
    ),
    (
        {"num_heads": 2, "key_dim": 4, "position_encoding": "learned"},
        r"MultiHeadAttention: `position_encoding` must be one of.*'learned'",
    ),
    (
        {"num_heads": 2, "key_dim": 5, "position_encoding": "rope"},
        r"MultiHeadAttention: `position_encoding='rope'` needs an even `key_dim`.*key_dim=5",
    ),
    (
        {"num_heads": 2, "key_dim": 4, "window_size": 0},
        r"MultiHeadAttention: `window_size` must be a positive integer",
    ),
    (
        {"num_heads": 2, "key_dim": 4, "output_shape": 0},
        r"MultiHeadAttention: `output_shape`",
    ),
]


@pytest.mark.parametrize("init, message", BAD_INIT)
def test_bad_arguments(init, message):
    with pytest.raises(ValueError, match=message):
        MultiHeadAttention(**init)


def test_bad_inputs():
    q, v = normal(2, 5, 8), normal(2, 7, 6)
    for built in (False, True):
        layer = MultiHeadAttention(num_heads=2, key_dim=4, name="mha")
        if built:
            layer(q, v)
        with pytest.raises(
            ValueError,
            match=r"'mha' \(MultiHeadAttention\): `query` must have rank 3.*\(2, 8\)",
        ):
            layer(normal(2, 8), v)
        with pytest.raises(
            ValueError,
            match=r"'mha' \(MultiHeadAttention\): `key` must have as many positions as `value`",
        ):
            layer(q, v, key=normal(2, 6, 6))
    layer = MultiHeadAttention(num_heads=2, key_dim=4, name="mha")
    with pytest.raises(
        ValueError,
        match=r"'mha' \(MultiHeadAttention\): `attention_mask` must have shape \(2, 5, 7\).*\(2, 4, 7\)",
    ):
        layer(q, v, attention_mask=np.ones((2, 4, 7), bool))
    with pytest.raises(
        ValueError,
        match=r"'mha' \(MultiHeadAttention\): `attention_mask` must have shape \(2, 2, 5, 7\)",
    ):
        layer(q, v, attention_mask=np.ones((2, 3, 5, 7), bool))
    with pytest.raises(
        ValueError,
        match=r"'mha' \(MultiHeadAttention\): `query_mask` must have shape \(2, 5\).*\(2, 4\)",
    ):
        layer(q, v, query_mask=np.ones((2, 4), bool))
    with pytest.raises(
        ValueError,
        match=r"'mha' \(MultiHeadAttention\): `value_mask` must have shape \(2, 7\)",
    ):
        layer(q, v, value_mask=np.ones((2, 5), bool))
    with pytest.raises(
        ValueError,
        match=r"'mha' \(MultiHeadAttention\): `value` must have the query's batch size",
    ):
        layer(q, normal(3, 7, 6))


def test_chunked_with_unknown_length_runs_exact_in_graph():
    # A `None` length can't be tiled statically: the layer falls back to the
    # exact core there and still equals the eager (static, chunked) result.
    layer = MultiHeadAttention(
        num_heads=2, key_dim=4, implementation="chunked", block_size=3
    )
    x = normal(2, 7, 8)
    eager = layer(x, x, use_causal_mask=True)
    graph = tf.function(
        lambda t: layer(t, t, use_causal_mask=True),
        input_signature=[tf.TensorSpec((None, None, 8), "float32")],
    )
    np.testing.assert_allclose(graph(x), eager, atol=1e-5)
