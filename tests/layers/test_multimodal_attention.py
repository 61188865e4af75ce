"""Tests for `keras_attention.layers.MultiModalAttention`.

Expected numbers: NumPy float64 (`attention_reference.multi_head`) with the
inner layers' own weights:

    cross:  a' = A_ab(a <- b)
    co:     a' = A_ab(a <- b), b' = A_ba(b <- a)
    merged: z = [a W_a + e_0 ; b W_b + e_1], z' = A(z <- z),
            a' = z'[:Ta] U_a, b' = z'[Ta:] U_b; padded tokens -> zeros
"""

import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

import attention_reference as ref
import helpers

from keras_attention.layers import multimodal_attention as module
from keras_attention.layers import registry
from keras_attention.layers.multimodal_attention import MultiModalAttention


def normal(rng, *shape):
    return rng.standard_normal(shape).astype("float32")


def dense(layer, x):
    return x @ ref.to_np(layer.kernel) + ref.to_np(layer.bias)


def reference(layer, a, b, a_mask, b_mask):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    if layer.mode == "cross":
        return ref.multi_head(layer.a_attention, a, b, query_mask=a_mask, value_mask=b_mask)[0]
    if layer.mode == "co":
        return (
            ref.multi_head(layer.a_attention, a, b, query_mask=a_mask, value_mask=b_mask)[0],
            ref.multi_head(layer.b_attention, b, a, query_mask=b_mask, value_mask=a_mask)[0],
        )
    e = ref.to_np(layer.modality_embedding)
    z = np.concatenate([dense(layer.a_in, a) + e[0], dense(layer.b_in, b) + e[1]], 1)
    mask = np.concatenate([a_mask, b_mask], 1)
    joint = ref.multi_head(layer.joint_attention, z, z, query_mask=mask, value_mask=mask)[0]
    ta = a.shape[1]
    a_new = np.where(a_mask[..., None], dense(layer.a_out, joint[:, :ta]), 0.0)
    b_new = np.where(b_mask[..., None], dense(layer.b_out, joint[:, ta:]), 0.0)
    return a_new, b_new


def _data(rng):
    a, b = normal(rng, 2, 4, 6), normal(rng, 2, 5, 10)
    a_mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    b_mask = np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], bool)  # example 1: no image
    return a, b, a_mask, b_mask


@pytest.mark.parametrize("mode", ["cross", "co", "merged"])
def test_matches_numpy_with_each_streams_mask(mode):
    rng = np.random.default_rng(0)
    a, b, a_mask, b_mask = _data(rng)
    layer = MultiModalAttention(num_heads=2, key_dim=3, mode=mode)
    got = layer(a, b, a_mask=a_mask, b_mask=b_mask)
    expected = reference(layer, a, b, a_mask, b_mask)
    for g, e in zip(helpers.as_list(got), helpers.as_list(expected)):
        g = ref.to_np(g)
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
    first = ref.to_np(helpers.as_list(got)[0])
    assert np.all(first[0, 3] == 0) and np.all(first[1, 2:] == 0)  # padded text tokens


def test_keras_masks_are_used_and_carried():
    rng = np.random.default_rng(1)
    text_ids = keras.Input((4,), dtype="int32")
    image = keras.Input((5, 10))
    text = keras.layers.Embedding(20, 6, mask_zero=True)(text_ids)
    a_new, b_new = MultiModalAttention(2, 3, mode="co")(text, image)
    pooled = keras.layers.GlobalAveragePooling1D()(a_new)  # honours a's mask
    model = keras.Model([text_ids, image], [pooled, b_new])
    ids = np.array([[3, 4, 0, 0], [5, 0, 0, 0]], "int32")
    images = normal(rng, 2, 5, 10)
    p1, b1 = model([ids, images])
    ids2 = ids.copy()
    ids2[0, 2:] = 0
    p2, _ = model([ids2, images])
    np.testing.assert_allclose(ref.to_np(p1), ref.to_np(p2), atol=1e-6)
    # Image tokens never read padded text: changing the embedding of the
    # padding id changes nothing.
    emb = model.layers[1] if isinstance(model.layers[1], keras.layers.Embedding) else model.layers[2]
    weights = emb.get_weights()
    weights[0][0] += 3.0
    emb.set_weights(weights)
    np.testing.assert_allclose(ref.to_np(model([ids, images])[1]), ref.to_np(b1), atol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision(dtype):
    rng = np.random.default_rng(2)
    a, b, a_mask, b_mask = _data(rng)
    full = MultiModalAttention(2, 4, mode="merged")
    low = MultiModalAttention(2, 4, mode="merged", dtype=keras.DTypePolicy(f"mixed_{dtype}"))
    full(a, b), low(a, b)
    low.set_weights(full.get_weights())
    for g, e in zip(low(a, b, a_mask=a_mask, b_mask=b_mask), full(a, b, a_mask=a_mask, b_mask=b_mask)):
        g = ref.to_np(keras.ops.cast(g, "float32"))
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, ref.to_np(e), atol=0.1, rtol=0.05)


