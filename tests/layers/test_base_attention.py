"""Tests for the shared shell, `keras_attention.layers.BaseAttention`.

A variant is "the shell + its own `attend()`". `MeanAttention` below is the
smallest such variant (each query averages the values it may see): if it
gets projections, heads, masks, config, saving and errors right without a
line of its own for them, the extension point works.
"""

import keras
import numpy as np
import pytest
from keras import ops
from keras.src import testing
from keras.src.backend.common.masking import get_keras_mask

import attention_reference as ref
import helpers

from keras_attention.layers import BaseAttention

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """The same random inputs for a test however the suite is filtered."""
    global RNG
    RNG = np.random.default_rng(0)


def normal(*shape):
    return RNG.standard_normal(shape).astype("float32")


@keras.saving.register_keras_serializable(package="keras_attention_tests")
class MeanAttention(BaseAttention):
    """Uniform weights over the keys each query may see."""

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
        tq, tk = query.shape[1], key.shape[1]
        allowed = ops.ones((1, 1, tq, tk), "bool")
        if mask is not None:
            allowed = ops.logical_and(allowed, mask)
        if use_causal_mask:
            causal = ops.arange(tk)[None, :] <= ops.arange(tq)[:, None]
            allowed = ops.logical_and(allowed, causal)
        weights = ops.cast(allowed, value.dtype)
        weights = weights / ops.maximum(
            ops.sum(weights, -1, keepdims=True), 1.0
        )
        weights = ops.broadcast_to(
            weights, (ops.shape(query)[0], self.num_heads, tq, tk)
        )
        groups = self.num_heads // self.num_key_value_heads
        value = ops.repeat(value, groups, axis=2)
        out = ops.einsum("bhqk,bkhd->bqhd", weights, value)
        return out, (weights if return_attention_scores else None)


def mean_reference(q, k, v, allowed):
    """NumPy twin of `MeanAttention.attend` (float64)."""
    groups = q.shape[2] // k.shape[2]
    v = np.repeat(v, groups, axis=2)
    shape = (q.shape[0], q.shape[2], q.shape[1], k.shape[1])
    weights = np.broadcast_to(allowed, shape).astype("float64")
    weights = weights / np.maximum(weights.sum(-1, keepdims=True), 1.0)
    return np.einsum("bhqk,bkhd->bqhd", weights, v), weights


@keras.saving.register_keras_serializable(package="keras_attention_tests")
class TemperatureAttention(BaseAttention):
    """Softmax attention with a learned temperature (uses `build_attention`)."""

    def build_attention(self, query_shape, value_shape, key_shape):
        self.temperature = self.add_weight(
            name="temperature", shape=(), initializer="ones"
        )

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
        from keras_attention import ops as attention_ops

        scale = 1.0 / np.sqrt(self.key_dim)
        return attention_ops.dot_product_attention(
            query * ops.cast(self.temperature, query.dtype),
            key,
            value,
            mask=mask,
            is_causal=use_causal_mask,
            scale=scale,
            return_scores=True,
        )


class NoScores(MeanAttention):
    supports_attention_scores = False


class Recorder(MeanAttention):
    """Remembers what the shell hands to `attend()`."""

    def attend(self, query, key, value, mask=None, **kwargs):
        self.seen = {
            "query": tuple(query.shape),
            "key": tuple(key.shape),
            "value": tuple(value.shape),
            "mask": None if mask is None else tuple(mask.shape),
            "use_causal_mask": kwargs["use_causal_mask"],
        }
        return super().attend(query, key, value, mask=mask, **kwargs)


def make(cls, query, value, key=None, **init):
    layer = cls(**init)
    layer.build(query.shape, value.shape, None if key is None else key.shape)
    layer.set_weights(
        [0.3 * RNG.standard_normal(w.shape) for w in layer.get_weights()]
    )
    return layer


class TestConformance(testing.TestCase):
    def test_mean_attention(self):
        self.run_layer_test(
            MeanAttention,
            init_kwargs={
                "num_heads": 4,
                "key_dim": 3,
                "num_key_value_heads": 2,
            },
            input_shape={"query_shape": (2, 5, 8), "value_shape": (2, 7, 6)},
            call_kwargs={
                "use_causal_mask": True,
                "return_attention_scores": True,
            },
            expected_output_shape=((2, 5, 8), (2, 4, 5, 7)),
            expected_num_trainable_weights=8,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
            run_training_check=False,
        )

    def test_extra_weights_from_build_attention(self):
        self.run_layer_test(
            TemperatureAttention,
            init_kwargs={"num_heads": 2, "key_dim": 4, "use_bias": False},
            input_shape={"query_shape": (2, 5, 8), "value_shape": (2, 7, 6)},
            expected_output_shape=(2, 5, 8),
            expected_num_trainable_weights=5,
            supports_masking=True,
            run_training_check=False,
        )


