"""Tests for the position layers: sinusoidal, learned, token+position, rotary."""

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src import testing

import helpers

from keras_attention.layers.embeddings.position_embedding import PositionEmbedding
from keras_attention.layers.embeddings.rotary_embedding import RotaryEmbedding
from keras_attention.layers.embeddings.sinusoidal_position_encoding import (
    SinusoidalPositionEncoding,
)
from keras_attention.layers.embeddings.token_and_position_embedding import (
    TokenAndPositionEmbedding,
)

# --------------------------------------------------------------------------
# Independent NumPy references.
# --------------------------------------------------------------------------


def ref_sinusoidal(length, dim, max_wavelength=10000.0, start=0):
    # PE(p, 2k) = sin(p / w^(2k/d)), PE(p, 2k+1) = cos(p / w^(2k/d)).
    p = np.arange(start, start + length, dtype="float64")[:, None]
    k = np.arange(dim)[None, :] // 2
    angle = p / max_wavelength ** (2.0 * k / dim)
    return np.where(np.arange(dim) % 2 == 0, np.sin(angle), np.cos(angle))


def ref_rope(x, positions=None, max_wavelength=10000.0, scaling_factor=1.0):
    # Rotate-half RoPE as complex multiplication (first half real, second
    # half imaginary).
    x = np.asarray(x, dtype="float64")
    batch, seq, _, dim = x.shape
    half = dim // 2
    if positions is None:
        positions = np.arange(seq)
    positions = np.broadcast_to(np.asarray(positions, "float64"), (batch, seq))
    theta = max_wavelength ** (-2.0 * np.arange(half) / dim)
    rotor = np.exp(1j * (positions / scaling_factor)[:, :, None, None] * theta)
    z = (x[..., :half] + 1j * x[..., half:]) * rotor
    return np.concatenate([z.real, z.imag], axis=-1)


def to_np(x):
    return keras.ops.convert_to_numpy(keras.ops.cast(x, "float32"))


def dtype_of(x):
    return keras.backend.standardize_dtype(x.dtype)


@pytest.fixture
def mixed_float16_policy():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def save_and_reload(model, tmp_path):
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    # No custom_objects: the layers must be found through registration.
    return keras.models.load_model(path)


# --------------------------------------------------------------------------
# Keras' own layer conformance harness (config round trip, build, symbolic
# call, training, mixed precision, masking).
# --------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")
class TestConformance(testing.TestCase):
    def test_sinusoidal_position_encoding(self):
        self.run_layer_test(
            SinusoidalPositionEncoding,
            init_kwargs={"max_wavelength": 1000},
            input_shape=(2, 5, 8),
            expected_output_shape=(2, 5, 8),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
            run_training_check=False,
        )

    def test_position_embedding(self):
        self.run_layer_test(
            PositionEmbedding,
            init_kwargs={"sequence_length": 6, "initializer": "ones"},
            input_shape=(2, 5, 8),
            expected_output_shape=(2, 5, 8),
            expected_num_trainable_weights=1,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
        )

    def test_token_and_position_embedding(self):
        self.run_layer_test(
            TokenAndPositionEmbedding,
            init_kwargs={
                "vocabulary_size": 10,
                "sequence_length": 6,
                "embedding_dim": 4,
                "mask_zero": True,
            },
            input_data=np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0]]),
            expected_output_shape=(2, 5, 4),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
            expected_mask_shape=(2, 5),
        )

    def test_rotary_embedding(self):
        self.run_layer_test(
            RotaryEmbedding,
            init_kwargs={"max_wavelength": 500, "scaling_factor": 2.0},
            input_shape=(2, 5, 3, 8),
            expected_output_shape=(2, 5, 3, 8),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
            run_training_check=False,
        )


# --------------------------------------------------------------------------
# SinusoidalPositionEncoding
# --------------------------------------------------------------------------


