"""Tests for `ChannelAttention`, `SpatialAttention` and `CBAM`.

Expected numbers come from NumPy, in float64, with the layers' own weights:

- channel: `s = mean_positions(x)` (masked mean over real positions only),
  `g = sigmoid(mlp(s))` or, with `pooling="avg_max"`,
  `g = sigmoid(mlp(mean) + mlp(max))`, where
  `mlp(s) = relu(s W1 + b1) W2 + b2`; output `x * g`.
- spatial: `m = [mean_channels(x), max_channels(x)]` (zero at padded
  steps), a direct "same"-padded correlation (TensorFlow's convention: the
  extra padding of an even kernel goes after) with one filter, output
  `x * sigmoid(conv(m))`.
- CBAM: `spatial(channel(x))`.
Masked positions output zeros in all three.
"""


import keras
import numpy as np
import pytest
from keras.src import testing
from keras.src.backend.common.masking import get_keras_mask

import helpers

from keras_attention.layers.attention.cbam import CBAM
from keras_attention.layers.attention.channel_attention import ChannelAttention
from keras_attention.layers.attention.spatial_attention import SpatialAttention

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """The same random inputs for a test however the suite is filtered."""
    global RNG
    RNG = np.random.default_rng(0)


def normal(*shape):
    return RNG.standard_normal(shape).astype("float32")


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------
# NumPy references
# --------------------------------------------------------------------------
def channel_reference(layer, x, mask=None):
    x = np.asarray(x, "float64")
    w1, b1 = to_np(layer.hidden_dense.kernel), to_np(layer.hidden_dense.bias)
    w2, b2 = to_np(layer.output_dense.kernel), to_np(layer.output_dense.bias)

    def mlp(s):
        return np.maximum(s @ w1 + b1, 0.0) @ w2 + b2

    axes = tuple(range(1, x.ndim - 1))
    keep = np.ones(x.shape[:-1] + (1,)) if mask is None else (
        np.asarray(mask, "float64")[..., None]
    )
    count = np.maximum(keep.sum(axes), 1.0)
    excitation = mlp((x * keep).sum(axes) / count)
    if layer.pooling == "avg_max":
        peak = np.where(keep > 0, x, -np.inf).max(axes)
        peak = np.where(np.isfinite(peak), peak, 0.0)
        excitation = excitation + mlp(peak)
    gate = sigmoid(excitation).reshape(
        (x.shape[0],) + (1,) * len(axes) + (x.shape[-1],)
    )
    return x * gate * keep


def conv_same(maps, kernel, bias):
    """'same' correlation of `(B, *spatial, 2)` maps with `(*k, 2, 1)`."""
    spatial = maps.shape[1:-1]
    ks = kernel.shape[:-2]
    pads = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in ks]
    padded = np.pad(maps, [(0, 0)] + pads + [(0, 0)])
    out = np.zeros(maps.shape[:-1] + (1,))
    for offset in np.ndindex(*ks):
        window = padded[
            (slice(None),)
            + tuple(slice(o, o + n) for o, n in zip(offset, spatial))
        ]
        out += window @ kernel[offset]
    return out + bias


def spatial_reference(layer, x, mask=None):
    x = np.asarray(x, "float64")
    keep = np.ones(x.shape[:-1] + (1,)) if mask is None else (
        np.asarray(mask, "float64")[..., None]
    )
    maps = np.concatenate(
        [x.mean(-1, keepdims=True), x.max(-1, keepdims=True)], -1
    ) * keep
    bias = to_np(layer.conv.bias) if layer.use_bias else 0.0
    gate = sigmoid(conv_same(maps, to_np(layer.conv.kernel), bias))
    return x * gate * keep


def cbam_reference(layer, x, mask=None):
    refined = channel_reference(layer.channel_attention, x, mask)
    return spatial_reference(layer.spatial_attention, refined, mask)


REFERENCES = {
    ChannelAttention: channel_reference,
    SpatialAttention: spatial_reference,
    CBAM: cbam_reference,
}


