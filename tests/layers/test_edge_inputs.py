"""Edge inputs, for every registered (swappable) attention variant.

- float16 inputs large enough that scores leave float16's range: the
  scores run in float32 everywhere, so the outputs are finite and match the
  float32 layer with the same weights.

Each variant is checked in the configurations whose cores differ (exact,
chunked, regions, blocks, top-k, ...); the variants' own test files hold
their NumPy references, against which the float32 layers are checked.
"""

import keras
import numpy as np
import pytest

import attention_reference as ref

from keras_attention.layers import registry

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