class TestSinusoidalPositionEncoding:
    def test_values_broadcast_over_batch(self):
        layer = SinusoidalPositionEncoding(max_wavelength=100)
        out = layer(np.ones((3, 5, 6), "float32"))
        assert tuple(out.shape) == (3, 5, 6)
        assert dtype_of(out) == "float32"
        expected = np.broadcast_to(ref_sinusoidal(5, 6, 100.0), (3, 5, 6))
        np.testing.assert_allclose(to_np(out), expected, atol=1e-6)

    def test_start_index(self):
        layer = SinusoidalPositionEncoding()
        out = layer(np.zeros((1, 3, 8), "float32"), start_index=7)
        np.testing.assert_allclose(
            to_np(out)[0], ref_sinusoidal(3, 8, start=7), atol=1e-6
        )

    def test_compute_dtype(self):
        out = SinusoidalPositionEncoding(dtype="bfloat16")(np.ones((1, 30, 4)))
        assert dtype_of(out) == "bfloat16"
        np.testing.assert_allclose(
            to_np(out)[0], ref_sinusoidal(30, 4), atol=8e-3
        )

    def test_jit_equals_eager_with_dynamic_shapes(self):
        layer = SinusoidalPositionEncoding()

        @tf.function(
            jit_compile=True,
            input_signature=[
                tf.TensorSpec((None, None, 6), "float32"),
                tf.TensorSpec((), "int32"),
            ],
        )
        def encode(x, start):
            return layer(x, start_index=start)

        x = np.zeros((2, 4, 6), "float32")
        compiled = encode(x, tf.constant(2))
        eager = layer(x, start_index=2)
        np.testing.assert_allclose(to_np(compiled), to_np(eager), atol=1e-6)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="static, even last axis.*\\(2, 4, 5\\)"):
            SinusoidalPositionEncoding()(np.zeros((2, 4, 5), "float32"))
        with pytest.raises(ValueError, match="`max_wavelength` must be a positive"):
            SinusoidalPositionEncoding(max_wavelength=0)


# --------------------------------------------------------------------------
# PositionEmbedding
# --------------------------------------------------------------------------


class TestPositionEmbedding:
    def test_returns_slice_of_table(self):
        layer = PositionEmbedding(sequence_length=8)
        out = layer(np.zeros((2, 5, 4), "float32"))
        table = to_np(layer.embeddings)
        assert table.shape == (8, 4)
        np.testing.assert_array_equal(
            to_np(out), np.broadcast_to(table[:5], (2, 5, 4))
        )
        out = layer(np.zeros((2, 3, 4), "float32"), start_index=5)
        np.testing.assert_array_equal(to_np(out)[1], table[5:8])

    def test_tensor_start_index_under_jit(self):
        layer = PositionEmbedding(sequence_length=8)
        x = np.zeros((1, 2, 4), "float32")
        layer(x)
        compiled = tf.function(jit_compile=True)(
            lambda x, s: layer(x, start_index=s)
        )(x, tf.constant(3))
        np.testing.assert_array_equal(
            to_np(compiled)[0], to_np(layer.embeddings)[3:5]
        )

    def test_too_long_raises_at_build_and_call(self):
        with pytest.raises(
            ValueError, match="positions 0 ... 3 .*sequence_length=4.*0 ... 4"
        ):
            PositionEmbedding(sequence_length=4)(np.zeros((1, 5, 2), "float32"))
        layer = PositionEmbedding(sequence_length=4)
        layer(np.zeros((1, 4, 2), "float32"))
        with pytest.raises(ValueError, match="needs positions 2 ... 4.*start_index=2"):
            layer(np.zeros((1, 3, 2), "float32"), start_index=2)
        with pytest.raises(ValueError, match="sequence length 5"):
            keras.Sequential(
                [keras.Input((5, 2)), PositionEmbedding(sequence_length=4)]
            )

    def test_bad_arguments(self):
        with pytest.raises(
            ValueError, match="`sequence_length` must be an integer >= 1.*=0"
        ):
            PositionEmbedding(sequence_length=0)
        with pytest.raises(ValueError, match="static `features` axis"):
            PositionEmbedding(sequence_length=4).build((None, 4, None))

    def test_mixed_float16_policy(self, mixed_float16_policy):
        layer = PositionEmbedding(sequence_length=4)
        out = layer(np.zeros((1, 4, 2), "float32"))
        assert dtype_of(out) == "float16"
        assert dtype_of(layer.embeddings) == "float32"
        np.testing.assert_allclose(
            to_np(out)[0], to_np(layer.embeddings), atol=1e-3
        )

    def test_config_round_trip(self):
        layer = PositionEmbedding(
            sequence_length=16,
            initializer=keras.initializers.RandomNormal(stddev=0.5, seed=3),
            name="pos",
        )
        config = layer.get_config()
        assert config["sequence_length"] == 16
        clone = PositionEmbedding.from_config(config)
        assert clone.get_config() == config
        assert isinstance(clone.initializer, keras.initializers.RandomNormal)
        assert clone.initializer.stddev == 0.5


