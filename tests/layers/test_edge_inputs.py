"""Edge inputs, for every registered (swappable) attention variant.

- float16 inputs large enough that scores leave float16's range: the
  scores run in float32 everywhere, so the outputs are finite and match the
  float32 layer with the same weights.
- NaN and inf in padding (value positions hidden by a Keras mask, a
  `value_mask` or an `attention_mask`, and masked queries): the outputs are
  those of the same inputs with zeros there, exactly.
- Empty inputs (no query, no key, no batch): outputs (and weights) of the
  right shape, eagerly and under XLA; with no key, the output of a query
  that has nothing to attend to (zero attention, so the output projection's
  bias where there is one), as with one key that is masked.

Each variant is checked in the configurations whose cores differ (exact,
chunked, regions, blocks, top-k, ...); the variants' own test files hold
their NumPy references, against which the float32 layers are checked.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.backend.common.masking import set_keras_mask

import attention_reference as ref

from keras_attention.layers.attention import registry

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """The same random inputs for a test however the suite is filtered."""
    global RNG
    RNG = np.random.default_rng(0)


def normal(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype("float32")


HEADS = {"num_heads": 2, "key_dim": 4}
# (registry name, constructor arguments): the cores every variant can run.
CONFIGS = [
    ("multi_head", {**HEADS}),
    ("multi_head", {**HEADS, "implementation": "chunked", "block_size": 4}),
    ("multi_head", {**HEADS, "num_key_value_heads": 1}),
    ("regional", {**HEADS, "window_size": 3}),
    ("regional", {**HEADS, "mode": "block", "region_size": 3, "num_neighbors": 1}),
    ("sparse", {**HEADS, "block_size": 2}),
    ("sparse", {**HEADS, "pattern": "strided", "block_size": 2}),
    ("sparse", {**HEADS, "pattern": "topk", "top_k": 3}),
    ("linear", {**HEADS}),
    ("low_rank", {**HEADS, "max_length": 8, "rank": 3}),
    ("dynamic", {**HEADS}),
    ("dynamic", {**HEADS, "talking_heads": False}),
    ("distributed", {**HEADS, "num_shards": 3}),
    ("additive", {}),
    ("additive", {"score": "general"}),
    ("scaled_dot_product", {}),
]


def config_id(config):
    name, init = config
    extra = [f"{k}={v}" for k, v in init.items() if k not in HEADS]
    return "-".join([name] + extra)


def test_every_registered_variant_is_covered():
    assert sorted({name for name, _ in CONFIGS}) == registry.available()


def make(name, init, query, value, dtype=None, scale=0.2):
    """A built layer with seeded random weights (kernels and biases)."""
    layer = registry.get(name, **init, **({"dtype": dtype} if dtype else {}))
    layer.build(query.shape, value.shape)
    weights = [
        normal(*w.shape, scale=scale) for w in layer.trainable_weights
    ]
    for variable, w in zip(layer.trainable_weights, weights):
        variable.assign(w)
    if name == "low_rank":
        # Compressed key r is key r: logits keep the order of the keys'
        # `c_j` (see `ordered_keys`), so float16 rounding cannot reorder them.
        eye = np.eye(layer.rank, layer.max_length, dtype="float32")
        layer.key_projection.assign(eye)
    return layer


def copy_of(layer, name, init, query, value, dtype):
    clone = make(name, init, query, value, dtype=dtype)
    clone.set_weights(layer.get_weights())
    return clone


def ordered_keys(batch, length, features, magnitude):
    """`(batch, length, features)` inputs `c_j * u_b`, `c_j` a shuffled
    `linspace(-1, 1)`. Each score is then `c_j * a + b` for its query (also
    after projections, temperatures, mixing of heads), so the keys a query
    prefers are ordered by `c_j`, with gaps of `2 / (length - 1)` of the
    scores' scale: float16 rounding (1e-3) cannot reorder them."""
    c = RNG.permutation(np.linspace(-1.0, 1.0, length))
    u = RNG.standard_normal((batch, 1, features))
    return (magnitude * c[None, :, None] * u).astype("float32")


