"""Tests for `keras_attention.layers.DynamicAttention`.

Expected numbers: NumPy float64 with the layer's own weights (see
`dynamic_reference`), on the shell's projections (`attention_reference`):

    tau[i,h] = softplus(q[i,h] . w_tau[h] + b_tau[h]) + eps
    l[h,i,j] = q[i,h] . k[j,h] / (sqrt(d) tau[i,h])
    l'       = sum_h P_l[h, g] l[h]          (talking heads, pre-softmax)
    a        = masked softmax_j(l')          (no allowed key -> zeros)
    a'       = sum_h P_w[h, g] a[h], hidden where not allowed
    o[i,h]   = sigmoid(q[i,h] . w_g[h] + b_g[h]) * sum_j a'[h,i,j] v[j,h]
"""


import keras
import numpy as np
import pytest
import tensorflow as tf

import attention_reference as ref
import helpers

from keras_attention.layers import TransformerEncoder
from keras_attention.layers.attention import registry
from keras_attention.layers.attention.dynamic_attention import DynamicAttention

FLAGS = [
    dict(temperature=True, head_gating=True, talking_heads=True),
    dict(temperature=False, head_gating=False, talking_heads=False),
    dict(temperature=True, head_gating=False, talking_heads=False),
    dict(temperature=False, head_gating=True, talking_heads=False),
    dict(temperature=False, head_gating=False, talking_heads=True),
]


def normal(rng, *shape):
    return rng.standard_normal(shape).astype("float32")


def randomize(layer, rng):
    """Moves the extra weights off their (neutral) initial values."""
    for weight in layer.weights:
        if weight.path.split("/")[-1] in (
            "temperature_kernel", "temperature_bias", "gate_kernel", "gate_bias",
            "logits_mixing", "weights_mixing",
        ):
            weight.assign(normal(rng, *weight.shape) * 0.5 + (
                np.eye(weight.shape[0]) if "mixing" in weight.path else 0.0))


def dynamic_reference(layer):
    def softplus(x):
        return np.log1p(np.exp(x))

    def attend(q, k, v, allowed):
        groups = q.shape[2] // k.shape[2]
        k = np.repeat(k, groups, axis=2)
        v = np.repeat(v, groups, axis=2)
        h = q.shape[2]
        qs = q
        if layer.temperature:
            tau = softplus(np.einsum("bqhd,hd->bqh", q, ref.to_np(layer.temperature_kernel))
                           + ref.to_np(layer.temperature_bias)) + layer.epsilon
            qs = q / tau[..., None]
        logits = np.einsum("bqhd,bkhd->bhqk", qs, k) / np.sqrt(q.shape[-1])
        if layer.talking_heads:
            logits = np.einsum("bhqk,hg->bgqk", logits, ref.to_np(layer.logits_mixing))
        allowed = np.broadcast_to(allowed, logits.shape)
        logits = np.where(allowed, logits, -np.inf)
        m = logits.max(-1, keepdims=True)
        p = np.exp(logits - np.where(np.isfinite(m), m, 0.0))
        total = p.sum(-1, keepdims=True)
        weights = p / np.where(total > 0, total, 1.0)
        if layer.talking_heads:
            weights = np.einsum("bhqk,hg->bgqk", weights, ref.to_np(layer.weights_mixing))
            weights = np.where(allowed, weights, 0.0)
        out = np.einsum("bhqk,bkhd->bqhd", weights, v)
        if layer.head_gating:
            gate = 1 / (1 + np.exp(-(np.einsum("bqhd,hd->bqh", q, ref.to_np(layer.gate_kernel))
                                     + ref.to_np(layer.gate_bias))))
            out = out * gate[..., None]
        assert h == layer.num_heads
        return out, weights

    return attend