# --------------------------------------------------------------------------
# TokenAndPositionEmbedding
# --------------------------------------------------------------------------


class TestTokenAndPositionEmbedding:
    def test_learned_values(self):
        layer = TokenAndPositionEmbedding(
            vocabulary_size=10, sequence_length=6, embedding_dim=4
        )
        ids = np.array([[1, 2, 3], [9, 0, 9]])
        out = to_np(layer(ids))
        tokens = to_np(layer.token_embedding.embeddings)
        positions = to_np(layer.position_embedding.embeddings)
        np.testing.assert_allclose(out, tokens[ids] + positions[:3], atol=1e-6)
        # The two tables were initialized independently.
        assert not np.allclose(tokens[:6], positions)

    def test_sinusoidal_values_and_start_index(self):
        layer = TokenAndPositionEmbedding(
            vocabulary_size=10,
            sequence_length=6,
            embedding_dim=4,
            position="sinusoidal",
            max_wavelength=50,
        )
        ids = np.array([[4, 5, 6]])
        out = to_np(layer(ids, start_index=3))
        tokens = to_np(layer.token_embedding.embeddings)
        expected = tokens[ids] + ref_sinusoidal(3, 4, 50.0, start=3)
        np.testing.assert_allclose(out, expected, atol=1e-6)
        assert len(layer.trainable_weights) == 1
        # Sinusoidal encodings extrapolate past `sequence_length`.
        assert tuple(layer(np.ones((1, 9), "int32")).shape) == (1, 9, 4)

    def test_mask(self):
        ids = np.array([[5, 3, 0, 0], [1, 0, 0, 0]])
        masked = TokenAndPositionEmbedding(10, 6, 4, mask_zero=True)
        assert masked.supports_masking
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(masked.compute_mask(ids)), ids != 0
        )
        out = masked(ids)
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(out._keras_mask), ids != 0
        )
        unmasked = TokenAndPositionEmbedding(10, 6, 4)
        assert unmasked.compute_mask(ids) is None
        assert getattr(unmasked(ids), "_keras_mask", None) is None

    @pytest.mark.parametrize("position", ["learned", "sinusoidal"])
    def test_mask_reaches_following_layer(self, position):
        tokens = keras.Input((None,), dtype="int32")
        embedded = TokenAndPositionEmbedding(
            10, 6, 4, mask_zero=True, position=position
        )(tokens)
        pooled = keras.layers.GlobalAveragePooling1D()(embedded)
        model = keras.Model(tokens, [embedded, pooled])
        ids = np.array([[5, 3, 0, 0, 0], [1, 2, 3, 4, 0]])
        seq, avg = (to_np(t) for t in model(ids))
        # The pooling layer must average over the non-padding tokens only.
        expected = np.stack(
            [seq[0, :2].mean(axis=0), seq[1, :4].mean(axis=0)]
        )
        np.testing.assert_allclose(avg, expected, atol=1e-6)
        assert not np.allclose(avg, seq.mean(axis=1), atol=1e-4)

    def test_mixed_float16_policy(self, mixed_float16_policy):
        layer = TokenAndPositionEmbedding(10, 6, 4)
        ids = np.array([[1, 2, 3]])
        out = layer(ids)
        assert dtype_of(out) == "float16"
        assert dtype_of(layer.token_embedding.embeddings) == "float32"
        tokens = to_np(layer.token_embedding.embeddings)
        positions = to_np(layer.position_embedding.embeddings)
        np.testing.assert_allclose(
            to_np(out), tokens[ids] + positions[:3], atol=1e-3
        )

    def test_too_long_input_raises(self):
        with pytest.raises(ValueError, match="sequence_length=6"):
            TokenAndPositionEmbedding(10, 6, 4)(np.ones((1, 7), "int32"))

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            (
                {"position": "relative"},
                r"`position` must be one of \('learned', 'sinusoidal'\).*'relative'",
            ),
            (
                {"position": "sinusoidal", "embedding_dim": 5},
                "`embedding_dim` must be even.*embedding_dim=5",
            ),
            ({"vocabulary_size": 0}, "`vocabulary_size` must be an integer >= 1"),
            ({"sequence_length": None}, "`sequence_length` must be an integer"),
            ({"embedding_dim": 2.0}, "`embedding_dim` must be an integer.*2.0"),
        ],
    )
    def test_bad_arguments(self, kwargs, message):
        args = {"vocabulary_size": 10, "sequence_length": 6, "embedding_dim": 4}
        with pytest.raises(ValueError, match=message):
            TokenAndPositionEmbedding(**{**args, **kwargs})

    def test_config_round_trip(self):
        layer = TokenAndPositionEmbedding(
            vocabulary_size=10,
            sequence_length=6,
            embedding_dim=4,
            mask_zero=True,
            position="sinusoidal",
            embeddings_initializer="zeros",
            max_wavelength=123,
        )
        config = layer.get_config()
        clone = TokenAndPositionEmbedding.from_config(config)
        assert clone.get_config() == config
        assert clone.mask_zero and clone.position == "sinusoidal"
        assert clone.position_embedding.max_wavelength == 123
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(layer)
        )
        assert isinstance(restored, TokenAndPositionEmbedding)
        assert restored.get_config() == config


