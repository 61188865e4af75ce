"""Tests for `keras_attention.layers.attention.target_attention.TargetAttention`.

Expected numbers, NumPy float64 with the layer's own weights (DIN):

    x_t = [q, k_t, q - k_t, q * k_t]
    s_t = Dense_L(act(... act(Dense_1(x_t))))          (one score each)
    normalize=None:      w_t = s_t at real t, 0 at padding
    normalize="softmax": w_t = softmax over real t (none -> zeros)
    y = sum_t w_t k_t
"""


import keras
import numpy as np
import pytest
from keras.src import testing

import attention_reference as ref
import helpers

from keras_attention.layers.attention import registry
from keras_attention.layers.attention.target_attention import TargetAttention

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    global RNG
    RNG = np.random.default_rng(0)


def normal(*shape):
    return RNG.standard_normal(shape).astype("float32")


ACTIVATIONS = {
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
}


def reference(layer, query, value, mask=None):
    q, k = np.asarray(query, "float64"), np.asarray(value, "float64")
    qb = np.broadcast_to(q[:, None], k.shape)
    x = np.concatenate([qb, k, qb - k, qb * k], -1)
    for i, dense in enumerate(layer.mlp):
        x = x @ ref.to_np(dense.kernel) + ref.to_np(dense.bias)
        if i < len(layer.mlp) - 1:
            x = ACTIVATIONS[layer.activation](x)
    s = x[..., 0]
    real = np.ones(s.shape, bool) if mask is None else np.asarray(mask, bool)
    if layer.normalize == "softmax":
        s = np.where(real, s, -np.inf)
        row_max = np.max(s, -1, keepdims=True)
        row_max = np.where(np.isfinite(row_max), row_max, 0.0)
        p = np.where(real, np.exp(s - row_max), 0.0)
        total = p.sum(-1, keepdims=True)
        w = p / np.where(total > 0, total, 1.0)
    else:
        w = np.where(real, s, 0.0)
    return np.einsum("bt,btd->bd", w, k), w


class TestConformance(testing.TestCase):
    def test_target_attention(self):
        self.run_layer_test(
            TargetAttention,
            init_kwargs={"hidden_units": (6, 4), "normalize": "softmax"},
            input_shape={"query_shape": (2, 5), "value_shape": (2, 7, 5)},
            expected_output_shape=(2, 5),
            expected_num_trainable_weights=6,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
            run_training_check=False,
        )


MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], bool)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("normalize", [None, "softmax"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh"])
def test_matches_numpy_reference(activation, normalize, masked):
    query, value = normal(3, 4), normal(3, 5, 4)
    mask = MASK if masked else None
    layer = TargetAttention(
        hidden_units=(8, 6),
        activation=activation,
        normalize=normalize,
        bias_initializer="random_normal",
    )
    out, weights = layer(
        query, value, value_mask=mask, return_attention_scores=True
    )
    want, want_w = reference(layer, query, value, mask)
    assert tuple(out.shape) == (3, 4) and tuple(weights.shape) == (3, 5)
    np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)
    np.testing.assert_allclose(ref.to_np(weights), want_w, atol=1e-5)
    if masked:
        np.testing.assert_array_equal(ref.to_np(out)[2], 0.0)
        np.testing.assert_array_equal(ref.to_np(weights)[1:, 2:], 0.0)


@pytest.mark.parametrize("normalize", [None, "softmax"])
def test_keras_mask_padding_contributes_nothing(normalize):
    items = keras.layers.Embedding(20, 6, mask_zero=True)
    layer = TargetAttention(hidden_units=(5,), normalize=normalize)
    candidate = items(np.array([4, 9]))
    history = np.array([[3, 7, 0, 0], [0, 0, 0, 0]])
    out = ref.to_np(layer(candidate, items(history)))
    alone = ref.to_np(layer(candidate[:1], items(history[:1, :2])))
    np.testing.assert_allclose(out[0], alone[0], atol=1e-6)
    np.testing.assert_array_equal(out[1], 0.0)


@pytest.mark.parametrize(
    "policy, atol", [("mixed_float16", 2e-2), ("mixed_bfloat16", 8e-2)]
)
@pytest.mark.parametrize("normalize", [None, "softmax"])
def test_mixed_precision_close_to_float32(normalize, policy, atol):
    query, value = normal(3, 4), normal(3, 5, 4)
    layer = TargetAttention(
        hidden_units=(8, 6), normalize=normalize, dtype=policy
    )
    got, w = layer(query, value, value_mask=MASK, return_attention_scores=True)
    assert keras.backend.standardize_dtype(got.dtype) == policy.split("_")[1]
    want, _ = reference(layer, query, value, MASK)
    got = ref.to_np(got)
    assert np.isfinite(got).all() and np.isfinite(ref.to_np(w)).all()
    np.testing.assert_array_equal(got[2], 0.0)
    np.testing.assert_allclose(got, want, atol=atol, rtol=atol)


def _din():
    # A tiny DIN: candidate item and behaviour ids share one embedding.
    candidate = keras.Input((), dtype="int32")
    history = keras.Input((None,), dtype="int32")
    items = keras.layers.Embedding(20, 6, mask_zero=True)
    q = items(candidate)
    interest = TargetAttention(hidden_units=(8, 4), activation="relu")(
        q, items(history)
    )
    soft = TargetAttention(hidden_units=(4,), normalize="softmax")(
        q, items(history)
    )
    x = keras.layers.Concatenate()([q, interest, soft])
    out = keras.layers.Dense(1)(keras.layers.Dense(8, activation="relu")(x))
    return keras.Model([candidate, history], out)


def test_jit_compiled_fit_and_roundtrips(tmp_path):
    model = _din()
    model.compile(
        optimizer="adam",
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        jit_compile=True,
    )
    candidate = np.array([4, 9, 1, 2], "int32")
    history = np.array(
        [[3, 7, 0, 0], [1, 2, 5, 6], [0, 0, 0, 0], [2, 0, 0, 0]], "int32"
    )
    inputs = [candidate, history]
    history_ = model.fit(
        inputs, np.array([1, 0, 1, 0]), epochs=2, batch_size=4, verbose=0
    )
    assert np.isfinite(history_.history["loss"]).all()
    for sub in ("keras", "export"):
        (tmp_path / sub).mkdir()
    helpers.assert_keras_roundtrip(model, inputs, tmp_path / "keras")
    helpers.assert_export_roundtrip(model, inputs, tmp_path / "export")


def test_registry_config_and_shapes():
    # Saved models find it; `get()` does not list it (not a swappable variant).
    assert keras.saving.get_registered_object("keras_attention>TargetAttention") is TargetAttention
    assert TargetAttention.registry_name == "target"
    assert registry.get_class("target") is None
    assert "target" not in registry.available()
    layer = TargetAttention(
        hidden_units=[4], activation="relu", normalize="softmax"
    )
    config = layer.get_config()
    assert config["hidden_units"] == [4]
    assert TargetAttention.from_config(config).get_config() == config
    assert layer.compute_output_shape((None, 6), (None, 9, 6)) == (None, 6)
    out, weights = layer(
        keras.Input((6,)), keras.Input((9, 6)), return_attention_scores=True
    )
    assert tuple(out.shape) == (None, 6)
    assert tuple(weights.shape) == (None, 9)
    assert [d.units for d in layer.mlp] == [4, 1]
    assert TargetAttention().hidden_units == (80, 40)


@pytest.mark.parametrize(
    "init, message",
    [
        ({"hidden_units": 8}, r"TargetAttention: `hidden_units` must be a list or tuple.*hidden_units=8"),
        ({"hidden_units": (8, 0)}, r"TargetAttention: `hidden_units` must be a positive integer.*hidden_units=0"),
        ({"activation": "swish"}, r"TargetAttention: `activation` must be one of \('sigmoid', 'relu', 'tanh', 'dice'\).*'swish'"),
        ({"normalize": "sum"}, r"TargetAttention: `normalize` must be one of \('softmax', None\).*'sum'"),
    ],
)
def test_bad_arguments(init, message):
    with pytest.raises(ValueError, match=message):
        TargetAttention(**init)


def test_bad_inputs():
    prefix = r"'din' \(TargetAttention\): "
    layer = TargetAttention(hidden_units=(4,), name="din")
    with pytest.raises(ValueError, match=prefix + r"`query` must have rank 2"):
        layer(normal(2, 1, 4), normal(2, 5, 4))
    with pytest.raises(
        ValueError,
        match=prefix + r"`value` must have the query's known feature size \(4\)",
    ):
        layer(normal(2, 4), normal(2, 5, 3))
    layer(normal(2, 4), normal(2, 5, 4))
    with pytest.raises(ValueError, match=prefix + r"`value` must have rank 3"):
        layer(normal(2, 4), normal(2, 4))
    with pytest.raises(
        ValueError, match=prefix + r"`value_mask` must have shape \(2, 5\)"
    ):
        layer(normal(2, 4), normal(2, 5, 4), value_mask=np.ones((2, 3), bool))


def dice_reference(x, alpha, mean, variance, epsilon):
    p = 1.0 / (1.0 + np.exp(-(x - mean) / np.sqrt(variance + epsilon)))
    return p * x + (1.0 - p) * alpha * x


def test_dice_activation_unit_matches_numpy_and_skips_padding(tmp_path):
    rng = np.random.default_rng(5)
    query, value = normal(2, 4), normal(2, 5, 4)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    layer = TargetAttention(hidden_units=(6,), activation="dice", normalize="softmax")
    layer(query, value)
    layer.dice[0].alpha.assign(rng.standard_normal(6).astype("float32"))
    out = layer(query, value, value_mask=mask, training=True)
    # Training: batch statistics over the real behaviours only.
    q = np.broadcast_to(query[:, None], value.shape).astype("float64")
    x = np.concatenate([q, value, q - value, q * value], -1)
    hidden = x @ ref.to_np(layer.mlp[0].kernel) + ref.to_np(layer.mlp[0].bias)
    real = hidden[mask]
    mean, var = real.mean(0), real.var(0)
    dice = layer.dice[0]
    h = dice_reference(hidden, ref.to_np(dice.alpha), mean, var, dice.epsilon)
    s = (h @ ref.to_np(layer.mlp[1].kernel) + ref.to_np(layer.mlp[1].bias))[..., 0]
    s = np.where(mask, s, -np.inf)
    w = np.exp(s - s.max(-1, keepdims=True))
    w = w / w.sum(-1, keepdims=True)
    np.testing.assert_allclose(ref.to_np(out), np.einsum("bt,btd->bd", w, value), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ref.to_np(dice.moving_mean), 0.01 * mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ref.to_np(dice.moving_variance), 0.99 + 0.01 * var, rtol=1e-4)
    assert layer.get_config()["activation"] == "dice"

    items = keras.Input((4,)), keras.Input((5, 4))
    model = keras.Model(items, TargetAttention(hidden_units=(6,), activation="dice")(*items))
    model.compile("adam", "mse", jit_compile=True)
    model.fit([query, value], np.ones((2, 4)), epochs=2, verbose=0)
    helpers.assert_keras_roundtrip(model, [query, value], tmp_path)
