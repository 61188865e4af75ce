"""Tests for `keras_attention.layers.MultiModalAttention`.

Expected numbers: NumPy float64 (`attention_reference.multi_head`: softmax
attention with the padding masks; `linear_reference` for the "linear" inner
variant) with the inner layers' own weights:

    cross:  a' = A_ab(a <- b)
    co:     a' = A_ab(a <- b), b' = A_ba(b <- a)
    merged: z = [a W_a + e_0 ; b W_b + e_1], z' = A(z <- z),
            a' = z'[:Ta] U_a, b' = z'[Ta:] U_b; padded tokens -> zeros
"""


import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.backend.common.masking import get_keras_mask

import attention_reference as ref
import helpers
import linear_reference as lin

from keras_attention.layers.attention import registry
from keras_attention.layers.attention.multimodal_attention import MultiModalAttention

MODES = ["cross", "co", "merged"]


def normal(rng, *shape):
    return rng.standard_normal(shape).astype("float32")


def dense(layer, x):
    return x @ ref.to_np(layer.kernel) + ref.to_np(layer.bias)


def reference(layer, a, b, a_mask, b_mask, attend=None):
    """`(outputs, weights)` in the layer's own structure (see the module
    docstring); `attend` replaces the softmax core of the inner layers."""
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    a_mask = np.ones(a.shape[:2], bool) if a_mask is None else a_mask
    b_mask = np.ones(b.shape[:2], bool) if b_mask is None else b_mask

    def attention(inner, q, v, q_mask, v_mask):
        q_mask = q_mask & v_mask.any(1)[:, None]  # nothing to read: zeros
        return ref.multi_head(inner, q, v, query_mask=q_mask, value_mask=v_mask, attend=attend)

    if layer.mode == "cross":
        return attention(layer.a_attention, a, b, a_mask, b_mask)
    if layer.mode == "co":
        a_new, w_ab = attention(layer.a_attention, a, b, a_mask, b_mask)
        b_new, w_ba = attention(layer.b_attention, b, a, b_mask, a_mask)
        return (a_new, b_new), (w_ab, w_ba)
    e = ref.to_np(layer.modality_embedding)
    z = np.concatenate([dense(layer.a_in, a) + e[0], dense(layer.b_in, b) + e[1]], 1)
    mask = np.concatenate([a_mask, b_mask], 1)
    joint, weights = attention(layer.joint_attention, z, z, mask, mask)
    ta = a.shape[1]
    a_new = np.where(a_mask[..., None], dense(layer.a_out, joint[:, :ta]), 0.0)
    b_new = np.where(b_mask[..., None], dense(layer.b_out, joint[:, ta:]), 0.0)
    return (a_new, b_new), weights


def flat(x):
    return [ref.to_np(keras.ops.cast(t, "float32")) for t in tf.nest.flatten(x)]


def assert_close(got, expected, **tolerance):
    got, expected = flat(got), tf.nest.flatten(expected)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, e, **tolerance)


def _data(rng):
    a, b = normal(rng, 2, 4, 6), normal(rng, 2, 5, 10)
    a_mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    b_mask = np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], bool)  # example 1: no image
    return a, b, a_mask, b_mask


@pytest.mark.parametrize("masked", [True, False], ids=["masks", "no_masks"])
@pytest.mark.parametrize("mode", MODES)
def test_matches_numpy(mode, masked):
    rng = np.random.default_rng(0)
    a, b, a_mask, b_mask = _data(rng)
    if not masked:
        a_mask = b_mask = None
    # Nonzero biases: padded tokens must be zeroed after the projections.
    layer = MultiModalAttention(num_heads=2, key_dim=3, mode=mode, bias_initializer="random_normal")
    got = layer(a, b, a_mask=a_mask, b_mask=b_mask, return_attention_scores=True)
    assert_close(got, reference(layer, a, b, a_mask, b_mask), rtol=1e-4, atol=1e-5)
    outputs = flat(got[0])
    if not masked:
        assert all(np.all(o != 0) for o in outputs)
        return
    assert np.all(outputs[0][0, 3] == 0) and np.all(outputs[0][1, 2:] == 0)  # padded text
    if mode in ("cross", "co"):
        # Example 1 has no image tokens: its text has nothing to attend to.
        assert np.all(outputs[0][1] == 0) and np.all(outputs[0][0, :3] != 0)
    if mode in ("co", "merged"):
        assert np.all(outputs[1][1] == 0) and np.all(outputs[1][0, 2:] == 0)  # padded image
        assert np.all(outputs[1][0, :2] != 0)
    if mode == "merged":
        # The joint weights: padded rows are zeros, real rows sum to one
        # over real tokens of both streams.
        weights = flat(got[1])[0]
        joint_mask = np.concatenate([a_mask, b_mask], 1)
        np.testing.assert_allclose(weights.sum(-1), np.broadcast_to(joint_mask[:, None], weights.shape[:3]), atol=1e-5)
        assert np.all(weights[..., ~joint_mask[0]][0] == 0)