# --------------------------------------------------------------------------
# Keras' conformance harness
# --------------------------------------------------------------------------
class TestConformance(testing.TestCase):
    def test_channel_attention_image(self):
        self.run_layer_test(
            ChannelAttention,
            init_kwargs={"reduction": 4, "pooling": "avg_max"},
            input_shape=(2, 5, 5, 8),
            expected_output_shape=(2, 5, 5, 8),
            expected_num_trainable_weights=4,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=0,
            expected_num_losses=0,
            supports_masking=True,
        )

    def test_spatial_attention_sequence(self):
        self.run_layer_test(
            SpatialAttention,
            init_kwargs={"kernel_size": 5},
            input_shape=(2, 9, 4),
            expected_output_shape=(2, 9, 4),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
            expected_num_losses=0,
            supports_masking=True,
            run_training_check=False,
        )

    def test_cbam_image_with_regularizers(self):
        self.run_layer_test(
            CBAM,
            init_kwargs={
                "reduction": 2,
                "kernel_size": 3,
                "kernel_regularizer": "l2",
            },
            input_shape=(2, 6, 6, 4),
            expected_output_shape=(2, 6, 6, 4),
            expected_num_trainable_weights=6,
            expected_num_non_trainable_weights=0,
            expected_num_losses=3,
            supports_masking=True,
            run_training_check=False,
        )


# --------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------
BIASED = {"bias_initializer": "random_normal"}

CHANNEL_CASES = {
    # name: (init, input shape)
    "se_image": ({"reduction": 4}, (2, 5, 6, 8)),
    "cbam_image": ({"reduction": 4, "pooling": "avg_max"}, (2, 5, 6, 8)),
    "se_sequence": ({"reduction": 3}, (2, 7, 12)),
    "avg_max_hidden_one": ({"reduction": 64, "pooling": "avg_max"}, (2, 7, 12)),
}


@pytest.mark.parametrize("case", CHANNEL_CASES)
def test_channel_attention_matches_numpy(case):
    init, shape = CHANNEL_CASES[case]
    x = normal(*shape)
    layer = ChannelAttention(**init, **BIASED)
    got = to_np(layer(x))
    assert layer.hidden_dense.units == max(1, shape[-1] // init["reduction"])
    np.testing.assert_allclose(got, channel_reference(layer, x), atol=1e-5)


SPATIAL_CASES = {
    "image_k7": (7, (2, 9, 8, 5)),
    "image_k3": (3, (2, 4, 6, 3)),
    "sequence_k5": (5, (2, 11, 6)),
    "sequence_even_k4": (4, (2, 8, 6)),
    "kernel_wider_than_input": (9, (1, 4, 4, 2)),
}


@pytest.mark.parametrize("case", SPATIAL_CASES)
def test_spatial_attention_matches_numpy(case):
    kernel_size, shape = SPATIAL_CASES[case]
    x = normal(*shape)
    layer = SpatialAttention(kernel_size=kernel_size, **BIASED)
    got = to_np(layer(x))
    np.testing.assert_allclose(got, spatial_reference(layer, x), atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 6, 7, 16), (2, 10, 16)])
def test_cbam_is_channel_then_spatial(shape):
    x = normal(*shape)
    layer = CBAM(reduction=4, kernel_size=3, **BIASED)
    got = to_np(layer(x))
    np.testing.assert_allclose(got, cbam_reference(layer, x), atol=1e-5)
    # The sub-layers are the public ones, composed.
    composed = layer.spatial_attention(layer.channel_attention(x))
    np.testing.assert_allclose(to_np(composed), got, atol=1e-6)