def test_base_needs_attend():
    x = normal(2, 3, 4)
    with pytest.raises(
        NotImplementedError, match="BaseAttention must implement `attend\\(\\)`"
    ):
        BaseAttention(num_heads=2, key_dim=2)(x, x)


CASES = {
    # name: (init, query, value, key, call kwargs)
    "self": ({}, (2, 6, 8), None, None, {}),
    "gqa_cross_key": (
        {"num_key_value_heads": 2},
        (2, 5, 8),
        (2, 7, 6),
        (2, 7, 4),
        {},
    ),
    "mqa_value_dim_output_shape_causal": (
        {"num_key_value_heads": 1, "value_dim": 2, "output_shape": 3},
        (2, 6, 8),
        (2, 6, 6),
        None,
        {"use_causal_mask": True},
    ),
    "masks": (
        {"use_bias": False},
        (2, 5, 8),
        (2, 7, 6),
        None,
        {
            "attention_mask": RNG.random((2, 5, 7)) < 0.6,
            "query_mask": np.array([[1, 1, 1, 0, 0], [1] * 5], bool),
            "value_mask": np.array([[1, 1, 1, 1, 0, 0, 0], [1] * 7], bool),
        },
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_subclass_gets_projections_heads_and_masks_from_the_shell(case):
    init, q_shape, v_shape, k_shape, kwargs = CASES[case]
    query = normal(*q_shape)
    value = query if v_shape is None else normal(*v_shape)
    key = None if k_shape is None else normal(*k_shape)
    layer = make(
        MeanAttention, query, value, key, num_heads=4, key_dim=3, **init
    )
    want, want_weights = ref.multi_head(
        layer,
        query,
        value,
        key,
        allowed=kwargs.get("attention_mask"),
        use_causal_mask=kwargs.get("use_causal_mask", False),
        query_mask=kwargs.get("query_mask"),
        value_mask=kwargs.get("value_mask"),
        attend=mean_reference,
    )
    out, weights = layer(
        query, value, key, return_attention_scores=True, **kwargs
    )
    np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)
    np.testing.assert_allclose(ref.to_np(weights), want_weights, atol=1e-6)


def test_what_attend_receives():
    query, value, key = normal(2, 5, 8), normal(2, 7, 6), normal(2, 7, 4)
    layer = make(
        Recorder,
        query,
        value,
        key,
        num_heads=4,
        key_dim=3,
        value_dim=5,
        num_key_value_heads=2,
    )
    layer(query, value, key, use_causal_mask=True)
    assert layer.seen == {
        "query": (2, 5, 4, 3),
        "key": (2, 7, 2, 3),
        "value": (2, 7, 2, 5),
        "mask": None,  # causality is a flag, not a materialised mask
        "use_causal_mask": True,
    }
    layer(query, value, key, value_mask=np.ones((2, 7), bool))
    assert layer.seen["mask"] == (2, 1, 1, 7)
    layer(
        query,
        value,
        key,
        attention_mask=np.ones((5, 7), bool),
        value_mask=np.ones((2, 7), bool),
    )
    assert layer.seen["mask"] == (2, 1, 5, 7)
    layer(query, value, key, attention_mask=np.ones((2, 4, 5, 7), bool))
    assert layer.seen["mask"] == (2, 4, 5, 7)
    # Query masks never reach attend(): the shell zeroes those rows itself.
    layer(query, value, key, query_mask=np.zeros((2, 5), bool))
    assert layer.seen["mask"] is None


def test_attention_mask_with_one_query_row_holds_for_every_query():
    # A query axis of size 1 (`(batch, 1, Tv)`, `(1, Tv)`,
    # `(batch, heads, 1, Tv)`) is a key padding mask: the shell hands it on
    # as such, and every query gets what the same `value_mask` gives.
    query, value = normal(2, 5, 8), normal(2, 7, 6)
    layer = make(Recorder, query, value, num_heads=2, key_dim=3)
    keep = np.array([[1, 1, 0, 1, 0, 0, 1], [0, 1, 1, 1, 1, 1, 0]], bool)
    want, _ = ref.multi_head(
        layer, query, value, value_mask=keep, attend=mean_reference
    )
    for mask, seen in (
        (keep[:, None], (2, 1, 1, 7)),
        (keep[:, None, None], (2, 1, 1, 7)),
        (np.repeat(keep[:, None, None], 2, axis=1), (2, 2, 1, 7)),
    ):
        got = ref.to_np(layer(query, value, attention_mask=mask))
        assert layer.seen["mask"] == seen
        np.testing.assert_allclose(got, want, atol=1e-6)
    shared = keep[:1]
    want, _ = ref.multi_head(
        layer, query, value, value_mask=keep[[0, 0]], attend=mean_reference
    )
    got = ref.to_np(layer(query, value, attention_mask=shared))
    assert layer.seen["mask"] == (1, 1, 1, 7)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # Other sizes of the query axis are still refused.
    with pytest.raises(
        ValueError, match=r"`attention_mask` must have shape \(2, 5, 7\)"
    ):
        layer(query, value, attention_mask=np.ones((2, 2, 7), bool))


def test_keras_masks_padding_and_propagation():
    ids = np.array([[3, 1, 4, 0, 0], [1, 5, 9, 2, 6]])
    emb = keras.layers.Embedding(10, 8, mask_zero=True)
    x = emb(ids)
    layer = make(MeanAttention, x, x, num_heads=2, key_dim=4)
    out = layer(x, x)
    np.testing.assert_array_equal(ref.to_np(get_keras_mask(out)), ids > 0)
    out = ref.to_np(out)
    np.testing.assert_array_equal(out[0, 3:], 0.0)
    alone = ref.to_np(layer(emb(ids[:1, :3]), emb(ids[:1, :3])))
    np.testing.assert_allclose(out[0, :3], alone[0], atol=1e-6)


def test_build_attention_weights_train_and_save(tmp_path):
    query = keras.Input((5, 8))
    layer = TemperatureAttention(num_heads=2, key_dim=4, name="tempered")
    model = keras.Model(query, layer(query, query, use_causal_mask=True))
    assert "temperature" in [w.name for w in layer.weights]
    inputs = normal(2, 5, 8)
    layer.temperature.assign(2.5)
    # The temperature multiplies the queries: a plain softmax reference with
    # 2.5 times the query projection.
    want, _ = ref.multi_head(
        layer,
        inputs,
        inputs,
        use_causal_mask=True,
        attend=lambda q, k, v, m: ref.attention(2.5 * q, k, v, m),
    )
    np.testing.assert_allclose(ref.to_np(model(inputs)), want, atol=1e-5)
    restored = helpers.assert_keras_roundtrip(model, inputs, tmp_path)
    assert float(restored.get_layer("tempered").temperature.numpy()) == 2.5


def test_variants_without_weights_refuse_return_attention_scores():
    x = normal(2, 3, 4)
    layer = NoScores(num_heads=2, key_dim=2, name="plain")
    assert tuple(layer(x, x).shape) == (2, 3, 4)
    message = r"'plain' \(NoScores\) does not compute attention weights"
    with pytest.raises(ValueError, match=message):
        layer(x, x, return_attention_scores=True)
    with pytest.raises(ValueError, match=message):
        symbolic = keras.Input((3, 4))
        layer(symbolic, symbolic, return_attention_scores=True)


def test_get_config_round_trip_is_complete():
    layer = MeanAttention(
        num_heads=4,
        key_dim=3,
        value_dim=5,
        num_key_value_heads=2,
        dropout=0.1,
        use_bias=False,
        output_shape=7,
        kernel_initializer=keras.initializers.HeNormal(seed=2),
        bias_initializer="ones",
        kernel_regularizer=keras.regularizers.L2(0.01),
        bias_regularizer="l1",
        activity_regularizer="l2",
        kernel_constraint="non_neg",
        bias_constraint=keras.constraints.MaxNorm(2.0),
        seed=9,
        name="mean",
        dtype="mixed_bfloat16",
    )
    config = layer.get_config()
    clone = MeanAttention.from_config(config)
    assert clone.get_config() == config
    assert (clone.num_heads, clone.key_dim, clone.value_dim) == (4, 3, 5)
    assert (clone.num_key_value_heads, clone.output_dim, clone.seed) == (
        2,
        7,
        9,
    )
    assert isinstance(clone.kernel_initializer, keras.initializers.HeNormal)
    assert isinstance(clone.kernel_constraint, keras.constraints.NonNeg)
    assert clone.dtype_policy.name == "mixed_bfloat16"
    # Serialized under the registered name, found without custom_objects.
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert isinstance(revived, MeanAttention)
    assert revived.get_config() == config


def test_projection_options_reach_the_projections():
    x = normal(2, 5, 8)
    layer = MeanAttention(
        num_heads=2,
        key_dim=8,
        kernel_initializer=keras.initializers.GlorotUniform(seed=1),
        kernel_regularizer="l2",
        bias_regularizer="l2",
        activity_regularizer="l2",
        kernel_constraint="non_neg",
        bias_initializer="ones",
    )
    layer(x, x)
    dense = [
        layer.query_dense,
        layer.key_dense,
        layer.value_dense,
        layer.output_dense,
    ]
    kernels = [ref.to_np(d.kernel) for d in dense[:3]]
    # A seeded initializer still gives the projections different kernels,
    # and the same ones on every build.
    assert np.abs(kernels[0] - kernels[1]).max() > 1e-3
    assert np.abs(kernels[1] - kernels[2]).max() > 1e-3
    again = MeanAttention.from_config(layer.get_config())
    again(x, x)
    for a, b in zip(again.get_weights(), layer.get_weights()):
        np.testing.assert_array_equal(a, b)
    for d in dense:
        np.testing.assert_array_equal(ref.to_np(d.bias), 1.0)
        assert isinstance(d.kernel_constraint, keras.constraints.NonNeg)
    # 4 kernel + 4 bias regularizers, and the activity regularizer.
    assert len(layer.losses) == 9


def test_output_shapes():
    layer = MeanAttention(num_heads=2, key_dim=4, output_shape=3)
    assert layer.compute_output_shape((None, 5, 8), (None, 7, 6)) == (
        None,
        5,
        3,
    )
    out, scores = layer(
        keras.Input((5, 8)), keras.Input((7, 6)), return_attention_scores=True
    )
    assert tuple(out.shape) == (None, 5, 3)
    assert tuple(scores.shape) == (None, 2, 5, 7)


@pytest.mark.parametrize(
    "init, message",
    [
        (
            {"num_heads": True, "key_dim": 2},
            r"MeanAttention: `num_heads` must be a positive integer.*True",
        ),
        (
            {"num_heads": 2, "key_dim": 2.0},
            r"MeanAttention: `key_dim` must be a positive integer",
        ),
        (
            {"num_heads": 2, "key_dim": 2, "value_dim": 0},
            r"MeanAttention: `value_dim` must be a positive integer or None",
        ),
        (
            {"num_heads": 2, "key_dim": 2, "num_key_value_heads": 0},
            r"MeanAttention: `num_key_value_heads`",
        ),
        (
            {"num_heads": 6, "key_dim": 2, "num_key_value_heads": 4},
            r"MeanAttention: `num_key_value_heads` must divide `num_heads`",
        ),
        (
            {"num_heads": 2, "key_dim": 2, "dropout": "0.1"},
            r"MeanAttention: `dropout` must be a float in \[0, 1\)",
        ),
    ],
)
def test_argument_checks_name_the_subclass(init, message):
    with pytest.raises(ValueError, match=message):
        MeanAttention(**init)


def test_input_checks():
    layer = MeanAttention(num_heads=2, key_dim=2, name="mean")
    with pytest.raises(
        ValueError, match=r"'mean' \(MeanAttention\): `value` must have rank 3"
    ):
        layer(normal(2, 3, 4), normal(2, 3, 4, 1))
    with pytest.raises(
        ValueError,
        match=r"'mean' \(MeanAttention\): `value` must have the query's batch size",
    ):
        layer(normal(2, 3, 4), normal(3, 3, 4))
    with pytest.raises(
        ValueError,
        match=r"`attention_mask` must have shape \(batch, Tq, Tv\), \(Tq, Tv\) or",
    ):
        layer(
            normal(2, 3, 4), normal(2, 3, 4), attention_mask=np.ones((3,), bool)
        )
    with pytest.raises(
        ValueError, match=r"`key` must have a known last \(feature\) dimension"
    ):
        layer(keras.Input((3, 4)), keras.Input((3, 4)), keras.Input((3, None)))
