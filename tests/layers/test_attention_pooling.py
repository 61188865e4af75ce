"""Tests for `keras_attention.layers.pooling.attention_pooling.AttentionPooling`.

Expected numbers, NumPy float64 with the layer's own weights:

    keys[t, h] = x_t W_k[:, h] + b_k[h]
    w[h, i, t] = softmax_t(query[i, h] . keys[t, h] / sqrt(key_dim)), over
                 real positions (none -> zeros)
    y[i, h]    = sum_t w[h, i, t] x_t[h * dim/H : (h+1) * dim/H]
"""


import keras
import numpy as np
import pytest
from keras.src import testing

import attention_reference as ref
import helpers

from keras_attention.layers.attention import registry
from keras_attention.layers.pooling.attention_pooling import AttentionPooling

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    global RNG
    RNG = np.random.default_rng(0)


def normal(*shape):
    return RNG.standard_normal(shape).astype("float32")


def reference(layer, x, mask=None):
    x = np.asarray(x, "float64")
    b, t, dim = x.shape
    h = layer.num_heads
    query = ref.to_np(layer.query)  # (nq, h, kd)
    kd = query.shape[-1]
    keys = np.einsum("btd,dhk->bthk", x, ref.to_np(layer.key_dense.kernel))
    if layer.use_bias:
        keys = keys + ref.to_np(layer.key_dense.bias)
    logits = np.einsum("ihk,bthk->bhit", query, keys) / np.sqrt(kd)
    allowed = np.ones((b, t), bool) if mask is None else np.asarray(mask, bool)
    allowed = np.broadcast_to(allowed[:, None, None, :], logits.shape)
    logits = np.where(allowed, logits, -np.inf)
    row_max = np.max(logits, -1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    p = np.where(allowed, np.exp(logits - row_max), 0.0)
    total = p.sum(-1, keepdims=True)
    w = p / np.where(total > 0, total, 1.0)
    values = x.reshape(b, t, h, dim // h)
    y = np.einsum("bhit,bthd->bihd", w, values).reshape(b, -1, dim)
    if layer.num_queries == 1:
        y = y[:, 0]
    elif layer.flatten:
        y = y.reshape(b, -1)
    return y, w


RANDOM = {"query_initializer": "random_normal"}


class TestConformance(testing.TestCase):
    def test_pooling(self):
        self.run_layer_test(
            AttentionPooling,
            init_kwargs={"num_heads": 2, "num_queries": 3, **RANDOM},
            input_shape=(2, 5, 8),
            expected_output_shape=(2, 3, 8),
            expected_num_trainable_weights=3,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            supports_masking=True,
            run_training_check=False,
        )


CASES = {
    "one_query": {},
    "heads": {"num_heads": 2},
    "queries_heads_key_dim": {"num_queries": 3, "num_heads": 4, "key_dim": 5},
    "flatten_no_bias": {"num_queries": 2, "flatten": True, "use_bias": False},
}


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_matches_numpy_reference(case, masked):
    x = normal(3, 6, 8)
    mask = None
    if masked:
        mask = np.array([[1] * 6, [1, 1, 1, 0, 0, 0], [0] * 6], bool)
    layer = AttentionPooling(**CASES[case], **RANDOM)
    out, weights = layer(x, mask=mask, return_attention_scores=True)
    want, want_w = reference(layer, x, mask)
    assert tuple(out.shape) == want.shape
    assert tuple(out.shape) == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)
    np.testing.assert_allclose(ref.to_np(weights), want_w, atol=1e-6)
    if masked:
        np.testing.assert_array_equal(ref.to_np(out)[2], 0.0)  # all padding


def test_zero_queries_start_as_masked_average():
    x = normal(2, 5, 4)
    mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    out = ref.to_np(AttentionPooling()(x, mask=mask))
    want = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(out, want, atol=1e-6)


def test_keras_mask_from_embedding_and_padding_invariance():
    emb = keras.layers.Embedding(10, 8, mask_zero=True)
    layer = AttentionPooling(num_heads=2, **RANDOM)
    ids = np.array([[3, 1, 4, 0, 0], [0, 0, 0, 0, 0]])
    out = ref.to_np(layer(emb(ids)))
    alone = ref.to_np(layer(emb(ids[:1, :3])))
    np.testing.assert_allclose(out[0], alone[0], atol=1e-6)
    np.testing.assert_array_equal(out[1], 0.0)
    # The same mask passed explicitly gives the same numbers.
    np.testing.assert_allclose(
        ref.to_np(layer(ref.to_np(emb(ids)).astype("float32"), mask=ids > 0)),
        out,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "policy, atol", [("mixed_float16", 1e-2), ("mixed_bfloat16", 5e-2)]
)
def test_mixed_precision_close_to_float32(policy, atol):
    x = normal(3, 6, 8)
    mask = np.array([[1] * 6, [1, 1, 0, 0, 0, 0], [0] * 6], bool)
    layer = AttentionPooling(num_queries=2, num_heads=2, dtype=policy, **RANDOM)
    got = layer(x, mask=mask)
    assert keras.backend.standardize_dtype(got.dtype) == policy.split("_")[1]
    want, _ = reference(layer, x, mask)
    got = ref.to_np(got)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[2], 0.0)
    np.testing.assert_allclose(got, want, atol=atol, rtol=atol)