def test_cbam_options_reach_the_modules():
    layer = CBAM(
        reduction=2, kernel_size=5, pooling="avg", gate="hard_sigmoid",
        use_bias=False,
    )
    layer.build((None, 6, 8))
    assert layer.channel_attention.pooling == "avg"
    assert layer.channel_attention.hidden_dense.units == 4
    assert layer.channel_attention.gate is keras.activations.hard_sigmoid
    assert layer.spatial_attention.gate is keras.activations.hard_sigmoid
    assert tuple(layer.spatial_attention.conv.kernel.shape) == (5, 2, 1)
    assert len(layer.weights) == 3  # two dense kernels, one conv kernel


# --------------------------------------------------------------------------
# Keras masks on (batch, steps, channels)
# --------------------------------------------------------------------------
LAYERS = {
    "channel_avg": lambda: ChannelAttention(reduction=2, **BIASED),
    "channel_avg_max": lambda: ChannelAttention(
        reduction=2, pooling="avg_max", **BIASED
    ),
    "spatial": lambda: SpatialAttention(kernel_size=5, **BIASED),
    "cbam": lambda: CBAM(reduction=2, kernel_size=3, **BIASED),
}


@pytest.mark.parametrize("name", LAYERS)
def test_padding_changes_nothing_else(name):
    lengths, steps, channels = [3, 7, 5], 7, 6
    mask = np.arange(steps)[None] < np.array(lengths)[:, None]
    x = normal(3, steps, channels)
    # Large padding values would dominate any pooling they leaked into.
    x = np.where(mask[..., None], x, 50.0 + normal(3, steps, channels))
    layer = LAYERS[name]()
    out = layer(x, mask=mask)
    np.testing.assert_array_equal(to_np(get_keras_mask(out)), mask)
    out = to_np(out)
    np.testing.assert_allclose(
        out, REFERENCES[type(layer)](layer, x, mask), atol=1e-5
    )
    for i, n in enumerate(lengths):
        alone = to_np(layer(x[i : i + 1, :n]))
        np.testing.assert_allclose(out[i, :n], alone[0], atol=1e-5)
        np.testing.assert_array_equal(out[i, n:], 0.0)


@pytest.mark.parametrize("name", LAYERS)
def test_all_padding_example_is_finite_zeros(name):
    x = normal(2, 5, 4)
    mask = np.array([[False] * 5, [True] * 3 + [False] * 2])
    out = to_np(LAYERS[name]()(x, mask=mask))
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[0], 0.0)
    assert np.abs(out[1, :3]).min() > 0


def test_gradients_finite_with_padding():
    import tensorflow as tf

    layer = LAYERS["cbam"]()
    x = tf.constant(normal(2, 5, 4))
    mask = np.array([[False] * 5, [True] * 3 + [False] * 2])
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x, mask=mask) ** 2)
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    assert all(np.isfinite(to_np(g)).all() for g in grads)
    np.testing.assert_array_equal(to_np(grads[0])[1, 3:], 0.0)


@pytest.mark.parametrize("name", LAYERS)
def test_image_mask_over_height_and_width(name):
    x = normal(2, 5, 6, 4)
    mask = RNG.random((2, 5, 6)) < 0.6
    x = np.where(mask[..., None], x, 50.0)
    layer = LAYERS[name]()
    out = layer(x, mask=mask)
    np.testing.assert_array_equal(to_np(get_keras_mask(out)), mask)
    np.testing.assert_allclose(
        to_np(out), REFERENCES[type(layer)](layer, x, mask), atol=1e-5
    )


def test_keras_mask_flows_through_a_model():
    ids = np.array([[3, 1, 4, 0, 0, 0], [1, 5, 9, 2, 6, 5]])
    inputs = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(10, 8, mask_zero=True)(inputs)
    refined = CBAM(reduction=2, kernel_size=3, **BIASED)(embedded)
    pooled = keras.layers.GlobalAveragePooling1D()(refined)
    model = keras.Model(inputs, [refined, pooled])
    out, pooled = (to_np(y) for y in model(ids))
    real = (ids > 0)[..., None]
    np.testing.assert_allclose(
        pooled, (out * real).sum(1) / real.sum(1), atol=1e-6
    )
    # The first example, unpadded, gives the same real outputs.
    np.testing.assert_allclose(
        to_np(model(ids[:1, :3])[0])[0], out[0, :3], atol=1e-5
    )