# --------------------------------------------------------------------------
# float16 inputs beyond the range of float16 scores
# --------------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_float16_large_inputs_give_finite_float32_close_outputs(config):
    name, init = config
    # Inputs ~1e4: scores ~1e7 (float16 tops out at 65504), outputs ~1e3.
    query, value = normal(2, 8, 8, scale=1e4), ordered_keys(2, 8, 8, 1e4)
    full = make(name, init, query, value)
    mixed = copy_of(full, name, init, query, value, "mixed_float16")
    assert mixed.compute_dtype == "float16"
    # Padding, on top of the causal mask where the variant takes it.
    value_mask = np.array([[1] * 8, [1, 1, 1, 1, 1, 1, 0, 0]], bool)
    kwargs = {"value_mask": value_mask}
    if name != "low_rank":
        kwargs["use_causal_mask"] = True
    want = ref.to_np(full(query, value, **kwargs))
    got = mixed(query, value, **kwargs)
    assert keras.backend.standardize_dtype(got.dtype) == "float16"
    got = ref.to_np(got)
    assert np.isfinite(got).all()
    # float16 carries ~3 significant digits: 1% of the outputs' scale.
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2 * scale)
    if getattr(full, "supports_attention_scores", True) and (
        init.get("implementation") != "chunked"
    ):
        _, scores = mixed(query, value, return_attention_scores=True, **kwargs)
        _, want_scores = full(
            query, value, return_attention_scores=True, **kwargs
        )
        assert keras.backend.standardize_dtype(scores.dtype) == "float16"
        assert np.isfinite(ref.to_np(scores)).all()
        np.testing.assert_allclose(
            ref.to_np(scores), ref.to_np(want_scores), atol=1e-2
        )


# --------------------------------------------------------------------------
# non-finite padding
# --------------------------------------------------------------------------
JUNK = np.array([np.nan, np.inf, -np.inf], "float32")
# Batch 1 is padded at positions 2, 5, 6 and 7.
VALID = np.array([[1] * 8, [1, 1, 0, 1, 1, 0, 0, 0]], bool)


def with_junk(x, valid):
    """`x` with NaN/+inf/-inf at the invalid positions, and with zeros."""
    junk = JUNK[np.arange(x.shape[-1]) % 3]
    bad = np.where(valid[..., None], x, junk).astype("float32")
    return bad, np.where(valid[..., None], x, 0.0).astype("float32")


def key_padding_only(name):
    # Variants whose `attention_mask` must be the same for every query.
    return name in ("linear", "low_rank")


@pytest.mark.parametrize("how", ["value_mask", "keras_mask", "attention_mask"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_non_finite_padded_values_never_reach_the_outputs(config, how):
    name, init = config
    query, value = normal(2, 8, 8), normal(2, 8, 8)
    layer = make(name, init, query, value, scale=0.3)
    bad, zeros = with_junk(value, VALID)
    kwargs = {}
    if name != "low_rank":
        kwargs["use_causal_mask"] = True
    if how == "attention_mask":
        if key_padding_only(name):
            kwargs["attention_mask"] = VALID[:, None]
        else:
            # Varies by query, and hides the padding from every query.
            kwargs["attention_mask"] = VALID[:, None] & (
                RNG.random((2, 8, 8)) < 0.7
            )
    elif how == "value_mask":
        kwargs["value_mask"] = VALID

    def call(value, **extra):
        if how == "keras_mask":
            value = keras.ops.convert_to_tensor(value)
            set_keras_mask(value, keras.ops.convert_to_tensor(VALID))
        return layer(query, value, **kwargs, **extra)

    got, want = ref.to_np(call(bad)), ref.to_np(call(zeros))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-6)
    if getattr(layer, "supports_attention_scores", True) and (
        init.get("implementation") != "chunked"
    ):
        _, got = call(bad, return_attention_scores=True)
        _, want = call(zeros, return_attention_scores=True)
        assert np.isfinite(ref.to_np(got)).all()
        np.testing.assert_allclose(
            ref.to_np(got), ref.to_np(want), atol=1e-6, rtol=1e-6
        )


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_non_finite_padded_queries_give_zero_rows(config):
    # Self-attention over a padded sequence (Keras masks on both inputs):
    # NaN/inf in the padding reaches neither the masked rows (zeros) nor
    # the others.
    name, init = config
    x = normal(2, 8, 8)
    layer = make(name, init, x, x, scale=0.3)
    bad, zeros = with_junk(x, VALID)

    def call(x):
        x = keras.ops.convert_to_tensor(x)
        set_keras_mask(x, keras.ops.convert_to_tensor(VALID))
        return ref.to_np(layer(x, x))

    got, want = call(bad), call(zeros)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[~VALID], 0.0)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_non_finite_padding_gives_the_gradients_of_zeros(config):
    # Zeroed before the projections, the padding cannot turn the weights'
    # gradients into NaN either (a projection's kernel gradient sums over
    # every position, padded ones included).
    name, init = config
    query, value = normal(2, 8, 8), normal(2, 8, 8)
    layer = make(name, init, query, value, scale=0.3)
    bad, zeros = with_junk(value, VALID)
    kwargs = {"value_mask": VALID}
    if name != "low_rank":
        kwargs["use_causal_mask"] = True

    def gradients(value):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(layer(query, value, **kwargs)))
        return tape.gradient(loss, layer.trainable_weights)

    for got, want in zip(gradients(bad), gradients(zeros)):
        got = ref.to_np(got)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, ref.to_np(want), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------
