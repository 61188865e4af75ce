"""Tests for `keras_attention.layers.SpatioTemporalAttention`.

Expected numbers: NumPy float64 (`attention_reference.multi_head`) with the
inner layers' own weights, on x of shape (B, T, N, C):

    joint:      y = J(x over T*N tokens)   (block-causal in time if causal)
    divided:    u = x + T(x);  y = u + S(u) - x
    factorized: u = x + S(x);  y = u + T(u) - x
    padded frames (frame_mask) and tokens (Keras mask): never attended,
    output zeros.
"""


import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.backend.common.masking import set_keras_mask

import attention_reference as ref
import helpers

from keras_attention.layers.attention import registry
from keras_attention.layers.attention.spatiotemporal_attention import SpatioTemporalAttention


def normal(rng, *shape):
    return rng.standard_normal(shape).astype("float32")


def temporal_ref(layer, x, mask, causal):
    b, t, n, c = x.shape
    seq = x.transpose(0, 2, 1, 3).reshape(b * n, t, c)
    mask = None if mask is None else mask.transpose(0, 2, 1).reshape(b * n, t)
    out, _ = ref.multi_head(layer, seq, seq, use_causal_mask=causal, query_mask=mask, value_mask=mask)
    return out.reshape(b, n, t, c).transpose(0, 2, 1, 3)


def spatial_ref(layer, x, mask):
    b, t, n, c = x.shape
    seq = x.reshape(b * t, n, c)
    mask = None if mask is None else mask.reshape(b * t, n)
    out, _ = ref.multi_head(layer, seq, seq, query_mask=mask, value_mask=mask)
    return out.reshape(b, t, n, c)


def reference(layer, x, frame_mask=None, token_mask=None):
    """`frame_mask` (B, T) and/or `token_mask` (B, T, ...) of real tokens."""
    x = np.asarray(x, "float64")
    shape = x.shape
    b, t = shape[:2]
    x = x.reshape(b, t, -1, shape[-1])
    n = x.shape[2]
    mask = None
    if frame_mask is not None or token_mask is not None:
        mask = np.ones((b, t, n), bool)
        if frame_mask is not None:
            mask &= np.asarray(frame_mask, bool)[:, :, None]
        if token_mask is not None:
            mask &= np.asarray(token_mask, bool).reshape(b, t, -1)
    if layer.mode == "joint":
        seq = x.reshape(b, t * n, -1)
        frame = np.arange(t * n) // n
        allowed = (frame[None, :] <= frame[:, None])[None] if layer.causal else None
        flat = None if mask is None else mask.reshape(b, t * n)
        y, _ = ref.multi_head(layer.joint_attention, seq, seq, allowed=allowed, query_mask=flat, value_mask=flat)
        y = y.reshape(b, t, n, -1)
    elif layer.mode == "divided":
        u = x + temporal_ref(layer.temporal_attention, x, mask, layer.causal)
        y = u + spatial_ref(layer.spatial_attention, u, mask) - x
    else:
        u = x + spatial_ref(layer.spatial_attention, x, mask)
        y = u + temporal_ref(layer.temporal_attention, u, mask, layer.causal) - x
    if mask is not None:
        y = np.where(mask[..., None], y, 0.0)
    return y.reshape(shape)