# --------------------------------------------------------------------------
# Dtypes, compilation, saving
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["channel_avg_max", "spatial", "cbam"])
@pytest.mark.parametrize("shape", [(2, 16, 16, 32), (2, 30, 32)])
def test_mixed_float16_close_to_float32(name, shape):
    x = 3.0 * normal(*shape)
    mask = None
    if len(shape) == 3:
        mask = np.arange(shape[1])[None] < np.array([[20], [30]])
    reference = LAYERS[name]()
    want = to_np(reference(x, mask=mask))
    keras.config.set_dtype_policy("mixed_float16")
    layer = LAYERS[name]()
    keras.config.set_dtype_policy("float32")
    layer.build(x.shape)
    layer.set_weights(reference.get_weights())
    got = layer(x, mask=mask)
    assert keras.backend.standardize_dtype(got.dtype) == "float16"
    got = to_np(got)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=2e-2, rtol=2e-2)


def test_mixed_float16_pooling_sums_do_not_overflow():
    # 64 * 64 positions of ~500: a float16 sum would pass 65504.
    x = 500.0 + normal(1, 64, 64, 4)
    reference = ChannelAttention(reduction=2, kernel_initializer="zeros",
                                 bias_initializer="random_normal")
    want = to_np(reference(x))
    layer = ChannelAttention(reduction=2, dtype="mixed_float16")
    layer.build(x.shape)
    layer.set_weights(reference.get_weights())
    got = to_np(layer(x))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=5e-3)