# --------------------------------------------------------------------------
# RotaryEmbedding
# --------------------------------------------------------------------------


class TestRotaryEmbedding:
    def test_values(self):
        x = np.random.default_rng(0).standard_normal((2, 5, 3, 8)).astype("float32")
        layer = RotaryEmbedding(max_wavelength=100, scaling_factor=2.0)
        np.testing.assert_allclose(
            to_np(layer(x)),
            ref_rope(x, max_wavelength=100.0, scaling_factor=2.0),
            atol=1e-5,
        )
        positions = np.array([[3, 4, 5, 6, 7], [0, 0, 0, 1, 2]])
        np.testing.assert_allclose(
            to_np(layer(x, positions=positions)),
            ref_rope(x, positions, max_wavelength=100.0, scaling_factor=2.0),
            atol=1e-5,
        )

    def test_mixed_float16_policy(self, mixed_float16_policy):
        x = np.random.default_rng(1).standard_normal((1, 6, 2, 4)).astype("float32")
        out = RotaryEmbedding()(x)
        assert dtype_of(out) == "float16"
        np.testing.assert_allclose(
            to_np(out), ref_rope(x.astype("float16")), atol=4e-3
        )

    def test_jit_equals_eager(self):
        x = np.random.default_rng(2).standard_normal((2, 5, 3, 8)).astype("float32")
        layer = RotaryEmbedding()
        compiled = tf.function(jit_compile=True)(
            lambda x, p: layer(x, positions=p)
        )(x, tf.range(10, 15))
        eager = layer(x, positions=np.arange(10, 15))
        np.testing.assert_allclose(to_np(compiled), to_np(eager), atol=1e-6)

    def test_bad_arguments(self):
        with pytest.raises(
            ValueError, match=r"\(batch, seq, heads, head_dim\).*\(2, 5, 8\)"
        ):
            RotaryEmbedding()(np.zeros((2, 5, 8), "float32"))
        with pytest.raises(ValueError, match=r"static, even last axis.*\(2, 5, 3, 7\)"):
            RotaryEmbedding()(np.zeros((2, 5, 3, 7), "float32"))
        with pytest.raises(ValueError, match="`scaling_factor` must be a positive.*-2"):
            RotaryEmbedding(scaling_factor=-2)

    def test_config_round_trip(self):
        layer = RotaryEmbedding(max_wavelength=500000, scaling_factor=8.0)
        config = layer.get_config()
        assert config["max_wavelength"] == 500000
        assert config["scaling_factor"] == 8.0
        assert RotaryEmbedding.from_config(config).get_config() == config


