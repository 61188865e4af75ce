"""Tests for `TransformerDecoder` (decoder-only and encoder-decoder).

Expected numbers come from `transformer_reference.py`, a float64 NumPy
forward pass written from the equations, fed with the block's own weights.
"""

import json

import keras
import numpy as np
import pytest
from keras.src import testing

import helpers
import transformer_reference as ref

from keras_attention.layers.attention.multi_head_attention import MultiHeadAttention
from keras_attention.layers.attention.scaled_dot_product_attention import (
    ScaledDotProductAttention,
)
from keras_attention.layers.transformer.transformer_decoder import TransformerDecoder
from keras_attention.layers.transformer.transformer_encoder import TransformerEncoder

ARRANGEMENTS = {
    "post_norm": {},
    "pre_norm": {"norm_first": True},
    "parallel": {"parallel": True},
}
SOURCE = np.array([[4, 8, 2, 0], [6, 0, 0, 0]], "int32")
TARGET = np.array([[1, 5, 3, 7, 0], [2, 9, 1, 0, 0]], "int32")


def random_inputs(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def built_decoder(seed=0, encoder_dim=6, **kwargs):
    kwargs.setdefault("intermediate_dim", 12)
    kwargs.setdefault("num_heads", 2)
    block = TransformerDecoder(**kwargs)
    encoder_shape = None if encoder_dim is None else (None, None, encoder_dim)
    block.build((None, None, 8), encoder_shape)
    ref.randomize(block, seed)
    return block


def seq2seq_model(**kwargs):
    source = keras.Input(shape=(None,), dtype="int32", name="source")
    target = keras.Input(shape=(None,), dtype="int32", name="target")
    encoded = keras.layers.Embedding(12, 8, mask_zero=True)(source)
    encoded = TransformerEncoder(12, 2)(encoded)
    x = keras.layers.Embedding(12, 8, mask_zero=True)(target)
    x = TransformerDecoder(12, 2, **kwargs)(x, encoded)
    return keras.Model([source, target], keras.layers.Dense(12)(x))


# --------------------------------------------------------------------------
# Keras' layer conformance harness.
# --------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")
class TestConformance(testing.TestCase):
    def test_decoder_only(self):
        self.run_layer_test(
            TransformerDecoder,
            init_kwargs={"intermediate_dim": 6, "num_heads": 2, "dropout": 0.1},
            input_shape=(2, 3, 4),
            expected_output_shape=(2, 3, 4),
            # 8 attention + 4 feed-forward + 2 x 2 layer norm.
            expected_num_trainable_weights=16,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
            # Training (with XLA) is covered by `test_fit_with_jit_compile_trains`.
            run_training_check=False,
        )

    def test_encoder_decoder(self):
        self.run_layer_test(
            TransformerDecoder,
            init_kwargs={"intermediate_dim": 6, "num_heads": 2, "norm_first": True},
            input_shape={
                "decoder_sequence_shape": (2, 3, 4),
                "encoder_sequence_shape": (2, 5, 6),
            },
            expected_output_shape=(2, 3, 4),
            # 2 x 8 attention + 4 feed-forward + 3 x 2 layer norm.
            expected_num_trainable_weights=26,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
            # The harness trains `layer(x)` with one input; training with an
            # encoder sequence is covered by `test_fit_with_jit_compile_trains`.
            run_training_check=False,
        )


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------


class TestDecoderValues:
    @pytest.mark.parametrize("arrangement", sorted(ARRANGEMENTS))
    def test_encoder_decoder_matches_numpy_reference(self, arrangement):
        block = built_decoder(seed=1, **ARRANGEMENTS[arrangement])
        x = random_inputs((2, 5, 8), 2)
        encoded = random_inputs((2, 4, 6), 3)
        mask, encoder_mask = TARGET != 0, SOURCE != 0
        expected, self_w, cross_w = ref.decoder(
            block, x, encoded, mask=mask, encoder_mask=encoder_mask
        )
        got, self_scores, cross_scores = block(
            x,
            encoded,
            decoder_padding_mask=mask,
            encoder_padding_mask=encoder_mask,
            return_attention_scores=True,
        )
        np.testing.assert_allclose(ref.to_np(got)[mask], expected[mask], atol=3e-5)
        np.testing.assert_allclose(ref.to_np(self_scores), self_w, atol=1e-6)
        np.testing.assert_allclose(ref.to_np(cross_scores), cross_w, atol=1e-6)
        # Causal by default: no weight on later positions.
        assert np.all(np.triu(ref.to_np(self_scores)[0, 0], k=1) == 0.0)

    @pytest.mark.parametrize("arrangement", sorted(ARRANGEMENTS))
    def test_decoder_only_matches_numpy_reference(self, arrangement):
        block = built_decoder(seed=4, encoder_dim=None, **ARRANGEMENTS[arrangement])
        x = random_inputs((2, 5, 8), 5)
        expected, self_w, _ = ref.decoder(block, x)
        got, scores = block(x, return_attention_scores=True)
        np.testing.assert_allclose(ref.to_np(got), expected, atol=3e-5)
        np.testing.assert_allclose(ref.to_np(scores), self_w, atol=1e-6)
        assert block.cross_attention_layer is None
        assert not block.has_cross_attention
        # 8 attention + 4 feed-forward + 2 norms (the cross norm is unbuilt).
        assert len(block.weights) == (14 if arrangement == "parallel" else 16)

    def test_non_causal_and_attention_masks(self):
        block = built_decoder(seed=6)
        x = random_inputs((2, 5, 8), 7)
        encoded = random_inputs((2, 4, 6), 8)
        expected, _, _ = ref.decoder(block, x, encoded, causal=False)
        np.testing.assert_allclose(
            ref.to_np(block(x, encoded, use_causal_mask=False)), expected, atol=3e-5
        )
        # Attention masks equal to the padding give the padded result.
        mask, encoder_mask = TARGET != 0, SOURCE != 0
        by_padding = block(
            x,
            encoded,
            decoder_padding_mask=mask,
            encoder_padding_mask=encoder_mask,
        )
        by_attention_mask = block(
            x,
            encoded,
            decoder_attention_mask=np.broadcast_to(mask[:, None, :], (2, 5, 5)),
            encoder_attention_mask=np.broadcast_to(encoder_mask[:, None, :], (2, 5, 4)),
        )
        np.testing.assert_allclose(
            ref.to_np(by_padding)[mask], ref.to_np(by_attention_mask)[mask], atol=1e-6
        )

    def test_scaled_dot_product_cross_attention(self):
        block = TransformerDecoder(
            12, 2, cross_attention="scaled_dot_product", cross_attention_kwargs={}
        )
        x = random_inputs((2, 5, 8))
        encoded = random_inputs((2, 4, 8), 1)
        out, self_scores, cross_scores = block(
            x, encoded, encoder_padding_mask=SOURCE != 0, return_attention_scores=True
        )
        assert isinstance(block.cross_attention_layer, ScaledDotProductAttention)
        assert isinstance(block.self_attention_layer, MultiHeadAttention)
        assert tuple(self_scores.shape) == (2, 2, 5, 5)
        assert tuple(cross_scores.shape) == (2, 5, 4)
        # Plain softmax(h e^T / sqrt(8)) over the unpadded keys, where h is
        # the (post-norm) output of the self-attention sub-layer.
        x64 = x.astype("float64")
        attended, _ = ref.attention(block.self_attention_layer, x64, x64, causal=True)
        h = ref.layer_norm(block.self_attention_norm, x64 + attended)
        logits = np.einsum("bqd,bkd->bqk", h, encoded) / np.sqrt(8.0)
        logits = np.where((SOURCE != 0)[:, None, :], logits, -np.inf)
        expected = np.exp(logits - logits.max(-1, keepdims=True))
        expected /= expected.sum(-1, keepdims=True)
        np.testing.assert_allclose(ref.to_np(cross_scores), expected, atol=1e-5)
        assert np.isfinite(ref.to_np(out)).all()


# --------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------


class TestMasking:
    @pytest.mark.parametrize("arrangement", sorted(ARRANGEMENTS))
    def test_padding_does_not_change_real_positions(self, arrangement):
        source_embedding = keras.layers.Embedding(12, 6, mask_zero=True)
        target_embedding = keras.layers.Embedding(12, 8, mask_zero=True)
        block = TransformerDecoder(12, 2, **ARRANGEMENTS[arrangement])
        block(target_embedding(TARGET), source_embedding(SOURCE))
        ref.randomize(block, 9)
        padded = ref.to_np(block(target_embedding(TARGET), source_embedding(SOURCE)))
        for row, (target_len, source_len) in enumerate(((4, 3), (3, 1))):
            alone = block(
                target_embedding(TARGET[row : row + 1, :target_len]),
                source_embedding(SOURCE[row : row + 1, :source_len]),
            )
            np.testing.assert_allclose(
                padded[row, :target_len], ref.to_np(alone)[0], atol=3e-5
            )

    def test_keras_masks_flow_from_encoder_to_decoder_output(self):
        source = keras.layers.Embedding(12, 8, mask_zero=True)(SOURCE)
        encoded = TransformerEncoder(12, 2)(source)
        target = keras.layers.Embedding(12, 8, mask_zero=True)(TARGET)
        block = TransformerDecoder(12, 2)
        out = block(target, encoded)
        np.testing.assert_array_equal(ref.to_np(out._keras_mask), TARGET != 0)
        # The caller's tensors keep their masks.
        np.testing.assert_array_equal(ref.to_np(encoded._keras_mask), SOURCE != 0)
        np.testing.assert_array_equal(ref.to_np(target._keras_mask), TARGET != 0)
        explicit = block(
            ref.to_np(target),
            ref.to_np(encoded),
            decoder_padding_mask=TARGET != 0,
            encoder_padding_mask=SOURCE != 0,
        )
        valid = TARGET != 0
        np.testing.assert_allclose(
            ref.to_np(out)[valid], ref.to_np(explicit)[valid], atol=1e-6
        )

    @pytest.mark.parametrize("arrangement", sorted(ARRANGEMENTS))
    def test_fully_padded_sequences_are_finite(self, arrangement):
        block = TransformerDecoder(12, 2, **ARRANGEMENTS[arrangement])
        x = random_inputs((2, 3, 8))
        encoded = random_inputs((2, 4, 6), 1)
        out, self_scores, cross_scores = block(
            x,
            encoded,
            decoder_padding_mask=np.array([[0, 0, 0], [1, 1, 0]], bool),
            encoder_padding_mask=np.zeros((2, 4), bool),
            return_attention_scores=True,
        )
        assert np.isfinite(ref.to_np(out)).all()
        assert np.all(ref.to_np(cross_scores) == 0.0)
        assert np.all(ref.to_np(self_scores)[0] == 0.0)


# --------------------------------------------------------------------------
# Choosing the attention layers; the build rule
# --------------------------------------------------------------------------


class TestAttentionChoice:
    def test_cross_attention_defaults_to_attention(self):
        block = TransformerDecoder(12, 4, attention_kwargs={"num_key_value_heads": 2})
        block(random_inputs((2, 5, 8)), random_inputs((2, 3, 6)))
        cross = block.cross_attention_layer
        assert isinstance(cross, MultiHeadAttention)
        assert cross is not block.self_attention_layer
        assert (cross.num_heads, cross.num_key_value_heads, cross.key_dim) == (4, 2, 2)
        assert tuple(cross.key_dense.kernel.shape) == (6, 2, 2)
        # Given cross_attention_kwargs replace the inherited ones.
        block = TransformerDecoder(
            12,
            4,
            attention_kwargs={"num_key_value_heads": 2},
            cross_attention_kwargs={"num_key_value_heads": 1},
        )
        block(random_inputs((2, 5, 8)), random_inputs((2, 3, 6)))
        assert block.cross_attention_layer.num_key_value_heads == 1
        assert block.self_attention_layer.num_key_value_heads == 2
        # An explicit cross_attention does not inherit attention_kwargs.
        block = TransformerDecoder(
            12,
            4,
            attention_kwargs={"num_key_value_heads": 2},
            cross_attention="multi_head",
        )
        block(random_inputs((2, 5, 8)), random_inputs((2, 3, 6)))
        assert block.cross_attention_layer.num_key_value_heads == 4

    def test_instance_attention_is_cloned_for_cross_attention(self):
        attention = MultiHeadAttention(num_heads=2, key_dim=3, name="mine")
        block = TransformerDecoder(12, 2, attention=attention)
        block(random_inputs((2, 5, 8)), random_inputs((2, 3, 6)))
        assert block.self_attention_layer is attention
        cross = block.cross_attention_layer
        assert cross is not attention and cross.name == "cross_attention"
        assert cross.key_dim == 3
        assert tuple(cross.key_dense.kernel.shape) == (6, 2, 3)
        config = block.get_config()
        assert config["cross_attention"] is None
        clone = TransformerDecoder.from_config(config)
        x, encoded = random_inputs((2, 5, 8)), random_inputs((2, 3, 6))
        clone(x, encoded)
        ref.copy_block_weights(block, clone)
        np.testing.assert_allclose(
            ref.to_np(clone(x, encoded)), ref.to_np(block(x, encoded)), atol=1e-6
        )

    @pytest.mark.parametrize(
        "cross",
        [MultiHeadAttention, {"variant": "multi_head"}, "instance"],
        ids=["class", "variant_dict", "instance"],
    )
    def test_cross_attention_identifier_forms(self, cross):
        if cross == "instance":
            cross = MultiHeadAttention(num_heads=2, key_dim=4)
        reference = built_decoder(seed=12)
        block = TransformerDecoder(12, 2, cross_attention=cross)
        x, encoded = random_inputs((2, 5, 8)), random_inputs((2, 3, 6))
        block(x, encoded)
        ref.copy_block_weights(reference, block)
        expected = ref.to_np(reference(x, encoded))
        np.testing.assert_allclose(ref.to_np(block(x, encoded)), expected, atol=1e-6)
        clone = TransformerDecoder.from_config(block.get_config())
        clone(x, encoded)
        ref.copy_block_weights(reference, clone)
        np.testing.assert_allclose(ref.to_np(clone(x, encoded)), expected, atol=1e-6)

    def test_seeded_initializer_is_reproducible_without_repeats(self):
        def make():
            block = TransformerDecoder(
                12, 2, kernel_initializer=keras.initializers.GlorotUniform(seed=3)
            )
            block.build((None, None, 8), (None, None, 8))
            return block

        first, second = make(), make()
        for a, b in zip(first.get_weights(), second.get_weights()):
            np.testing.assert_array_equal(a, b)
        kernels = [
            ref.to_np(first.self_attention_layer.query_dense.kernel),
            ref.to_np(first.self_attention_layer.key_dense.kernel),
            ref.to_np(first.cross_attention_layer.query_dense.kernel),
            ref.to_np(first.cross_attention_layer.key_dense.kernel),
        ]
        for i in range(len(kernels)):
            for j in range(i):
                assert np.abs(kernels[i] - kernels[j]).max() > 1e-3
        feed_forward = first.feed_forward_layer
        w1 = ref.to_np(feed_forward.intermediate_dense.kernel)
        w2 = ref.to_np(feed_forward.output_dense.kernel)
        assert np.abs(w1.ravel()[:8] - w2.ravel()[:8]).max() > 1e-3

    def test_build_rule(self):
        x, encoded = random_inputs((2, 5, 8)), random_inputs((2, 3, 6))
        decoder_only = TransformerDecoder(12, 2, name="dec")
        decoder_only(x)
        with pytest.raises(
            ValueError,
            match=r"Layer 'dec' \(TransformerDecoder\): `encoder_sequence` must "
            r"not be given: the layer was built without an encoder sequence",
        ):
            decoder_only(x, encoded)
        with pytest.raises(ValueError, match="`encoder_padding_mask` needs an"):
            decoder_only(x, encoder_padding_mask=np.ones((2, 3), bool))
        encoder_decoder = TransformerDecoder(12, 2)
        encoder_decoder(x, encoded)
        with pytest.raises(ValueError, match="`encoder_sequence` must be given"):
            encoder_decoder(x)
        # The same rule in functional models, before any data flows.
        with pytest.raises(ValueError, match="`encoder_sequence` must be given"):
            encoder_decoder(keras.Input(shape=(None, 8)))
        # An explicit build fixes the kind as well.
        block = TransformerDecoder(12, 2)
        block.build((None, None, 8), (None, None, 6))
        assert block.has_cross_attention
        assert tuple(block(x, encoded).shape) == (2, 5, 8)


# --------------------------------------------------------------------------
# Models, precision, training, saving
# --------------------------------------------------------------------------


class TestModels:
    def test_sequential_decoder_only(self):
        model = keras.Sequential(
            [
                keras.Input(shape=(5, 8)),
                TransformerDecoder(12, 2, norm_first=True),
                TransformerDecoder(12, 2, parallel=True),
            ]
        )
        x = random_inputs((2, 5, 8))
        first, _, _ = ref.decoder(model.layers[0], x)
        expected, _, _ = ref.decoder(model.layers[1], first)
        np.testing.assert_allclose(ref.to_np(model(x)), expected, atol=3e-5)

    def test_functional_with_scores(self):
        target = keras.Input(shape=(None, 8))
        source = keras.Input(shape=(None, 6))
        out, self_scores, cross_scores = TransformerDecoder(12, 2)(
            target, source, return_attention_scores=True
        )
        assert tuple(self_scores.shape) == (None, 2, None, None)
        assert tuple(cross_scores.shape) == (None, 2, None, None)
        model = keras.Model([target, source], [out, self_scores, cross_scores])
        x, encoded = random_inputs((2, 5, 8)), random_inputs((2, 3, 6))
        got = model([x, encoded])
        expected = ref.decoder(model.layers[2], x, encoded)
        for g, e in zip(got, expected):
            np.testing.assert_allclose(ref.to_np(g), e, atol=3e-5)

    def test_subclassed_seq2seq(self):
        class Seq2Seq(keras.Model):
            def __init__(self):
                super().__init__()
                self.source_embedding = keras.layers.Embedding(12, 8, mask_zero=True)
                self.target_embedding = keras.layers.Embedding(12, 8, mask_zero=True)
                self.encoder = TransformerEncoder(12, 2)
                self.decoder = TransformerDecoder(12, 2, norm_first=True)

            def call(self, inputs):
                source, target = inputs
                encoded = self.encoder(self.source_embedding(source))
                return self.decoder(self.target_embedding(target), encoded)

        model = Seq2Seq()
        got = ref.to_np(model([SOURCE, TARGET]))
        encoded, _ = ref.encoder(
            model.encoder, ref.to_np(model.source_embedding(SOURCE)), mask=SOURCE != 0
        )
        expected, _, _ = ref.decoder(
            model.decoder,
            ref.to_np(model.target_embedding(TARGET)),
            encoded,
            mask=TARGET != 0,
            encoder_mask=SOURCE != 0,
        )
        valid = TARGET != 0
        np.testing.assert_allclose(got[valid], expected[valid], atol=3e-5)

    def test_compute_output_shape(self):
        block = TransformerDecoder(12, 2)
        assert block.compute_output_shape((3, 7, 8)) == (3, 7, 8)
        assert block.compute_output_shape((3, 7, 8), (3, 2, 6)) == (3, 7, 8)
        with pytest.raises(ValueError, match="`encoder_sequence` must have rank 3"):
            block.compute_output_shape((3, 7, 8), (3, 6))

    @pytest.mark.parametrize(
        "policy, atol", [("mixed_float16", 2e-2), ("mixed_bfloat16", 1e-1)]
    )
    def test_mixed_precision(self, policy, atol):
        reference = built_decoder(seed=13, norm_first=True)
        x, encoded = random_inputs((2, 5, 8)), random_inputs((2, 3, 6))
        expected = ref.to_np(reference(x, encoded))
        keras.config.set_dtype_policy(policy)
        block = TransformerDecoder(12, 2, norm_first=True)
        block(x, encoded)
        ref.copy_block_weights(reference, block)
        out, self_scores, cross_scores = block(x, encoded, return_attention_scores=True)
        compute = policy.split("_")[1]
        for tensor in (out, self_scores, cross_scores):
            assert keras.backend.standardize_dtype(tensor.dtype) == compute
        assert block.cross_attention_layer.compute_dtype == compute
        out = ref.to_np(out)
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, expected, atol=atol, rtol=atol)

    def test_fit_with_jit_compile_trains(self):
        model = seq2seq_model(dropout=0.1, parallel=True)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=True,
        )
        encoder, decoder = model.layers[4], model.layers[5]
        assert isinstance(decoder, TransformerDecoder)
        before = [ref.to_np(w) for w in encoder.weights + decoder.weights]
        labels = np.roll(TARGET, -1, axis=1)
        history = model.fit([SOURCE, TARGET], labels, epochs=5, batch_size=2, verbose=0)
        losses = history.history["loss"]
        assert np.isfinite(losses).all() and losses[-1] < losses[0]
        after = [ref.to_np(w) for w in encoder.weights + decoder.weights]
        assert len(after) == 16 + 22
        assert all(np.abs(a - b).max() > 0 for a, b in zip(after, before))

    def test_keras_roundtrip_and_export(self, tmp_path):
        model = seq2seq_model(norm_first=True)
        for layer in model.layers:
            ref.randomize(layer, 14)
        restored = helpers.assert_keras_roundtrip(model, [SOURCE, TARGET], tmp_path)
        assert restored.layers[5].has_cross_attention
        helpers.assert_export_roundtrip(model, [SOURCE, TARGET], tmp_path)

    def test_keras_roundtrip_decoder_only(self, tmp_path):
        tokens = keras.Input(shape=(None,), dtype="int32")
        x = keras.layers.Embedding(12, 8, mask_zero=True)(tokens)
        x = TransformerDecoder(12, 2, attention_kwargs={"position_encoding": "rope"})(x)
        model = keras.Model(tokens, keras.layers.Dense(12)(x))
        for layer in model.layers:
            ref.randomize(layer, 15)
        restored = helpers.assert_keras_roundtrip(model, TARGET, tmp_path)
        block = restored.layers[2]
        assert not block.has_cross_attention
        assert block.self_attention_layer.position_encoding == "rope"

    def test_config_is_json_and_complete(self):
        block = TransformerDecoder(
            16,
            4,
            attention_kwargs={"num_key_value_heads": 2},
            cross_attention={"variant": "multi_head", "num_key_value_heads": 1},
            cross_attention_kwargs={"dropout": 0.1},
            dropout=0.2,
            activation="gelu",
            norm_first=True,
            name="dec",
        )
        config = block.get_config()
        json.dumps(config)
        assert config["cross_attention"] == {
            "variant": "multi_head",
            "num_key_value_heads": 1,
        }
        assert config["cross_attention_kwargs"] == {"dropout": 0.1}
        clone = TransformerDecoder.from_config(config)
        assert clone.get_config() == config
        clone(random_inputs((1, 3, 8)), random_inputs((1, 2, 5)))
        cross = clone.cross_attention_layer
        assert (cross.num_key_value_heads, cross.dropout) == (1, 0.1)
        assert clone.self_attention_layer.num_key_value_heads == 2


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class TestErrors:
    @pytest.mark.parametrize(
        "kwargs, match",
        [
            (
                {"intermediate_dim": -1},
                r"`intermediate_dim` must be a positive integer",
            ),
            ({"dropout": 2}, r"`dropout` must be a float in \[0, 1\)"),
            ({"parallel": 1}, r"`parallel` must be a bool\. Received: parallel=1"),
            (
                {"cross_attention": "nope"},
                r"`cross_attention` must be a registered attention variant.*Received: cross_attention='nope'",
            ),
            (
                {"cross_attention_kwargs": "x"},
                r"`cross_attention_kwargs` must be a dict or None",
            ),
            (
                {
                    "cross_attention": MultiHeadAttention(2, 4),
                    "cross_attention_kwargs": {"key_dim": 2},
                },
                r"`cross_attention_kwargs` cannot be combined with a layer instance",
            ),
        ],
    )
    def test_bad_constructor_arguments(self, kwargs, match):
        kwargs = {"intermediate_dim": 8, "num_heads": 2, **kwargs}
        with pytest.raises(ValueError, match=r"\(TransformerDecoder\): " + match):
            TransformerDecoder(**kwargs)

    def test_bad_shapes(self):
        with pytest.raises(
            ValueError,
            match=r"`encoder_sequence` must have rank 3.*encoder_sequence.shape=\(2, 6\)",
        ):
            TransformerDecoder(8, 2)(random_inputs((2, 5, 8)), random_inputs((2, 6)))
        with pytest.raises(ValueError, match=r"`decoder_sequence` must have rank 3"):
            TransformerDecoder(8, 2)(random_inputs((5, 8)))
        with pytest.raises(
            ValueError, match=r"`num_heads` must divide the hidden size \(9\)"
        ):
            TransformerDecoder(8, 2)(random_inputs((2, 5, 9)))
        with pytest.raises(
            ValueError, match=r"`encoder_padding_mask` must have shape \(2, 3\)"
        ):
            TransformerDecoder(8, 2)(
                random_inputs((2, 5, 8)),
                random_inputs((2, 3, 8)),
                encoder_padding_mask=np.ones((2, 5), bool),
            )
