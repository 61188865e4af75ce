"""Tests for `keras_attention.layers.ScaledDotProductAttention`.

Expected numbers: the single-head NumPy formula of `attention_reference.py`
(`softmax(q k^T * scale, masked) v`, float64), and `keras.layers.Attention`,
which computes the unscaled (`scale=1`) dot-product form.
"""

import keras
import numpy as np
import pytest
from keras.src import testing
from keras.src.backend.common.masking import get_keras_mask

import attention_reference as ref
import helpers

from keras_attention.layers import ScaledDotProductAttention

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """The same random inputs for a test however the suite is filtered."""
    global RNG
    RNG = np.random.default_rng(0)


def normal(*shape):
    return RNG.standard_normal(shape).astype("float32")


def single_head(
    query, value, key=None, allowed=None, scale=None, query_mask=None
):
    """NumPy reference on `(batch, T, dim)`; `allowed`: `(batch|1, Tq, Tv)`."""
    key = value if key is None else key
    if allowed is not None:
        allowed = np.asarray(allowed, bool)[:, None]  # a heads axis
    out, weights = ref.attention(
        query[:, :, None], key[:, :, None], value[:, :, None], allowed, scale
    )
    out, weights = out[:, :, 0], weights[:, 0]
    if query_mask is not None:
        out = np.where(query_mask[..., None], out, 0.0)
        weights = np.where(query_mask[..., None], weights, 0.0)
    return out, weights


def _some_true_mask(b, tq, tk):
    mask = RNG.random((b, tq, tk)) < 0.5
    mask[:, np.arange(tq), np.arange(tq) % tk] = True
    return mask


class TestConformance(testing.TestCase):
    def test_cross_attention_with_key(self):
        self.run_layer_test(
            ScaledDotProductAttention,
            init_kwargs={"scale": 0.5},
            input_shape={
                "query_shape": (2, 5, 8),
                "value_shape": (2, 7, 3),
                "key_shape": (2, 7, 8),
            },
            expected_output_shape=(2, 5, 3),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=True,
            run_training_check=False,
        )

    def test_scores_causal_dropout(self):
        self.run_layer_test(
            ScaledDotProductAttention,
            init_kwargs={"dropout": 0.5, "seed": 3},
            input_shape={"query_shape": (2, 6, 4), "value_shape": (2, 6, 4)},
            call_kwargs={
                "use_causal_mask": True,
                "return_attention_scores": True,
                "training": True,
            },
            expected_output_shape=((2, 6, 4), (2, 6, 6)),
            supports_masking=True,
            run_training_check=False,
        )


IMPLEMENTATIONS = ["exact", "chunked"]

CASES = {
    # name: (init, query, value, key, call kwargs)
    "self": ({}, (2, 6, 4), None, None, {}),
    "cross_value_dim": ({}, (2, 5, 4), (2, 7, 3), (2, 7, 4), {}),
    "separate_key": ({}, (2, 5, 4), (2, 7, 3), (2, 7, 4), {}),
    "scale": ({"scale": 0.3}, (2, 5, 4), (2, 7, 3), (2, 7, 4), {}),
    "causal": ({}, (2, 6, 4), None, None, {"use_causal_mask": True}),
    "causal_cross": ({}, (2, 6, 4), (2, 4, 4), None, {"use_causal_mask": True}),
    "attention_mask": (
        {},
        (2, 5, 4),
        (2, 7, 4),
        None,
        {"attention_mask": _some_true_mask(2, 5, 7)},
    ),
    "attention_mask_2d_causal": (
        {"scale": 2.0},
        (2, 6, 4),
        None,
        None,
        {
            "attention_mask": _some_true_mask(1, 6, 6)[0],
            "use_causal_mask": True,
        },
    ),
    "value_and_query_masks": (
        {},
        (2, 5, 4),
        (2, 7, 4),
        None,
        {
            "query_mask": np.array([[1, 1, 1, 0, 0], [1] * 5], bool),
            "value_mask": np.array(
                [[1, 1, 0, 0, 0, 0, 0], [1] * 6 + [0]], bool
            ),
        },
    ),
}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", CASES)
def test_matches_numpy_reference(case, implementation):
    init, q_shape, v_shape, k_shape, kwargs = CASES[case]
    query = normal(*q_shape)
    value = query if v_shape is None else normal(*v_shape)
    key = None if k_shape is None else normal(*k_shape)
    tq, tv = query.shape[1], value.shape[1]
    allowed = np.ones((1, tq, tv), bool)
    if "attention_mask" in kwargs:
        allowed = allowed & kwargs["attention_mask"]
    if kwargs.get("use_causal_mask"):
        allowed = allowed & ref.causal(tq, tv)
    if "value_mask" in kwargs:
        allowed = allowed & kwargs["value_mask"][:, None, :]
    want, want_scores = single_head(
        query, value, key, allowed, init.get("scale"), kwargs.get("query_mask")
    )
    layer = ScaledDotProductAttention(implementation=implementation, **init)
    got = layer(query, value, key, **kwargs)
    assert tuple(got.shape) == want.shape
    np.testing.assert_allclose(ref.to_np(got), want, atol=1e-5)
    if implementation == "exact":
        out, scores = layer(
            query, value, key, return_attention_scores=True, **kwargs
        )
        assert tuple(scores.shape) == want_scores.shape
        np.testing.assert_allclose(ref.to_np(scores), want_scores, atol=1e-6)
        np.testing.assert_allclose(ref.to_np(out), want, atol=1e-5)