@pytest.mark.parametrize("mode", MODES)
def test_output_streams_carry_their_keras_masks(mode):
    # Functional: the symbolic outputs carry both streams' masks.
    ids_a, ids_b = keras.Input((4,), dtype="int32"), keras.Input((5,), dtype="int32")
    a = keras.layers.Embedding(20, 6, mask_zero=True)(ids_a)
    b = keras.layers.Embedding(20, 10, mask_zero=True)(ids_b)
    out = helpers.as_list(MultiModalAttention(2, 3, mode=mode)(a, b))
    assert all(get_keras_mask(o) is not None for o in out)
    # Eager: each output stream gets its own mask (explicit or Keras), and
    # the caller's tensors keep theirs.
    emb_a = keras.layers.Embedding(20, 6, mask_zero=True)
    emb_b = keras.layers.Embedding(20, 10, mask_zero=True)
    ids_a = np.array([[1, 2, 0, 0], [3, 0, 0, 0]], "int32")
    ids_b = np.array([[1, 0, 0, 0, 0], [4, 5, 6, 0, 0]], "int32")
    a, b = emb_a(ids_a), emb_b(ids_b)
    explicit = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
    for a_mask, expected_a in ((None, ids_a != 0), (explicit, explicit)):
        out = helpers.as_list(MultiModalAttention(2, 3, mode=mode)(a, b, a_mask=a_mask))
        expected = [expected_a, ids_b != 0][: len(out)]
        for o, e in zip(out, expected):
            np.testing.assert_array_equal(ref.to_np(get_keras_mask(o)), e)
        np.testing.assert_array_equal(ref.to_np(get_keras_mask(a)), ids_a != 0)
        np.testing.assert_array_equal(ref.to_np(get_keras_mask(b)), ids_b != 0)