def _classifier():
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(12, 8, mask_zero=True)(ids)
    pooled = AttentionPooling(
        num_heads=2, dropout=0.1, seed=0, **RANDOM
    )(x)
    return keras.Model(ids, keras.layers.Dense(2)(pooled))


def test_jit_compiled_fit_roundtrip_and_export(tmp_path):
    model = _classifier()
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    ids = np.array([[3, 4, 5, 0], [1, 2, 0, 0], [0, 0, 0, 0]], "int32")
    before = ref.to_np(model.layers[2].query)
    history = model.fit(ids, np.array([0, 1, 0]), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.abs(ref.to_np(model.layers[2].query) - before).max() > 0
    for sub in ("keras", "export"):
        (tmp_path / sub).mkdir()
    helpers.assert_keras_roundtrip(model, ids, tmp_path / "keras")
    helpers.assert_export_roundtrip(model, ids, tmp_path / "export")


def test_registry_config_and_shapes():
    # Saved models find it; `get()` does not list it (not a swappable variant).
    assert keras.saving.get_registered_object("keras_attention>AttentionPooling") is AttentionPooling
    assert AttentionPooling.registry_name == "pooling"
    assert registry.get_class("pooling") is None
    assert "pooling" not in registry.available()
    layer = AttentionPooling(
        num_queries=2, num_heads=2, key_dim=3, flatten=True, seed=1
    )
    config = layer.get_config()
    assert AttentionPooling.from_config(config).get_config() == config
    assert layer.compute_output_shape((None, 5, 8)) == (None, 16)
    out, weights = layer(keras.Input((5, 8)), return_attention_scores=True)
    assert tuple(out.shape) == (None, 16)
    assert tuple(weights.shape) == (None, 2, 2, 5)
    assert AttentionPooling(num_queries=2).compute_output_shape(
        (4, None, 6)
    ) == (4, 2, 6)


@pytest.mark.parametrize(
    "init, message",
    [
        ({"num_queries": 0}, r"AttentionPooling: `num_queries` must be a positive integer.*num_queries=0"),
        ({"num_heads": 1.5}, r"AttentionPooling: `num_heads` must be a positive integer.*num_heads=1.5"),
        ({"key_dim": -1}, r"AttentionPooling: `key_dim` must be a positive integer or None.*key_dim=-1"),
        ({"dropout": -0.1}, r"AttentionPooling: `dropout` must be a float in \[0, 1\).*dropout=-0.1"),
        ({"flatten": "yes"}, r"AttentionPooling: `flatten` must be a bool.*flatten='yes'"),
    ],
)
def test_bad_arguments(init, message):
    with pytest.raises(ValueError, match=message):
        AttentionPooling(**init)


def test_bad_inputs():
    prefix = r"'pool' \(AttentionPooling\): "
    with pytest.raises(
        ValueError,
        match=prefix + r"`num_heads` must divide the input's feature size \(6\)"
        r".*num_heads=4",
    ):
        AttentionPooling(num_heads=4, name="pool")(normal(2, 3, 6))
    layer = AttentionPooling(name="pool")
    with pytest.raises(ValueError, match=prefix + r"`inputs` must have rank 3"):
        layer(normal(2, 6))
    layer(normal(2, 3, 6))
    with pytest.raises(
        ValueError, match=prefix + r"`mask` must have shape \(2, 3\)"
    ):
        layer(normal(2, 3, 6), mask=np.ones((2, 4), bool))
