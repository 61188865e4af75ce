"""Tests for `keras_attention.layers.attention.additive_attention.AdditiveAttention`.

Expected numbers: the textbook scores written out in NumPy (float64) with
the layer's own weights read back as arrays:

    additive: e_ij = v . tanh(q_i W_q + k_j W_k + b)
    general:  e_ij = q_i W k_j^T
    a = softmax_j(e) over allowed j (rows with none allowed -> zeros),
    c_i = sum_j a_ij value_j, masked queries -> zeros.
"""


import keras
import numpy as np
import pytest
from keras.src import testing
from keras.src.backend.common.masking import get_keras_mask

import attention_reference as ref
import helpers

from keras_attention.layers.attention import additive_attention
from keras_attention.layers.attention import registry
from keras_attention.layers.attention.additive_attention import AdditiveAttention

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    global RNG
    RNG = np.random.default_rng(0)


def normal(*shape):
    return RNG.standard_normal(shape).astype("float32")


def reference(layer, query, value, key=None, allowed=None, query_mask=None):
    """NumPy float64 forward pass; `allowed`: boolean `(batch|1, Tq, Tv)`."""
    key = value if key is None else key
    q, k, v = (np.asarray(x, "float64") for x in (query, key, value))
    if layer.score == "general":
        logits = np.einsum("bqd,de,bke->bqk", q, ref.to_np(layer.kernel), k)
    else:
        hq = q @ ref.to_np(layer.query_kernel)
        if layer.bias is not None:
            hq = hq + ref.to_np(layer.bias)
        hk = k @ ref.to_np(layer.key_kernel)
        hidden = np.tanh(hq[:, :, None, :] + hk[:, None, :, :])
        logits = hidden @ ref.to_np(layer.score_vector)
    if allowed is None:
        allowed = np.ones(logits.shape, bool)
    allowed = np.broadcast_to(allowed, logits.shape)
    logits = np.where(allowed, logits, -np.inf)
    row_max = np.max(logits, -1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    p = np.where(allowed, np.exp(logits - row_max), 0.0)
    total = p.sum(-1, keepdims=True)
    weights = p / np.where(total > 0, total, 1.0)
    out = weights @ v
    if query_mask is not None:
        out = out * query_mask[..., None]
        weights = weights * query_mask[..., None]
    return out, weights


SCORES = ["additive", "general"]


class TestConformance(testing.TestCase):
    def test_additive_with_key(self):
        self.run_layer_test(
            AdditiveAttention,
            init_kwargs={"units": 6},
            input_shape={
                "query_shape": (2, 1, 8),
                "value_shape": (2, 7, 3),
                "key_shape": (2, 7, 5),
            },
            expected_output_shape=(2, 1, 3),
            expected_num_trainable_weights=4,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            supports_masking=True,
            run_training_check=False,
        )

    def test_general_scores_dropout(self):
        self.run_layer_test(
            AdditiveAttention,
            init_kwargs={"score": "general", "dropout": 0.5, "seed": 2},
            input_shape={"query_shape": (2, 6, 4), "value_shape": (2, 5, 4)},
            call_kwargs={"return_attention_scores": True, "training": True},
            expected_output_shape=((2, 6, 4), (2, 6, 5)),
            expected_num_trainable_weights=1,
            supports_masking=True,
            run_training_check=False,
        )


def _masks():
    attention_mask = RNG.random((2, 4, 6)) < 0.6
    attention_mask[0, 1] = False  # a query with nothing to attend to
    return {
        "query_mask": np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool),
        "value_mask": np.array([[1, 1, 1, 1, 0, 0], [0] * 6], bool),
        "attention_mask": attention_mask,
    }


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("score", SCORES)
def test_matches_numpy_reference(score, masked, use_bias):
    query, value, key = normal(2, 4, 5), normal(2, 6, 3), normal(2, 6, 7)
    kwargs = _masks() if masked else {}
    init = {"units": 9} if score == "additive" else {}
    layer = AdditiveAttention(score=score, use_bias=use_bias, **init)
    out, weights = layer(
        query, value, key, return_attention_scores=True, **kwargs
    )
    allowed = None
    if masked:
        allowed = kwargs["attention_mask"] & kwargs["value_mask"][:, None]
    want, want_weights = reference(
        layer, query, value, key, allowed, kwargs.get("query_mask")
    )
    assert tuple(out.shape) == (2, 4, 3)
    np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)
    np.testing.assert_allclose(ref.to_np(weights), want_weights, atol=1e-6)
    if masked:
        # Fully masked rows: the empty query, the masked query, example 1.
        got = ref.to_np(out)
        np.testing.assert_array_equal(got[0, 1], 0.0)
        np.testing.assert_array_equal(got[0, 3], 0.0)
        np.testing.assert_array_equal(got[1], 0.0)
        np.testing.assert_array_equal(ref.to_np(weights)[1], 0.0)