def test_keras_masks_are_used():
    rng = np.random.default_rng(1)
    text_ids = keras.Input((4,), dtype="int32")
    image = keras.Input((5, 10))
    embedding = keras.layers.Embedding(20, 6, mask_zero=True)
    a_new, b_new = MultiModalAttention(2, 3, mode="co")(embedding(text_ids), image)
    pooled = keras.layers.GlobalAveragePooling1D()(a_new)  # honours a's mask
    model = keras.Model([text_ids, image], [pooled, b_new])
    ids = np.array([[3, 4, 0, 0], [5, 0, 0, 0]], "int32")
    images = normal(rng, 2, 5, 10)
    pooled_1, b_1 = model([ids, images])
    # Image tokens never read padded text: moving the embedding of the
    # padding id changes nothing.
    weights = embedding.get_weights()
    weights[0][0] += 3.0
    embedding.set_weights(weights)
    pooled_2, b_2 = model([ids, images])
    np.testing.assert_allclose(ref.to_np(b_2), ref.to_np(b_1), atol=1e-5)
    np.testing.assert_allclose(ref.to_np(pooled_2), ref.to_np(pooled_1), atol=1e-5)
    assert np.all(ref.to_np(pooled_1) != 0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("mode", MODES)
def test_low_precision(mode, dtype):
    rng = np.random.default_rng(2)
    a, b, a_mask, b_mask = _data(rng)
    full = MultiModalAttention(2, 4, mode=mode)
    low = MultiModalAttention(2, 4, mode=mode, dtype=keras.DTypePolicy(f"mixed_{dtype}"))
    full(a, b), low(a, b)
    low.set_weights(full.get_weights())
    got = low(a, b, a_mask=a_mask, b_mask=b_mask)
    assert all(t.dtype == dtype for t in tf.nest.flatten(got))
    assert_close(got, reference(full, a, b, a_mask, b_mask)[0], atol=0.05, rtol=0.05)
    assert np.all(flat(got)[0][1, 2:] == 0)  # padded rows exactly zero


@pytest.mark.parametrize("mode", MODES)
def test_gradients(mode):
    rng = np.random.default_rng(3)
    a, b, a_mask, b_mask = _data(rng)
    a, b = tf.constant(a), tf.constant(b)
    layer = MultiModalAttention(2, 4, mode=mode)
    with tf.GradientTape() as tape:
        tape.watch([a, b])
        out = layer(a, b, a_mask=a_mask, b_mask=b_mask)
        loss = sum(tf.reduce_sum(o**2) for o in helpers.as_list(out))
    grads = tape.gradient(loss, [a, b] + layer.trainable_weights)
    for weight, g in zip(layer.trainable_weights, grads[2:]):
        g = ref.to_np(g)
        assert np.all(np.isfinite(g)) and np.any(g != 0), weight.path
    grad_a, grad_b = ref.to_np(grads[0]), ref.to_np(grads[1])
    # Padded tokens are never read: no gradient reaches them.
    np.testing.assert_array_equal(grad_a[~a_mask], 0.0)
    np.testing.assert_array_equal(grad_b[~b_mask], 0.0)
    assert np.all(np.abs(grad_b[b_mask]).sum(-1) > 0)


@pytest.mark.parametrize("mode", MODES)
def test_xla_matches_eager(mode):
    rng = np.random.default_rng(7)
    a, b, a_mask, b_mask = _data(rng)
    layer = MultiModalAttention(2, 4, mode=mode)
    eager = layer(a, b, a_mask=a_mask, b_mask=b_mask, return_attention_scores=True)

    @tf.function(jit_compile=True)
    def compiled(a, b, a_mask, b_mask):
        return layer(a, b, a_mask=a_mask, b_mask=b_mask, return_attention_scores=True)

    assert_close(compiled(a, b, a_mask, b_mask), flat(eager), rtol=1e-5, atol=1e-5)


def _linear_attend(layer):
    def attend(q, k, v, allowed):
        return lin.linear_attention(q, k, v, layer.feature_map, allowed=allowed, eps=layer.epsilon)

    return attend


@pytest.mark.parametrize("mode", MODES)
def test_linear_inner_variant_matches_numpy(mode):
    rng = np.random.default_rng(4)
    a, b, a_mask, b_mask = _data(rng)
    layer = MultiModalAttention(2, 4, mode=mode, attention="linear")
    got = layer(a, b, a_mask=a_mask, b_mask=b_mask)
    inner = layer.joint_attention if mode == "merged" else layer.a_attention
    assert type(inner).__name__ == "LinearAttention"
    expected = reference(layer, a, b, a_mask, b_mask, attend=_linear_attend(inner))[0]
    assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_low_rank_inner_variant_scores_shape_in_a_functional_model():
    # Linformer weights cover the `rank` compressed keys, not the tokens:
    # the symbolic scores take the inner variant's shape.
    text, image = keras.Input((4, 6), batch_size=2), keras.Input((5, 10), batch_size=2)
    layer = MultiModalAttention(2, 4, mode="co", attention="low_rank", attention_kwargs={"rank": 2})
    (a_new, b_new), (s_ab, s_ba) = layer(text, image, return_attention_scores=True)
    assert (tuple(s_ab.shape), tuple(s_ba.shape)) == ((2, 2, 4, 2), (2, 2, 5, 2))
    model = keras.Model([text, image], [a_new, b_new, s_ab, s_ba])
    rng = np.random.default_rng(4)
    a, b, a_mask, _ = _data(rng)
    outputs = model([a, b])
    assert [tuple(o.shape) for o in outputs] == [(2, 4, 6), (2, 5, 10), (2, 2, 4, 2), (2, 2, 5, 2)]
    np.testing.assert_allclose(ref.to_np(outputs[2]).sum(-1), 1.0, rtol=1e-5)


def test_block_regional_inner_variant_gets_no_window_default():
    rng = np.random.default_rng(5)
    a, b, a_mask, b_mask = _data(rng)
    layer = MultiModalAttention(2, 4, mode="merged", attention="regional", attention_kwargs={"mode": "block", "region_size": 3})
    a_new, b_new = layer(a, b, a_mask=a_mask, b_mask=b_mask)
    assert a_new.shape == a.shape and b_new.shape == b.shape
    assert np.all(np.isfinite(ref.to_np(a_new)))
    assert layer.joint_attention.window_size is None


def _two_stream_model(modes=("co", "merged")):
    """Token ids (0 = padding) and image patches -> `modes` in turn -> 2 logits."""
    ids, image = keras.Input((4,), dtype="int32"), keras.Input((5, 10))
    text = keras.layers.Embedding(20, 6, mask_zero=True)(ids)
    a_new, b_new = text, image
    for mode in modes:
        a_upd, b_upd = MultiModalAttention(2, 4, mode=mode, dropout=0.1)(a_new, b_new)
        a_new, b_new = a_new + a_upd, b_new + b_upd
    pooled = keras.layers.Concatenate()([
        keras.layers.GlobalAveragePooling1D()(a_new),
        keras.layers.GlobalAveragePooling1D()(b_new),
    ])
    model = keras.Model([ids, image], keras.layers.Dense(2)(pooled))
    rng = np.random.default_rng(6)
    x = [np.array([[3, 4, 5, 0], [6, 7, 0, 0], [8, 0, 0, 0], [9, 10, 11, 12]], "int32"), normal(rng, 4, 5, 10)]
    return model, x


def test_xla_training_step_in_a_two_input_model():
    model, x = _two_stream_model(modes=("merged",))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, np.array([0, 1, 1, 0]), epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    changed = [not np.allclose(w, v) for w, v in zip(before, model.get_weights())]
    assert sum(changed) > len(changed) // 2


def test_keras_and_savedmodel_roundtrip(tmp_path):
    model, x = _two_stream_model()
    (tmp_path / "keras").mkdir()
    (tmp_path / "export").mkdir()
    helpers.assert_keras_roundtrip(model, x, tmp_path / "keras")
    helpers.assert_export_roundtrip(model, x, tmp_path / "export")


@pytest.mark.parametrize("mode", MODES)
def test_registered_by_name_and_config(mode):
    layer = registry.get(
        "multimodal",
        num_heads=2,
        key_dim=4,
        mode=mode,
        hidden_dim=12,
        value_dim=3,
        dropout=0.0 if mode == "cross" else 0.2,  # linear has no weights to drop
        use_bias=False,
        attention="linear" if mode == "cross" else "multi_head",
        attention_kwargs={"feature_map": "relu"} if mode == "cross" else None,
    )
    config = layer.get_config()
    clone = MultiModalAttention.from_config(config)
    assert clone.get_config() == config
    assert (config["mode"], config["hidden_dim"], config["value_dim"]) == (mode, 12, 3)
    assert "multimodal" not in registry.available()
    assert "multimodal" in registry.available(structural=True)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mode": "late"}, "MultiModalAttention: `mode` must be one of"),
        ({"attention": "spatiotemporal"}, "`attention` must be a registered attention variant"),
        ({"hidden_dim": 0}, "`hidden_dim` must be a positive integer"),
        ({"num_heads": 0}, "`num_heads` must be a positive integer"),
        ({"dropout": 1.0}, r"`dropout` must be a float in \[0, 1\)"),
        ({"attention_kwargs": []}, "`attention_kwargs` must be a dict"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiModalAttention(**{"num_heads": 2, "key_dim": 4, **kwargs})


def test_bad_inputs():
    layer = MultiModalAttention(2, 4)
    a, b = np.zeros((2, 4, 6), "float32"), np.zeros((2, 3, 5), "float32")
    with pytest.raises(ValueError, match=r"\(MultiModalAttention\): `a` must have rank 3"):
        layer(np.zeros((2, 4), "float32"), b)
    with pytest.raises(ValueError, match="`b` must have rank 3"):
        layer(a, np.zeros((2, 3, 5, 1), "float32"))
    with pytest.raises(ValueError, match="`b` must have the batch size of `a`"):
        layer(a, np.zeros((3, 3, 5), "float32"))
    with pytest.raises(ValueError, match=r"`b_mask` must have shape \(2, 3\)"):
        layer(a, b, b_mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"`a_mask` must have shape \(2, 4\)"):
        layer(a, b, a_mask=np.ones((4,), bool))
    with pytest.raises(ValueError, match="`b` must have a known feature size"):
        MultiModalAttention(2, 4)(keras.Input((4, 6)), keras.Input((3, None)))


# Additive attention returns the value's feature size (10), which cannot
# update the 6-feature text stream; scaled dot-product attention has no
# projections, so the two streams' sizes must match.
CROSS_INCOMPATIBLE = {
    "additive": "it returns 10 features, not the 6",
    "scaled_dot_product": "`key` must have the query's",
}


@pytest.mark.parametrize("attention", registry.available())
def test_every_inner_variant_works_or_is_a_clear_error(attention):
    rng = np.random.default_rng(5)
    a, b, a_mask, b_mask = _data(rng)
    layer = MultiModalAttention(2, 4, mode="co", attention=attention)
    if attention in CROSS_INCOMPATIBLE:
        match = rf"MultiModalAttention: attention='{attention}' cannot attend from a \(2, 4, 6\) stream to a \(2, 5, 10\) stream in mode='co': .*{CROSS_INCOMPATIBLE[attention]}"
        with pytest.raises(ValueError, match=match):
            layer(a, b, a_mask=a_mask, b_mask=b_mask)
        return
    a_new, b_new = flat(layer(a, b, a_mask=a_mask, b_mask=b_mask))
    assert a_new.shape == a.shape and b_new.shape == b.shape
    assert np.all(np.isfinite(a_new)) and np.all(np.isfinite(b_new))
    assert np.all(a_new[~a_mask] == 0) and np.all(b_new[~b_mask] == 0)
    assert np.all(a_new[1] == 0)  # example 1 has no image tokens to read
    assert np.all(a_new[0, :3] != 0) and np.all(b_new[0, :2] != 0)


def test_incompatible_inner_arguments_are_clear_errors():
    rng = np.random.default_rng(5)
    a, b, _, _ = _data(rng)
    # Inner arguments are checked by the inner variant, at build time.
    with pytest.raises(ValueError, match="LinearAttention: `dropout` must be 0"):
        MultiModalAttention(2, 4, mode="co", attention="linear", dropout=0.1)(a, b)


