"""Key/value caches: `BaseAttention(cache=...)` and `TransformerDecoder`.

Decoding step by step with a cache must give what one causal call over the
whole sequence gives; both are checked against the float64 NumPy references
of `attention_reference.py` and `transformer_reference.py`, eagerly and
inside `tf.function(jit_compile=True)`.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import attention_reference as ref
import transformer_reference as tref

from keras_attention.layers import get
from keras_attention.layers.attention.scaled_dot_product_attention import (
    ScaledDotProductAttention,
)
from keras_attention.layers.transformer.transformer_decoder import TransformerDecoder

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    global RNG
    RNG = np.random.default_rng(0)


def normal(*shape):
    return RNG.standard_normal(shape).astype("float32")


def randomized(layer, *shapes):
    layer.build(*shapes)
    for w in layer.weights:
        w.assign(0.4 * RNG.standard_normal(tuple(w.shape)).astype("float32"))
    return layer


def decode_steps(layer, x, prefill, steps, length, jit=True, **kwargs):
    """Prefill `x[:, :prefill]` (index 0), then `steps`-token chunks."""
    cache = layer.empty_cache(x.shape[0], length)
    out, cache = layer(
        x[:, :prefill], x[:, :prefill], cache=cache, cache_update_index=0,
        use_causal_mask=True, **kwargs,
    )
    outs = [keras.ops.convert_to_numpy(out)]

    def step(chunk, cache, index):
        return layer(
            chunk, chunk, cache=cache, cache_update_index=index,
            use_causal_mask=True, **kwargs,
        )

    if jit:
        step = tf.function(step, jit_compile=True)
    for i in range(prefill, x.shape[1], steps):
        out, cache = step(x[:, i : i + steps], cache, tf.constant(i))
        outs.append(keras.ops.convert_to_numpy(out))
    return np.concatenate(outs, axis=1), cache


# --------------------------------------------------------------------------
# BaseAttention
# --------------------------------------------------------------------------
VARIANTS = {
    "multi_head": {},
    "multi_head_gqa": {"num_key_value_heads": 1},
    "dynamic": {"temperature": True, "head_gating": True},
    "linear": {},
    "sparse_topk": {"pattern": "topk", "top_k": 3},
}


@pytest.mark.parametrize("case", sorted(VARIANTS))
def test_cached_steps_equal_the_causal_forward_under_xla(case):
    kwargs = dict(VARIANTS[case])
    name = case.split("_gqa")[0].replace("sparse_topk", "sparse")
    layer = randomized(get(name, num_heads=2, key_dim=4, **kwargs), (2, 7, 8), (2, 7, 8))
    x = normal(2, 7, 8)
    full = keras.ops.convert_to_numpy(layer(x, x, use_causal_mask=True))
    got, cache = decode_steps(layer, x, prefill=3, steps=1, length=9)
    np.testing.assert_allclose(got, full, atol=2e-5, rtol=1e-5)
    if name == "multi_head":
        expected, _ = ref.multi_head(layer, x, x, use_causal_mask=True)
        np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-5)
    # The cache holds the keys and values of the 7 positions, zeros after.
    k = np.einsum("btc,chd->bthd", x, ref.to_np(layer.key_dense.kernel))
    k = k + ref.to_np(layer.key_dense.bias)
    cache = keras.ops.convert_to_numpy(cache)
    np.testing.assert_allclose(cache[:, 0, :7], k, atol=1e-5)
    assert not cache[:, :, 7:].any()


def test_steps_of_several_tokens_and_scores():
    layer = randomized(get("multi_head", num_heads=2, key_dim=4), (2, 6, 8), (2, 6, 8))
    x = normal(2, 6, 8)
    expected, weights = ref.multi_head(layer, x, x, use_causal_mask=True)
    got, _ = decode_steps(layer, x, prefill=2, steps=2, length=6)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    cache = layer.empty_cache(2, 8)
    _, cache = layer(x[:, :4], x[:, :4], cache=cache, cache_update_index=0, use_causal_mask=True)
    out, scores, cache = layer(
        x[:, 4:6], x[:, 4:6], cache=cache, cache_update_index=4,
        use_causal_mask=True, return_attention_scores=True,
    )
    scores = keras.ops.convert_to_numpy(scores)
    assert scores.shape == (2, 2, 2, 8)
    np.testing.assert_allclose(scores[..., :6], weights[:, :, 4:6], atol=1e-5)
    assert not scores[..., 6:].any()  # unfilled positions get no weight
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), expected[:, 4:6], atol=2e-5)


def test_prefill_scores_cover_the_cache():
    layer = randomized(get("multi_head", num_heads=2, key_dim=4), (1, 3, 8), (1, 3, 8))
    x = normal(1, 3, 8)
    _, weights = ref.multi_head(layer, x, x, use_causal_mask=True)
    _, scores, _ = layer(
        x, x, cache=layer.empty_cache(1, 5), cache_update_index=0,
        use_causal_mask=True, return_attention_scores=True,
    )
    scores = keras.ops.convert_to_numpy(scores)
    np.testing.assert_allclose(scores[..., :3], weights, atol=1e-5)
    assert scores.shape == (1, 2, 3, 5) and not scores[..., 3:].any()


def test_static_cache_is_cross_attention_with_padding_and_empty_rows():
    layer = randomized(get("multi_head", num_heads=2, key_dim=4), (2, 3, 8), (2, 5, 6))
    query, source = normal(2, 3, 8), normal(2, 5, 6)
    padding = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], bool)  # row 1: nothing
    cache = layer.project_cache(source)
    assert tuple(cache.shape) == (2, 2, 5, 2, 4)
    out, scores, same = layer(
        query, query, cache=cache, value_mask=padding, return_attention_scores=True
    )
    expected, weights = ref.multi_head(layer, query, source, value_mask=padding)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), expected, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scores), weights, atol=1e-5)
    assert same is cache or np.array_equal(keras.ops.convert_to_numpy(same), keras.ops.convert_to_numpy(cache))
    # Row 1 sees no key: its attended heads are zeros (no NaN), so its
    # output is the output projection's bias, as without a cache.
    bias = ref.to_np(layer.output_dense.bias)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out)[1], np.broadcast_to(bias, (3, 8)), atol=1e-6)
    assert np.isfinite(keras.ops.convert_to_numpy(out)).all()


def test_padding_masks_cover_the_whole_cache():
    layer = randomized(get("multi_head", num_heads=2, key_dim=4), (1, 4, 8), (1, 4, 8))
    x = normal(1, 4, 8)
    keep = np.array([[True, False, True, True]])
    expected, _ = ref.multi_head(layer, x, x, use_causal_mask=True, value_mask=keep)
    cache = layer.empty_cache(1, 4)
    outs = []
    for i in range(4):
        out, cache = layer(
            x[:, i : i + 1], x[:, i : i + 1], cache=cache, cache_update_index=i,
            value_mask=keep, use_causal_mask=True,
        )
        outs.append(keras.ops.convert_to_numpy(out))
    np.testing.assert_allclose(np.concatenate(outs, 1), expected, atol=2e-5)
    # A mask of the new positions only would not hide them later: refused.
    with pytest.raises(ValueError, match=r"value_mask` must cover the whole cache, \(batch, 4\)"):
        layer(x[:, :1], x[:, :1], cache=cache, cache_update_index=0, value_mask=keep[:, :1])


@pytest.mark.parametrize("policy,atol", [("float16", 3e-2), ("bfloat16", 1.5e-1)])
def test_mixed_precision(policy, atol):
    keras.config.set_dtype_policy(f"mixed_{policy}")
    layer = randomized(get("multi_head", num_heads=2, key_dim=4), (2, 5, 8), (2, 5, 8))
    x = normal(2, 5, 8)
    cache = layer.empty_cache(2, 5)
    assert keras.backend.standardize_dtype(cache.dtype) == policy
    got, cache = decode_steps(layer, x, prefill=2, steps=1, length=5, jit=False)
    expected, _ = ref.multi_head(layer, x, x, use_causal_mask=True)
    assert keras.backend.standardize_dtype(cache.dtype) == policy
    np.testing.assert_allclose(got.astype("float32"), expected, atol=atol, rtol=atol)


def test_gradients_of_the_prefill():
    # Caches serve inference; the prefill is the uncached call, so training
    # code that passes a cache still gets the gradients of the inputs.
    layer = randomized(get("multi_head", num_heads=2, key_dim=4), (1, 3, 8), (1, 3, 8))
    x = tf.constant(normal(1, 3, 8))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out, _ = layer(x, x, cache=layer.empty_cache(1, 5), cache_update_index=0, use_causal_mask=True)
        loss = tf.reduce_sum(out[:, -1] ** 2)
    grad = tape.gradient(loss, x).numpy()
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x, x, use_causal_mask=True)[:, -1] ** 2)
    np.testing.assert_allclose(grad, tape.gradient(loss, x).numpy(), atol=1e-5)
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_functional_model_with_a_cache_input():
    x = keras.Input((1, 8))
    cache = keras.Input((2, 6, 2, 4))
    index = keras.Input((), dtype="int32", batch_size=1)
    layer = get("multi_head", num_heads=2, key_dim=4)
    out, updated = layer(x, x, cache=cache, cache_update_index=index[0], use_causal_mask=True)
    assert tuple(out.shape) == (None, 1, 8) and tuple(updated.shape) == (None, 2, 6, 2, 4)


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("low_rank", {"max_length": 6, "rank": 3}, r"'low_rank'.*max_length"),
        ("sparse", {"pattern": "bigbird", "block_size": 2}, r"'sparse'.*block pattern"),
        ("regional", {"window_size": 2}, r"'regional'.*indices"),
        ("multi_head", {"position_encoding": "rope"}, r"'multi_head'.*position_encoding='rope'"),
        ("multi_head", {"window_size": 2}, r"'multi_head'.*window_size"),
    ],
)
def test_variants_that_cannot_decode_with_a_cache_say_why(name, kwargs, match):
    layer = get(name, num_heads=2, key_dim=4, **kwargs)
    x = normal(1, 6, 8)
    cache = layer.empty_cache(1, 6)
    if name != "low_rank":
        # The prefill is the uncached call: every variant runs it.
        full = keras.ops.convert_to_numpy(layer(x, x, use_causal_mask=True))
        out, cache = layer(x, x, cache=cache, cache_update_index=0, use_causal_mask=True)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out), full, atol=1e-5)
    with pytest.raises(ValueError, match=match):
        layer.check_cache_support()
    with pytest.raises(ValueError, match="cannot decode step by step with a key/value cache"):
        layer(x[:, :1], x[:, :1], cache=cache, cache_update_index=tf.constant(3), use_causal_mask=name != "low_rank")


def test_linear_steps_take_one_token():
    layer = get("linear", num_heads=2, key_dim=4)
    x = normal(1, 4, 8)
    cache = layer.empty_cache(1, 4)
    layer.check_cache_support(1)
    with pytest.raises(ValueError, match=r"'linear'.*one new token at a time.*2 query"):
        layer(x[:, :2], x[:, :2], cache=cache, cache_update_index=tf.constant(0), use_causal_mask=True)


@pytest.mark.parametrize(
    "make,call,match",
    [
        (dict(value_dim=2), dict(), "value_dim == key_dim"),
        (dict(), dict(cache=np.zeros((1, 2, 4, 3, 4), "float32")), r"cache.*num_key_value_heads=2"),
        (dict(), dict(cache=np.zeros((1, 4, 2, 4), "float32")), r"`cache` must have shape"),
        (dict(), dict(cache=None, cache_update_index=0), "`cache_update_index` needs a `cache`"),
        (dict(), dict(cache_update_index=None, use_causal_mask=True), "use_causal_mask.*needs a `cache_update_index`"),
        (dict(), dict(cache_update_index=3), r"cache_update_index` must be in \[0, 4 - new"),
        (dict(), dict(attention_mask=np.ones((1, 2, 3), bool)), r"attention_mask.*\(1, 2, 4\)"),
    ],
)
def test_bad_cache_arguments(make, call, match):
    layer = get("multi_head", num_heads=2, key_dim=4, **make)
    x = normal(1, 2, 8)
    layer.build(x.shape, x.shape)
    arguments = {"cache_update_index": 0}
    arguments.update(call)
    if "cache" not in call:
        arguments["cache"] = np.zeros((1, 2, 4, 2, 4), "float32")
    with pytest.raises(ValueError, match=match):
        layer(x, x, **arguments)


def test_empty_cache_and_config_are_unchanged():
    layer = get("multi_head", num_heads=4, key_dim=3, num_key_value_heads=2)
    cache = layer.empty_cache(3, 7)
    assert tuple(cache.shape) == (3, 2, 7, 2, 3) and not keras.ops.convert_to_numpy(cache).any()
    with pytest.raises(ValueError, match="length"):
        layer.empty_cache(1, 0)
    config = layer.get_config()
    assert "cache" not in config
    assert type(layer).from_config(config).get_config() == config


# --------------------------------------------------------------------------
# TransformerDecoder
# --------------------------------------------------------------------------
ARRANGEMENTS = {"post_norm": {}, "pre_norm": {"norm_first": True}, "parallel": {"parallel": True}}


@pytest.mark.parametrize("arrangement", sorted(ARRANGEMENTS))
def test_decoder_cached_steps_equal_the_full_pass(arrangement):
    block = TransformerDecoder(12, 2, **ARRANGEMENTS[arrangement])
    block.build((None, None, 8), (None, None, 6))
    tref.randomize(block, 1)
    x, encoded = normal(2, 5, 8), normal(2, 4, 6)
    padding = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    full = keras.ops.convert_to_numpy(block(x, encoded, encoder_padding_mask=padding))
    expected, _, _ = tref.decoder(block, x, encoded, encoder_mask=padding)
    np.testing.assert_allclose(full, expected, atol=1e-4)
    cross = block.compute_cross_attention_cache(encoded)
    cache = block.self_attention_layer.empty_cache(2, 5)
    out, cache, same = block(
        x[:, :2], self_attention_cache=cache, self_attention_cache_update_index=0,
        cross_attention_cache=cross, encoder_padding_mask=padding,
    )
    outs = [keras.ops.convert_to_numpy(out)]

    @tf.function(jit_compile=True)
    def step(token, cache, index):
        return block(
            token, self_attention_cache=cache, self_attention_cache_update_index=index,
            cross_attention_cache=cross, encoder_padding_mask=padding,
        )

    for i in range(2, 5):
        out, cache, _ = step(x[:, i : i + 1], cache, tf.constant(i))
        outs.append(keras.ops.convert_to_numpy(out))
    np.testing.assert_allclose(np.concatenate(outs, 1), expected, atol=1e-4)


def test_decoder_only_cached_steps_and_cross_cache_filled_on_the_first_call():
    block = TransformerDecoder(12, 2, norm_first=True)
    block.build((None, None, 8))
    tref.randomize(block, 2)
    x = normal(1, 4, 8)
    expected, _, _ = tref.decoder(block, x)
    cache = block.self_attention_layer.empty_cache(1, 4)
    outs = []
    for i in range(4):
        out, cache = block(x[:, i : i + 1], self_attention_cache=cache, self_attention_cache_update_index=i)
        outs.append(keras.ops.convert_to_numpy(out))
    np.testing.assert_allclose(np.concatenate(outs, 1), expected, atol=1e-4)

    block = TransformerDecoder(12, 2)
    block.build((None, None, 8), (None, None, 6))
    tref.randomize(block, 3)
    encoded = normal(1, 3, 6)
    expected, _, _ = tref.decoder(block, x, encoded)
    empty = block.cross_attention_layer.empty_cache(1, 3)
    out, cross = block(
        x, encoded, cross_attention_cache=empty, cross_attention_cache_update_index=0
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), expected, atol=1e-4)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(cross),
        keras.ops.convert_to_numpy(block.compute_cross_attention_cache(encoded)),
        atol=1e-6,
    )


def test_decoder_returns_scores_then_caches():
    block = TransformerDecoder(12, 2)
    x, encoded = normal(1, 3, 8), normal(1, 4, 8)
    block(x, encoded)
    result = block(
        x, encoded, return_attention_scores=True,
        self_attention_cache=block.self_attention_layer.empty_cache(1, 5),
        self_attention_cache_update_index=0,
    )
    assert [tuple(r.shape) for r in result] == [(1, 3, 8), (1, 2, 3, 5), (1, 2, 3, 4), (1, 2, 5, 2, 4)]
    spec = block.compute_output_spec(
        keras.KerasTensor((1, 1, 8)), return_attention_scores=True,
        self_attention_cache=keras.KerasTensor((1, 2, 5, 2, 4)), self_attention_cache_update_index=0,
        cross_attention_cache=keras.KerasTensor((1, 2, 4, 2, 4)),
    )
    assert [tuple(s.shape) for s in spec] == [(1, 1, 8), (1, 2, 1, 5), (1, 2, 1, 4), (1, 2, 5, 2, 4), (1, 2, 4, 2, 4)]


def test_decoder_cache_errors():
    decoder_only = TransformerDecoder(12, 2)
    x = normal(1, 2, 8)
    decoder_only(x)
    with pytest.raises(ValueError, match="cross_attention_cache.*must not be given"):
        decoder_only(x, cross_attention_cache=np.zeros((1, 2, 3, 2, 4), "float32"))
    with pytest.raises(ValueError, match="self_attention_cache_update_index.*needs a `self_attention_cache`"):
        decoder_only(x, self_attention_cache_update_index=0)
    with pytest.raises(ValueError, match="needs a block with a cross-attention"):
        decoder_only.compute_cross_attention_cache(x)
    block = TransformerDecoder(12, 2)
    block(x, x)
    with pytest.raises(ValueError, match="encoder_sequence.*must be given to update"):
        block(x, cross_attention_cache=np.zeros((1, 2, 2, 2, 4), "float32"), cross_attention_cache_update_index=0)
    other = TransformerDecoder(12, 2, attention=ScaledDotProductAttention)
    other(x)
    with pytest.raises(ValueError, match="built on `BaseAttention`"):
        other(x, self_attention_cache=np.zeros((1, 2, 2, 2, 4), "float32"), self_attention_cache_update_index=0)