@pytest.mark.parametrize("score", SCORES)
def test_causal_self_attention_and_default_units(score):
    x = normal(2, 5, 4)
    layer = AdditiveAttention(score=score)
    out = layer(x, x, use_causal_mask=True)
    if score == "additive":
        assert tuple(layer.query_kernel.shape) == (4, 4)  # units = dq
    want, _ = reference(layer, x, x, allowed=ref.causal(5, 5)[None])
    np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)


def test_keras_masks_and_output_mask():
    q_ids = np.array([[3, 1, 0], [5, 9, 2]])
    v_ids = np.array([[2, 7, 1, 8, 0], [1, 0, 0, 0, 0]])
    emb = keras.layers.Embedding(10, 4, mask_zero=True)
    query, value = emb(q_ids), emb(v_ids)
    layer = AdditiveAttention(units=5)
    out = layer(query, value)
    np.testing.assert_array_equal(ref.to_np(get_keras_mask(out)), q_ids > 0)
    want, _ = reference(
        layer,
        ref.to_np(emb(q_ids)),
        ref.to_np(emb(v_ids)),
        allowed=(v_ids > 0)[:, None, :],
        query_mask=q_ids > 0,
    )
    np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)


def test_matches_keras_additive_attention_special_case():
    # keras.layers.AdditiveAttention (use_scale=False) computes
    # sum(tanh(q + k)): units = dim, W_q = W_k = I, b = 0, v = 1.
    query, value = normal(2, 3, 4), normal(2, 5, 4)
    layer = AdditiveAttention(use_bias=False)
    layer.build((2, 3, 4), (2, 5, 4))
    layer.query_kernel.assign(np.eye(4, dtype="float32"))
    layer.key_kernel.assign(np.eye(4, dtype="float32"))
    layer.score_vector.assign(np.ones(4, "float32"))
    mask = [np.ones((2, 3), bool), np.array([[1, 1, 1, 0, 0]] * 2, bool)]
    want = keras.layers.AdditiveAttention(use_scale=False)(
        [query, value], mask=mask
    )
    got = layer(query, value, query_mask=mask[0], value_mask=mask[1])
    np.testing.assert_allclose(ref.to_np(got), ref.to_np(want), atol=1e-5)


def test_dropout_only_in_training():
    query, value = normal(2, 3, 4), normal(2, 6, 4)
    layer = AdditiveAttention(units=4, dropout=0.5, seed=1)
    want = ref.to_np(layer(query, value))
    np.testing.assert_allclose(
        ref.to_np(layer(query, value, training=False)), want, atol=1e-6
    )
    trained = ref.to_np(layer(query, value, training=True))
    assert np.isfinite(trained).all()
    assert np.abs(trained - want).max() > 1e-3


@pytest.mark.parametrize(
    "policy, atol", [("mixed_float16", 1e-2), ("mixed_bfloat16", 5e-2)]
)
@pytest.mark.parametrize("score", SCORES)
def test_mixed_precision_close_to_float32(score, policy, atol):
    query, value = normal(2, 4, 5), normal(2, 6, 3)
    kwargs = _masks()
    layer = AdditiveAttention(score=score, dtype=policy)
    got, weights = layer(query, value, return_attention_scores=True, **kwargs)
    assert keras.backend.standardize_dtype(got.dtype) == policy.split("_")[1]
    assert keras.backend.standardize_dtype(weights.dtype) == policy.split("_")[1]
    want, _ = reference(
        layer,
        query,
        value,
        allowed=kwargs["attention_mask"] & kwargs["value_mask"][:, None],
        query_mask=kwargs["query_mask"],
    )
    got = ref.to_np(got)
    assert np.isfinite(got).all() and np.isfinite(ref.to_np(weights)).all()
    np.testing.assert_array_equal(got[1], 0.0)
    np.testing.assert_allclose(got, want, atol=atol, rtol=atol)