def test_default_scale_is_one_over_sqrt_dim():
    query, value = normal(2, 5, 9), normal(2, 6, 9)
    default = ref.to_np(ScaledDotProductAttention()(query, value))
    explicit = ref.to_np(ScaledDotProductAttention(scale=1 / 3)(query, value))
    np.testing.assert_allclose(default, explicit, atol=1e-6)
    assert (
        np.abs(
            default
            - ref.to_np(ScaledDotProductAttention(scale=1.0)(query, value))
        ).max()
        > 1e-3
    )


@pytest.mark.parametrize("use_causal_mask", [False, True])
def test_matches_keras_attention_with_unit_scale(use_causal_mask):
    # keras.layers.Attention (dot scores, no scale) with Keras masks.
    q_ids = np.array([[3, 1, 4, 1, 0], [5, 9, 2, 6, 5]])
    v_ids = np.array([[2, 7, 1, 8, 2, 8], [1, 8, 2, 0, 0, 0]])
    emb = keras.layers.Embedding(10, 4, mask_zero=True)
    query, value, key = emb(q_ids), normal(2, 6, 3), emb(v_ids)
    q_mask, v_mask = q_ids > 0, v_ids > 0
    want = keras.layers.Attention()(
        [query, value, key],
        mask=[q_mask, v_mask],
        use_causal_mask=use_causal_mask,
    )
    got = ScaledDotProductAttention(scale=1.0)(
        query,
        value,
        key,
        query_mask=q_mask,
        value_mask=v_mask,
        use_causal_mask=use_causal_mask,
    )
    np.testing.assert_allclose(ref.to_np(got), ref.to_np(want), atol=1e-5)


# --------------------------------------------------------------------------
# Keras masks
# --------------------------------------------------------------------------
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("use_causal_mask", [False, True])
def test_padding_changes_nothing_else(implementation, use_causal_mask):
    ids = [[3, 1, 4], [1, 5, 9, 2, 6]]
    emb = keras.layers.Embedding(10, 4, mask_zero=True)
    padded = np.array([r + [0] * (7 - len(r)) for r in ids])
    layer = ScaledDotProductAttention(implementation=implementation)
    kwargs = {"use_causal_mask": use_causal_mask}
    x = emb(padded)
    batch = ref.to_np(layer(x, x, **kwargs))
    for i, row in enumerate(ids):
        x = emb(np.array([row]))
        alone = ref.to_np(layer(x, x, **kwargs))
        np.testing.assert_allclose(batch[i, : len(row)], alone[0], atol=1e-5)
        np.testing.assert_array_equal(batch[i, len(row) :], 0.0)


def test_output_carries_the_query_mask():
    q_ids = np.array([[3, 1, 4, 0, 0], [1, 5, 9, 2, 0]])
    v_ids = np.array([[2, 7, 0, 0], [1, 8, 2, 8]])
    emb = keras.layers.Embedding(10, 4, mask_zero=True)
    layer = ScaledDotProductAttention()
    out = layer(emb(q_ids), emb(v_ids))
    np.testing.assert_array_equal(ref.to_np(get_keras_mask(out)), q_ids > 0)

    q_in = keras.Input((None,), dtype="int32")
    v_in = keras.Input((None,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(layer(emb(q_in), emb(v_in)))
    model = keras.Model([q_in, v_in], pooled)
    real = (q_ids > 0)[..., None]
    expected = (ref.to_np(out) * real).sum(1) / real.sum(1)
    np.testing.assert_allclose(
        ref.to_np(model([q_ids, v_ids])), expected, atol=1e-6
    )


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_fully_masked_rows_are_finite_zeros(implementation):
    query, value = normal(2, 4, 4), normal(2, 5, 4)
    attention_mask = np.ones((2, 4, 5), bool)
    attention_mask[0, 2] = False
    value_mask = np.ones((2, 5), bool)
    value_mask[1] = False  # example 1 has no values at all
    layer = ScaledDotProductAttention(implementation=implementation)
    out = ref.to_np(
        layer(
            query, value, attention_mask=attention_mask, value_mask=value_mask
        )
    )
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[0, 2], 0.0)
    np.testing.assert_array_equal(out[1], 0.0)
    assert np.abs(out[0, [0, 1, 3]]).min() > 0


# --------------------------------------------------------------------------
# Dtypes, dropout, models
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "policy, atol", [("mixed_float16", 1e-2), ("mixed_bfloat16", 5e-2)]
)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_mixed_precision_close_to_float32(policy, atol, implementation):
    query, value = normal(2, 6, 8), normal(2, 6, 8)
    mask = _some_true_mask(2, 6, 6)
    mask[1, 3] = False  # nothing to attend to
    kwargs = {"attention_mask": mask, "use_causal_mask": True}
    layer = ScaledDotProductAttention(
        implementation=implementation, dtype=policy
    )
    got = layer(query, value, **kwargs)
    assert keras.backend.standardize_dtype(got.dtype) == policy.split("_")[1]
    want = ref.to_np(
        ScaledDotProductAttention(implementation=implementation)(
            query, value, **kwargs
        )
    )
    got = ref.to_np(got)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[1, 3], 0.0)
    np.testing.assert_allclose(got, want, atol=atol, rtol=atol)