def test_jit_compiled_fit_of_a_small_conv_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = CBAM(reduction=4, kernel_size=3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    before = [to_np(w) for w in model.trainable_weights]
    history = model.fit(
        normal(16, 8, 8, 3), RNG.integers(0, 2, 16), batch_size=8, verbose=0
    )
    assert np.isfinite(history.history["loss"]).all()
    after = [to_np(w) for w in model.trainable_weights]
    # Every weight of CBAM gets a gradient.
    assert all(np.abs(a - b).max() > 0 for a, b in zip(after, before))


def test_saved_as_keras_and_exported(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = CBAM(reduction=4, kernel_size=3, pooling="avg_max", **BIASED)(x)
    x = ChannelAttention(reduction=2)(x)
    x = SpatialAttention(kernel_size=5)(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    images = normal(2, 8, 8, 3)
    restored = helpers.assert_keras_roundtrip(model, images, tmp_path)
    assert isinstance(restored.layers[2], CBAM)
    helpers.assert_export_roundtrip(model, images, tmp_path)


def test_in_sequential_with_a_sequence():
    model = keras.Sequential(
        [keras.Input((None, 6)), CBAM(reduction=2, kernel_size=3)]
    )
    x = normal(2, 9, 6)
    np.testing.assert_allclose(
        to_np(model(x)), cbam_reference(model.layers[0], x), atol=1e-5
    )


# --------------------------------------------------------------------------
# Config, shapes, arguments
# --------------------------------------------------------------------------
CONFIGS = {
    ChannelAttention: {
        "reduction": 8,
        "pooling": "avg_max",
        "activation": "gelu",
        "gate": "hard_sigmoid",
        "use_bias": False,
        "kernel_regularizer": "l2",
    },
    SpatialAttention: {"kernel_size": 3, "gate": "hard_sigmoid"},
    CBAM: {
        "reduction": 2,
        "kernel_size": 5,
        "pooling": "avg",
        "activation": "silu",
        "use_bias": False,
        "bias_regularizer": "l1",
    },
}


@pytest.mark.parametrize("cls", CONFIGS)
def test_get_config_round_trip_and_output_shape(cls):
    layer = cls(name="attention", **CONFIGS[cls])
    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config
    for key, value in CONFIGS[cls].items():
        if key in ("activation", "gate"):
            assert config[key] == keras.activations.serialize(
                keras.activations.get(value)
            )
        elif "regularizer" in key:
            assert config[key]["class_name"] == value.upper()
        else:
            assert config[key] == value
    for shape in [(None, 7, 9, 16), (3, 5, 16), (None, None, None, 16)]:
        assert cls(**CONFIGS[cls]).compute_output_shape(shape) == shape
        assert tuple(cls(**CONFIGS[cls])(keras.Input(shape[1:])).shape) == (
            None,
        ) + shape[1:]


@pytest.mark.parametrize("channels", [1, 3, 15])
def test_hidden_width_never_zero(channels):
    layer = CBAM()  # reduction 16
    out = layer(normal(2, 4, 4, channels))
    assert layer.channel_attention.hidden_dense.units == max(1, channels // 16)
    assert np.isfinite(to_np(out)).all()


BAD_INIT = [
    (ChannelAttention, {"reduction": 0}, r"ChannelAttention: `reduction` must be a positive integer.*reduction=0"),
    (ChannelAttention, {"reduction": 2.0}, r"ChannelAttention: `reduction` must be a positive integer.*reduction=2.0"),
    (ChannelAttention, {"reduction": True}, r"ChannelAttention: `reduction` must be a positive integer.*reduction=True"),
    (ChannelAttention, {"pooling": "max"}, r"ChannelAttention: `pooling` must be one of \('avg', 'avg_max'\).*pooling='max'"),
    (ChannelAttention, {"activation": "nope"}, r"ChannelAttention: `activation` must be the name of a Keras activation.*'nope'"),
    (ChannelAttention, {"gate": 3}, r"ChannelAttention: `gate` must be the name of a Keras activation.*gate=3"),
    (SpatialAttention, {"kernel_size": 0}, r"SpatialAttention: `kernel_size` must be a positive integer.*kernel_size=0"),
    (SpatialAttention, {"kernel_size": (3, 3)}, r"SpatialAttention: `kernel_size` must be a positive integer.*\(3, 3\)"),
    (SpatialAttention, {"gate": "nope"}, r"SpatialAttention: `gate` must be the name.*'nope'"),
    (CBAM, {"reduction": -1}, r"CBAM: `reduction` must be a positive integer.*reduction=-1"),
    (CBAM, {"kernel_size": 0}, r"CBAM: `kernel_size` must be a positive integer.*kernel_size=0"),
    (CBAM, {"pooling": "sum"}, r"CBAM: `pooling` must be one of.*'sum'"),
]


@pytest.mark.parametrize("cls, init, message", BAD_INIT)
def test_bad_arguments(cls, init, message):
    with pytest.raises(ValueError, match=message):
        cls(**init)


@pytest.mark.parametrize("cls", [ChannelAttention, SpatialAttention, CBAM])
def test_bad_inputs(cls):
    prefix = rf"'att' \({cls.__name__}\): `inputs` "
    for built in (False, True):
        layer = cls(name="att", reduction=2) if cls is not SpatialAttention else (
            cls(name="att", kernel_size=3)
        )
        if built:
            layer(normal(2, 5, 4))
        for shape in [(2, 4), (2, 3, 3, 3, 4)]:
            with pytest.raises(ValueError, match=prefix + r"must have rank 3"):
                layer(normal(*shape))
        if not built:
            with pytest.raises(ValueError, match=prefix + r".*channels last and known.*None"):
                layer.compute_output_shape((None, 5, None))
    with pytest.raises(
        ValueError, match=prefix + r"must have the 4 channels the layer was built with"
    ):
        layer(normal(2, 5, 3))
    with pytest.raises(
        ValueError, match=rf"'att' \({cls.__name__}\): `mask` must have shape \(2, 5\)"
    ):
        layer(normal(2, 5, 4), mask=np.ones((2, 6), bool))
    if cls is not ChannelAttention:
        with pytest.raises(
            ValueError, match=prefix + r"must have rank 3, the rank the layer was built with"
        ):
            layer(normal(2, 5, 5, 4))