def _seq2seq_model():
    # A one-step RNN decoder attending over an encoder, as in Bahdanau, with
    # both scores (one compile for the two).
    source = keras.Input((None,), dtype="int32")
    state = keras.Input((1, 6))
    encoded = keras.layers.Embedding(12, 6, mask_zero=True)(source)
    encoded = keras.layers.GRU(5, return_sequences=True)(encoded)
    additive = AdditiveAttention(units=4, dropout=0.1, seed=0)(state, encoded)
    general = AdditiveAttention(score="general")(state, encoded)
    context = keras.layers.Concatenate()([additive, general])
    logits = keras.layers.Dense(3)(keras.layers.Flatten()(context))
    return keras.Model([source, state], logits)


def test_jit_compiled_fit_and_keras_roundtrip(tmp_path):
    model = _seq2seq_model()
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    source = np.array([[3, 4, 5, 0], [1, 2, 0, 0], [7, 8, 9, 10]], "int32")
    inputs, labels = [source, normal(3, 1, 6)], np.array([0, 1, 2])
    before = [ref.to_np(w) for w in model.trainable_weights]
    history = model.fit(inputs, labels, epochs=2, batch_size=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = [ref.to_np(w) for w in model.trainable_weights]
    assert all(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    helpers.assert_keras_roundtrip(model, inputs, tmp_path)


def test_export_in_a_fresh_process(tmp_path):
    query = keras.Input((None, 4))
    value = keras.Input((None, 3))
    out = AdditiveAttention(units=5)(query, value, use_causal_mask=True)
    model = keras.Model([query, value], out)
    helpers.assert_export_roundtrip(
        model, [normal(2, 3, 4), normal(2, 5, 3)], tmp_path
    )


def test_registry_config_and_shapes():
    assert registry.get_class("additive") is AdditiveAttention
    layer = registry.get("additive", units=3, dropout=0.2, seed=4, name="add")
    config = layer.get_config()
    assert {k: config[k] for k in ("units", "score", "use_bias", "dropout")} == {
        "units": 3,
        "score": "additive",
        "use_bias": True,
        "dropout": 0.2,
    }
    assert AdditiveAttention.from_config(config).get_config() == config
    assert layer.compute_output_shape((None, 1, 8), (None, 4, 5)) == (
        None,
        1,
        5,
    )
    out, weights = layer(
        keras.Input((1, 8)), keras.Input((4, 5)), return_attention_scores=True
    )
    assert tuple(out.shape) == (None, 1, 5)
    assert tuple(weights.shape) == (None, 1, 4)
    assert additive_attention.SCORES == ("additive", "general")


@pytest.mark.parametrize(
    "init, message",
    [
        (
            {"score": "dot"},
            r"AdditiveAttention: `score` must be one of \('additive', "
            r"'general'\). Received: score='dot'",
        ),
        (
            {"units": 0},
            r"AdditiveAttention: `units` must be a positive integer or None.*units=0",
        ),
        (
            {"units": 4, "score": "general"},
            r"AdditiveAttention: `units` is only used by score='additive'.*units=4",
        ),
        (
            {"dropout": 1.0},
            r"AdditiveAttention: `dropout` must be a float in \[0, 1\).*dropout=1.0",
        ),
    ],
)
def test_bad_arguments(init, message):
    with pytest.raises(ValueError, match=message):
        AdditiveAttention(**init)


def test_bad_inputs():
    q, v = normal(2, 3, 4), normal(2, 5, 6)
    prefix = r"'add' \(AdditiveAttention\): "
    for built in (False, True):
        layer = AdditiveAttention(name="add")
        if built:
            layer(q, v)
        with pytest.raises(
            ValueError, match=prefix + r"`query` must have rank 3.*\(2, 4\)"
        ):
            layer(normal(2, 4), v)
        with pytest.raises(
            ValueError,
            match=prefix + r"`key` must have as many positions as `value`",
        ):
            layer(q, v, key=normal(2, 4, 6))
    with pytest.raises(
        ValueError, match=prefix + r"`value_mask` must have shape \(2, 5\)"
    ):
        layer(q, v, value_mask=np.ones((2, 3), bool))
    with pytest.raises(
        ValueError, match=prefix + r"`attention_mask` must have shape \(2, 3, 5\)"
    ):
        layer(q, v, attention_mask=np.ones((2, 5, 3), bool))