@pytest.mark.parametrize("mode", ["joint", "divided", "factorized"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 2, 2, 6), (2, 3, 4, 6)])
def test_matches_numpy(mode, causal, shape):
    rng = np.random.default_rng(0)
    x = normal(rng, *shape)
    frame_mask = np.array([[True, True, False], [False, False, False]])
    layer = SpatioTemporalAttention(num_heads=2, key_dim=3, mode=mode, causal=causal)
    got = layer(x, frame_mask=frame_mask)
    np.testing.assert_allclose(ref.to_np(got), reference(layer, x, frame_mask), rtol=1e-4, atol=1e-5)
    assert np.all(ref.to_np(got)[1] == 0)  # a clip with no real frame
    # And without a mask.
    np.testing.assert_allclose(ref.to_np(layer(x)), reference(layer, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["joint", "divided", "factorized"])
def test_causal_in_time(mode):
    rng = np.random.default_rng(1)
    x = normal(rng, 1, 4, 3, 6)
    layer = SpatioTemporalAttention(num_heads=2, key_dim=3, mode=mode, causal=True)
    before = ref.to_np(layer(x))
    changed = x.copy()
    changed[:, 2:] += 5.0
    after = ref.to_np(layer(changed))
    np.testing.assert_allclose(after[:, :2], before[:, :2], atol=1e-5)
    assert np.abs(after[:, 2:] - before[:, 2:]).max() > 1e-3


@pytest.mark.parametrize("mode", ["joint", "divided", "factorized"])
def test_keras_token_mask(mode):
    # Embedding(mask_zero=True) on (B, T, N) token ids: padding tokens are
    # never attended and output zeros; frame_mask is combined with it.
    ids = np.array([[[1, 2, 0], [3, 0, 0]], [[0, 0, 0], [4, 5, 6]]])
    frame_mask = np.array([[True, True], [True, False]])
    tokens = keras.Input((2, 3), dtype="int32")
    frames = keras.Input((2,), dtype="bool")
    embedding = keras.layers.Embedding(7, 6, mask_zero=True)
    embedded = embedding(tokens)
    layer = SpatioTemporalAttention(2, 3, mode=mode, causal=True)
    model = keras.Model([tokens, frames], layer(embedded, frame_mask=frames))
    x = ref.to_np(embedding(ids))
    got = ref.to_np(model([ids, frame_mask]))
    expected = reference(layer, x, frame_mask, token_mask=ids != 0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.all(got[ids == 0] == 0) and np.all(got[1, 1] == 0)
    assert np.all(np.abs(got[ids != 0][:3]).sum(-1) > 0)


def test_keras_frame_mask():
    # A (B, T) Keras mask reads as a frame mask.
    rng = np.random.default_rng(6)
    x = tf.constant(normal(rng, 2, 3, 2, 2, 4))
    mask = np.array([[True, False, True], [False, False, False]])
    layer = SpatioTemporalAttention(2, 3)
    set_keras_mask(x, tf.constant(mask))
    got = ref.to_np(layer(x))
    np.testing.assert_allclose(got, reference(layer, ref.to_np(x), mask), rtol=1e-4, atol=1e-5)
    assert np.all(got[1] == 0) and np.all(got[0, 1] == 0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision(dtype):
    rng = np.random.default_rng(2)
    x = normal(rng, 2, 3, 4, 8)
    full = SpatioTemporalAttention(2, 4)
    low = SpatioTemporalAttention(2, 4, dtype=keras.DTypePolicy(f"mixed_{dtype}"))
    full(x), low(x)
    low.set_weights(full.get_weights())
    mask = np.array([[True, True, False], [False] * 3])
    got = ref.to_np(keras.ops.cast(low(x, frame_mask=mask), "float32"))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref.to_np(full(x, frame_mask=mask)), atol=0.1, rtol=0.05)


def test_gradients_and_scores():
    rng = np.random.default_rng(3)
    x = tf.constant(normal(rng, 2, 3, 4, 8))
    layer = SpatioTemporalAttention(2, 4, mode="divided")
    with tf.GradientTape() as tape:
        y, (temporal, spatial) = layer(x, return_attention_scores=True)
        loss = tf.reduce_sum(y**2)
    assert tuple(temporal.shape) == (8, 2, 3, 3) and tuple(spatial.shape) == (6, 2, 4, 4)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == 16
    for g in grads:
        assert g is not None and np.all(np.isfinite(ref.to_np(g)))
    joint = SpatioTemporalAttention(2, 4, mode="joint")
    _, weights = joint(x, return_attention_scores=True)
    assert tuple(weights.shape) == (2, 2, 12, 12)


@pytest.mark.parametrize("attention", ["linear", "regional"])
def test_other_inner_variants(attention):
    rng = np.random.default_rng(4)
    x = normal(rng, 2, 3, 4, 8)
    layer = SpatioTemporalAttention(2, 4, mode="factorized", attention=attention)
    y = ref.to_np(layer(x, frame_mask=np.array([[1, 1, 0], [1, 1, 1]], bool)))
    assert y.shape == x.shape and np.all(np.isfinite(y)) and np.all(y[0, 2] == 0)
    assert type(layer.temporal_attention).registry_name == attention


def test_video_model_xla_fit_save_export(tmp_path):
    frames = keras.Input((3, 2, 2, 4))
    x = keras.layers.Dense(8)(frames)
    x = x + SpatioTemporalAttention(2, 4, mode="divided", causal=True, dropout=0.1)(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    model = keras.Model(frames, keras.layers.Dense(2)(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    clips = normal(np.random.default_rng(5), 4, 3, 2, 2, 4)
    history = model.fit(clips, np.array([0, 1, 0, 1]), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    helpers.assert_keras_roundtrip(model, clips, tmp_path)
    helpers.assert_export_roundtrip(model, clips, tmp_path)


def test_registered_by_name_and_config():
    layer = registry.get("spatiotemporal", num_heads=2, key_dim=4, mode="joint", attention_kwargs={"position_encoding": "rope"})
    clone = SpatioTemporalAttention.from_config(layer.get_config())
    assert (clone.mode, clone.attention_kwargs) == ("joint", {"position_encoding": "rope"})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mode": "spatial"}, "SpatioTemporalAttention: `mode` must be one of"),
        ({"causal": 1}, "causal"),
        ({"attention": "nope"}, r"`attention` must be a registered attention variant, one of \['additive'"),
        ({"attention_kwargs": 3}, "attention_kwargs"),
        ({"dropout": 2.0}, "dropout"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpatioTemporalAttention(**{"num_heads": 2, "key_dim": 4, **kwargs})


def test_bad_inputs():
    layer = SpatioTemporalAttention(2, 4)
    with pytest.raises(ValueError, match="inputs.*rank 4.*or 5"):
        layer(np.zeros((2, 3, 4), "float32"))
    with pytest.raises(ValueError, match="inputs.*known frames"):
        SpatioTemporalAttention(2, 4).compute_output_shape((None, 3, None, 4, 8))
    with pytest.raises(ValueError, match="frame_mask"):
        layer(np.zeros((2, 3, 4, 8), "float32"), frame_mask=np.ones((2, 4), bool))
    masked = tf.zeros((2, 3, 4, 8))
    set_keras_mask(masked, tf.ones((2, 3, 5), bool))
    with pytest.raises(ValueError, match=r"`mask` must have shape \(2, 3, 4\)"):
        layer(masked)