# empty inputs
# --------------------------------------------------------------------------
EMPTY = {
    "no_query": ((2, 0, 8), (2, 5, 8)),
    "no_key": ((2, 5, 8), (2, 0, 8)),
    "no_query_no_key": ((2, 0, 8), (2, 0, 8)),
    "no_batch": ((0, 5, 8), (0, 5, 8)),
}


def empty_cases():
    for config in CONFIGS:
        for case, (query_shape, value_shape) in EMPTY.items():
            name, init = config
            if init.get("mode") == "block" and query_shape[1] != value_shape[1]:
                continue  # block regions need Tq == Tv
            for jit in (False, True):
                yield pytest.param(
                    config,
                    query_shape,
                    value_shape,
                    jit,
                    id=f"{config_id(config)}-{case}" + ("-xla" if jit else ""),
                )


def scores_shape(layer, query_shape, value_shape):
    if hasattr(layer, "attention_scores_shape"):
        return tuple(layer.attention_scores_shape(query_shape, value_shape))
    return (query_shape[0], query_shape[1], value_shape[1])  # one head


@pytest.mark.parametrize("config, query_shape, value_shape, jit", empty_cases())
def test_empty_inputs_give_empty_outputs(config, query_shape, value_shape, jit):
    name, init = config
    query, value = normal(*query_shape), normal(*value_shape)
    layer = make(name, init, query, value, scale=0.3)
    kwargs = {} if name == "low_rank" else {"use_causal_mask": True}
    scores = getattr(layer, "supports_attention_scores", True) and (
        init.get("implementation") != "chunked"
    )

    def run(query, value, **extra):
        return layer(
            query, value, return_attention_scores=scores, **kwargs, **extra
        )

    if jit:
        run = tf.function(run, jit_compile=True)
    result = run(query, value)
    out, weights = result if scores else (result, None)
    assert tuple(out.shape) == tuple(
        layer.compute_output_shape(query_shape, value_shape)
    )
    out = ref.to_np(out)
    if weights is not None:
        assert tuple(weights.shape) == scores_shape(
            layer, query_shape, value_shape
        )
        np.testing.assert_array_equal(ref.to_np(weights), 0.0)
    if value_shape[1] == 0 and query_shape[1] > 0 and query_shape[0] > 0:
        # Nothing to attend to: what one masked key gives (zero attention;
        # the output projection's bias where there is one).
        one = normal(value_shape[0], 1, value_shape[2])
        masked = run(query, one, value_mask=np.zeros((value_shape[0], 1), bool))
        masked = masked[0] if scores else masked
        np.testing.assert_allclose(out, ref.to_np(masked), atol=1e-6)
        if name in ("additive", "scaled_dot_product"):
            np.testing.assert_array_equal(out, 0.0)