# --------------------------------------------------------------------------
# Saving: one functional model using all four layers, saved as `.keras` and
# reloaded without custom_objects.
# --------------------------------------------------------------------------


def test_keras_save_and_load_in_functional_model(tmp_path):
    tokens = keras.Input((None,), dtype="int32")
    x = TokenAndPositionEmbedding(
        vocabulary_size=20, sequence_length=8, embedding_dim=8, mask_zero=True
    )(tokens)
    x = x + SinusoidalPositionEncoding(max_wavelength=100)(x)
    x = x + PositionEmbedding(sequence_length=8)(x)
    heads = keras.layers.Reshape((-1, 2, 4))(x)
    rotated = RotaryEmbedding(scaling_factor=2.0)(heads)
    model = keras.Model(tokens, [x, rotated])

    ids = np.array([[3, 7, 1, 0, 0, 0], [19, 2, 5, 6, 9, 0]])
    before = [to_np(t) for t in model(ids)]
    restored = save_and_reload(model, tmp_path)
    after = [to_np(t) for t in restored(ids)]
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)
    # The reloaded layers are the registered classes with their settings.
    by_type = {type(layer).__name__: layer for layer in restored.layers}
    assert by_type["RotaryEmbedding"].scaling_factor == 2.0
    assert by_type["TokenAndPositionEmbedding"].mask_zero
    assert by_type["SinusoidalPositionEncoding"].max_wavelength == 100
    # The reloaded embedding still produces the padding mask.
    emb = by_type["TokenAndPositionEmbedding"](ids)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(emb._keras_mask), ids != 0
    )


@pytest.mark.parametrize("position", ["learned", "sinusoidal"])
def test_save_and_load_keeps_masked_pooling(tmp_path, position):
    tokens = keras.Input((6,), dtype="int32")
    x = TokenAndPositionEmbedding(
        10, 6, 4, mask_zero=True, position=position
    )(tokens)
    outputs = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(tokens, outputs)
    ids = np.array([[1, 2, 0, 0, 0, 0], [3, 4, 5, 6, 7, 8]])
    helpers.assert_keras_roundtrip(model, ids, tmp_path, atol=0)


def test_export_serves_without_the_package(tmp_path):
    # SavedModel export, served in a fresh process that never imports
    # keras_attention (see tests/helpers.py).
    tokens = keras.Input((5,), dtype="int32")
    x = TokenAndPositionEmbedding(
        12, 5, 8, mask_zero=True, position="sinusoidal"
    )(tokens)
    x = x + PositionEmbedding(sequence_length=5)(x)
    x = RotaryEmbedding()(keras.layers.Reshape((5, 2, 4))(x))
    model = keras.Model(tokens, x)
    ids = np.array([[1, 2, 3, 0, 0], [11, 10, 9, 8, 7]], dtype="int32")
    helpers.assert_export_roundtrip(model, ids, tmp_path)


def test_math_sanity_of_reference():
    # Guard the test's own reference against silent mistakes.
    table = ref_sinusoidal(2, 4, max_wavelength=100.0)
    np.testing.assert_allclose(
        table[1], [math.sin(1), math.cos(1), math.sin(0.1), math.cos(0.1)]
    )