def test_dropout_only_in_training():
    query, value = normal(2, 6, 4), normal(2, 7, 4)
    want = ref.to_np(ScaledDotProductAttention()(query, value))
    layer = ScaledDotProductAttention(dropout=0.5, seed=1)
    for training in (None, False):
        np.testing.assert_allclose(
            ref.to_np(layer(query, value, training=training)), want, atol=1e-6
        )
    trained = ref.to_np(layer(query, value, training=True))
    assert np.isfinite(trained).all()
    assert np.abs(trained - want).max() > 1e-3


def test_in_sequential_and_saved(tmp_path):
    # Self-attention as a single-input functional sub-model.
    x = keras.Input((6, 4))
    block = keras.Model(
        x, ScaledDotProductAttention(scale=0.7)(x, x, use_causal_mask=True)
    )
    model = keras.Sequential([keras.Input((6, 4)), block])
    inputs = normal(3, 6, 4)
    want, _ = single_head(
        inputs, inputs, allowed=ref.causal(6, 6)[None], scale=0.7
    )
    np.testing.assert_allclose(ref.to_np(model(inputs)), want, atol=1e-5)
    helpers.assert_keras_roundtrip(model, inputs, tmp_path)


def test_get_config_and_output_shapes():
    layer = ScaledDotProductAttention(
        scale=0.25, dropout=0.1, implementation="exact", seed=5, name="sdpa"
    )
    config = layer.get_config()
    assert {
        k: config[k] for k in ("scale", "dropout", "implementation", "seed")
    } == {
        "scale": 0.25,
        "dropout": 0.1,
        "implementation": "exact",
        "seed": 5,
    }
    assert ScaledDotProductAttention.from_config(config).get_config() == config
    assert layer.compute_output_shape(
        (None, 3, 8), (None, 4, 5), (None, 4, 8)
    ) == (
        None,
        3,
        5,
    )
    out, scores = layer(
        keras.Input((3, 8)),
        keras.Input((4, 5)),
        keras.Input((4, 8)),
        return_attention_scores=True,
    )
    assert tuple(out.shape) == (None, 3, 5)
    assert tuple(scores.shape) == (None, 3, 4)


@pytest.mark.parametrize(
    "init, message",
    [
        (
            {"dropout": 1.5},
            r"ScaledDotProductAttention: `dropout` must be a float in \[0, 1\).*dropout=1.5",
        ),
        (
            {"scale": "big"},
            r"ScaledDotProductAttention: `scale` must be None or a number.*'big'",
        ),
        (
            {"implementation": "flash"},
            r"ScaledDotProductAttention: `implementation` must be None or one of.*'flash'",
        ),
        (
            {"implementation": "chunked", "dropout": 0.2},
            r"ScaledDotProductAttention: `implementation='chunked'` has no attention dropout",
        ),
    ],
)
def test_bad_arguments(init, message):
    with pytest.raises(ValueError, match=message):
        ScaledDotProductAttention(**init)


def test_bad_inputs():
    q, v = normal(2, 5, 4), normal(2, 7, 4)
    prefix = r"'sdpa' \(ScaledDotProductAttention\): "
    for built in (False, True):
        layer = ScaledDotProductAttention(name="sdpa")
        if built:
            layer(q, v)
        with pytest.raises(
            ValueError, match=prefix + r"`query` must have rank 3.*\(2, 4\)"
        ):
            layer(normal(2, 4), v)
        with pytest.raises(
            ValueError,
            match=prefix + r"`key` must have the query's feature size \(4\)",
        ):
            layer(q, v, key=normal(2, 7, 3))
        with pytest.raises(
            ValueError,
            match=prefix + r"`key` must have as many positions as `value`",
        ):
            layer(q, v, key=normal(2, 6, 4))
    with pytest.raises(
        ValueError,
        match=prefix + r"`attention_mask` must have shape \(2, 5, 7\)",
    ):
        layer(q, v, attention_mask=np.ones((2, 7, 5), bool))
    with pytest.raises(
        ValueError, match=prefix + r"`query_mask` must have shape \(2, 5\)"
    ):
        layer(q, v, query_mask=np.ones((2, 7), bool))