@pytest.mark.parametrize("mode", ["cross", "co", "merged"])
def test_gradients_and_scores(mode):
    rng = np.random.default_rng(3)
    a, b, a_mask, b_mask = _data(rng)
    layer = MultiModalAttention(2, 4, mode=mode)
    with tf.GradientTape() as tape:
        out, scores = layer(a, b, a_mask=a_mask, b_mask=b_mask, return_attention_scores=True)
        loss = sum(tf.reduce_sum(o**2) for o in helpers.as_list(out))
    shapes = [tuple(s.shape) for s in helpers.as_list(scores)]
    assert shapes == {"cross": [(2, 2, 4, 5)], "co": [(2, 2, 4, 5), (2, 2, 5, 4)], "merged": [(2, 2, 9, 9)]}[mode]
    for weight, g in zip(layer.trainable_weights, tape.gradient(loss, layer.trainable_weights)):
        assert g is not None and np.all(np.isfinite(ref.to_np(g))), weight.path


@pytest.mark.parametrize("attention", ["linear", "low_rank"])
def test_other_inner_variants(attention):
    rng = np.random.default_rng(4)
    a, b, a_mask, b_mask = _data(rng)
    layer = MultiModalAttention(2, 4, mode="co", attention=attention)
    a_new, b_new = layer(a, b, a_mask=a_mask, b_mask=b_mask)
    assert a_new.shape == a.shape and b_new.shape == b.shape
    assert np.all(np.isfinite(ref.to_np(a_new))) and np.all(ref.to_np(a_new)[1, 2:] == 0)


def test_block_regional_inner_variant_gets_no_window_default():
    rng = np.random.default_rng(5)
    a, b, a_mask, b_mask = _data(rng)
    layer = MultiModalAttention(2, 4, mode="merged", attention="regional", attention_kwargs={"mode": "block", "region_size": 3})
    a_new, b_new = layer(a, b, a_mask=a_mask, b_mask=b_mask)
    assert a_new.shape == a.shape and b_new.shape == b.shape
    assert np.all(np.isfinite(ref.to_np(a_new)))
    assert layer.joint_attention.window_size is None


def test_incompatible_inner_variant_is_a_clear_error():
    # Additive attention returns the value's feature size (10), which cannot
    # update the 6-feature text stream.
    rng = np.random.default_rng(5)
    a, b, _, _ = _data(rng)
    layer = MultiModalAttention(2, 4, mode="cross", attention="additive")
    with pytest.raises(ValueError, match=r"MultiModalAttention: attention='additive' cannot"):
        layer(a, b)


def test_two_input_model_xla_fit_save_export(tmp_path):
    text, image = keras.Input((4, 6)), keras.Input((5, 10))
    a_new, b_new = MultiModalAttention(2, 4, mode="merged", dropout=0.1)(text, image)
    pooled = keras.layers.Concatenate()([
        keras.layers.GlobalAveragePooling1D()(text + a_new),
        keras.layers.GlobalAveragePooling1D()(image + b_new),
    ])
    model = keras.Model([text, image], keras.layers.Dense(2)(pooled))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    rng = np.random.default_rng(6)
    x = [normal(rng, 4, 4, 6), normal(rng, 4, 5, 10)]
    history = model.fit(x, np.array([0, 1, 1, 0]), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    helpers.assert_keras_roundtrip(model, x, tmp_path)
    helpers.assert_export_roundtrip(model, x, tmp_path)


def test_registered_by_name_and_config():
    layer = registry.get("multimodal", num_heads=2, key_dim=4, mode="merged", hidden_dim=12)
    clone = MultiModalAttention.from_config(layer.get_config())
    assert (clone.mode, clone.hidden_dim) == ("merged", 12)
    assert "multimodal" not in registry.available()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mode": "late"}, "MultiModalAttention: `mode` must be one of"),
        ({"attention": "spatiotemporal"}, "`attention` must be a registered attention variant"),
        ({"hidden_dim": 0}, "hidden_dim"),
        ({"attention_kwargs": []}, "attention_kwargs"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiModalAttention(**{"num_heads": 2, "key_dim": 4, **kwargs})


def test_bad_inputs():
    layer = MultiModalAttention(2, 4)
    with pytest.raises(ValueError, match="`a` must have rank 3"):
        layer(np.zeros((2, 4), "float32"), np.zeros((2, 3, 5), "float32"))
    with pytest.raises(ValueError, match="`b` must have the batch size of `a`"):
        layer(np.zeros((2, 4, 6), "float32"), np.zeros((3, 3, 5), "float32"))
    with pytest.raises(ValueError, match="b_mask"):
        layer(np.zeros((2, 4, 6), "float32"), np.zeros((2, 3, 5), "float32"), b_mask=np.ones((2, 4), bool))


def test_docstring_example():
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(module, globs={"keras": keras, "MultiModalAttention": MultiModalAttention}):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0