@pytest.mark.parametrize("flags", FLAGS)
@pytest.mark.parametrize("causal", [False, True])
def test_matches_numpy_with_masks(flags, causal):
    rng = np.random.default_rng(0)
    layer = DynamicAttention(num_heads=4, key_dim=3, num_key_value_heads=2, **flags)
    query, value = normal(rng, 2, 5, 6), normal(rng, 2, 7, 6)
    if causal:
        value = normal(rng, 2, 5, 6)
    value_mask = np.ones((2, value.shape[1]), bool)
    value_mask[0, 3:] = False
    value_mask[1, :] = False  # example 1: nothing to attend to
    layer(query, value)
    randomize(layer, rng)
    out, weights = layer(query, value, value_mask=value_mask, use_causal_mask=causal,
                         return_attention_scores=True)
    expected, expected_weights = ref.multi_head(
        layer, query, value, value_mask=value_mask, use_causal_mask=causal,
        attend=dynamic_reference(layer),
    )
    np.testing.assert_allclose(ref.to_np(out), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ref.to_np(weights), expected_weights, rtol=1e-4, atol=1e-5)
    # Fully masked example: the output projection's bias only, never NaN.
    heads_zero = ref.weights_of(layer)["output_dense"][1]
    np.testing.assert_allclose(ref.to_np(out)[1], np.broadcast_to(heads_zero, (5, 6)), atol=1e-6)
    assert np.all(ref.to_np(weights)[1] == 0)


def test_all_off_equals_multi_head():
    from keras_attention.layers import MultiHeadAttention

    rng = np.random.default_rng(1)
    x = normal(rng, 2, 5, 8)
    plain = DynamicAttention(2, 4, temperature=False, head_gating=False, talking_heads=False)
    mha = MultiHeadAttention(2, 4)
    plain(x, x), mha(x, x)
    mha.set_weights(plain.get_weights())
    np.testing.assert_allclose(ref.to_np(plain(x, x, use_causal_mask=True)),
                               ref.to_np(mha(x, x, use_causal_mask=True)), atol=1e-6)


def test_initial_state_is_mha_with_half_gates():
    # Temperatures start at 1 (+epsilon), mixings at identity, gates at 0.5.
    rng = np.random.default_rng(2)
    x = normal(rng, 1, 4, 8)
    layer = DynamicAttention(2, 4, epsilon=1e-6)
    out = layer(x, x)
    expected, _ = ref.multi_head(
        layer, x, x, attend=lambda q, k, v, a: tuple(
            r * f for r, f in zip(ref.attention(q, k, v, a), (0.5, 1.0))))
    np.testing.assert_allclose(ref.to_np(out), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision(dtype):
    rng = np.random.default_rng(3)
    x = normal(rng, 2, 5, 8)
    full = DynamicAttention(2, 4)
    low = DynamicAttention(2, 4, dtype=keras.DTypePolicy(f"mixed_{dtype}"))
    full(x, x), low(x, x)
    randomize(full, rng)
    low.set_weights(full.get_weights())
    mask = np.ones((2, 5), bool)
    mask[1] = False
    got = ref.to_np(keras.ops.cast(low(x, x, value_mask=mask), "float32"))
    np.testing.assert_allclose(got, ref.to_np(full(x, x, value_mask=mask)), atol=0.05, rtol=0.05)
    assert np.all(np.isfinite(got))


def test_gradients_reach_every_weight():
    rng = np.random.default_rng(4)
    x = tf.constant(normal(rng, 2, 5, 8))
    layer = DynamicAttention(2, 4)
    layer(x, x)
    randomize(layer, rng)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, x, use_causal_mask=True) ** 2)
    grads = tape.gradient(loss, layer.trainable_weights)
    for weight, grad in zip(layer.trainable_weights, grads):
        assert grad is not None, weight.path
        g = ref.to_np(grad)
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 0, weight.path


def _model(**kwargs):
    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(20, 8, mask_zero=True)(tokens)
    x = TransformerEncoder(16, 2, attention="dynamic", attention_kwargs=kwargs or None)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(3)(x))


def test_in_transformer_encoder_xla_fit_save_export(tmp_path):
    model = _model(dropout=0.1)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    tokens = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]], "int32")
    history = model.fit(tokens, np.array([0, 2]), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    helpers.assert_keras_roundtrip(model, tokens, tmp_path)
    helpers.assert_export_roundtrip(model, tokens, tmp_path)


def test_registered_and_config_round_trip():
    layer = registry.get("dynamic", num_heads=2, key_dim=4, talking_heads=False, epsilon=0.1)
    assert isinstance(layer, DynamicAttention)
    clone = DynamicAttention.from_config(layer.get_config())
    assert (clone.talking_heads, clone.temperature, clone.head_gating, clone.epsilon) == (False, True, True, 0.1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"temperature": 1}, "DynamicAttention: `temperature` must be a bool"),
        ({"talking_heads": "yes"}, "talking_heads"),
        ({"epsilon": 0}, "epsilon"),
        ({"num_heads": 0}, "num_heads"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"num_heads": 2, "key_dim": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        DynamicAttention(**arguments)


