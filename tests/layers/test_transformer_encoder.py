"""Tests for `TransformerEncoder` and `FeedForward`.

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
from keras_attention.layers.transformer.feed_forward import FeedForward
from keras_attention.layers.attention.scaled_dot_product_attention import (
    ScaledDotProductAttention,
)
from keras_attention.layers.transformer.transformer_encoder import TransformerEncoder

ARRANGEMENTS = {
    "post_norm": {},
    "pre_norm": {"norm_first": True},
    "parallel": {"parallel": True},
}
TOKENS = np.array([[3, 7, 1, 9, 0, 0], [5, 2, 0, 0, 0, 0]], "int32")


def random_inputs(shape=(2, 5, 8), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def built_encoder(seed=0, dim=8, **kwargs):
    kwargs.setdefault("intermediate_dim", 12)
    kwargs.setdefault("num_heads", 2)
    block = TransformerEncoder(**kwargs)
    block.build((None, None, dim))
    ref.randomize(block, seed)
    return block


def encoder_model(**kwargs):
    tokens = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(12, 8, mask_zero=True)(tokens)
    x = TransformerEncoder(intermediate_dim=12, num_heads=2, **kwargs)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(3)(x))


# --------------------------------------------------------------------------
# Keras' layer conformance harness (config round trip, build, symbolic call,
# masking support and mixed precision).
# --------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")
class TestConformance(testing.TestCase):
    def test_feed_forward(self):
        self.run_layer_test(
            FeedForward,
            init_kwargs={"intermediate_dim": 6, "activation": "gelu"},
            input_shape=(2, 3, 4),
            expected_output_shape=(2, 3, 4),
            expected_num_trainable_weights=4,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
            # XLA training is covered by `test_fit_with_jit_compile_trains`
            # (each XLA compilation costs seconds on a small CPU).
            run_training_check=False,
        )

    def test_transformer_encoder(self):
        self.run_layer_test(
            TransformerEncoder,
            init_kwargs={"intermediate_dim": 6, "num_heads": 2, "dropout": 0.1},
            input_shape=(2, 3, 4),
            expected_output_shape=(2, 3, 4),
            # 8 attention + 4 feed-forward + 2 x 2 layer norm.
            expected_num_trainable_weights=16,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
            # XLA training is covered by `test_fit_with_jit_compile_trains`
            # (each XLA compilation costs seconds on a small CPU).
            run_training_check=False,
        )


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------


class TestFeedForward:
    def test_matches_numpy(self):
        layer = FeedForward(intermediate_dim=6, output_dim=3)
        x = random_inputs((2, 4, 5))
        layer.build(x.shape)
        ref.randomize(layer, 1)
        expected = ref.feed_forward(layer, x.astype("float64"))
        np.testing.assert_allclose(ref.to_np(layer(x)), expected, atol=1e-5)
        assert layer.compute_output_shape((2, 4, 5)) == (2, 4, 3)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="`intermediate_dim` must be a positive"):
            FeedForward(intermediate_dim=0)
        with pytest.raises(ValueError, match=r"`dropout` must be a float in \[0, 1\)"):
            FeedForward(intermediate_dim=4, dropout=1.5)
        with pytest.raises(ValueError, match="known last.*inputs.shape=\\(2, None\\)"):
            FeedForward(intermediate_dim=4).build((2, None))


class TestEncoderValues:
    @pytest.mark.parametrize("arrangement", sorted(ARRANGEMENTS))
    def test_matches_numpy_reference(self, arrangement):
        block = built_encoder(seed=3, **ARRANGEMENTS[arrangement])
        x = random_inputs()
        expected, expected_scores = ref.encoder(block, x)
        got, scores = block(x, return_attention_scores=True)
        np.testing.assert_allclose(ref.to_np(got), expected, atol=2e-5)
        np.testing.assert_allclose(ref.to_np(scores), expected_scores, atol=1e-6)

    @pytest.mark.parametrize("arrangement", sorted(ARRANGEMENTS))
    def test_matches_reference_with_padding_and_causal_mask(self, arrangement):
        block = built_encoder(seed=4, **ARRANGEMENTS[arrangement])
        x = random_inputs((2, 6, 8), seed=5)
        mask = TOKENS != 0
        expected, expected_scores = ref.encoder(block, x, mask=mask, causal=True)
        got, scores = block(
            x, padding_mask=mask, use_causal_mask=True, return_attention_scores=True
        )
        got = ref.to_np(got)
        np.testing.assert_allclose(got[mask], expected[mask], atol=2e-5)
        np.testing.assert_allclose(ref.to_np(scores), expected_scores, atol=1e-6)
        assert np.isfinite(got).all()

    def test_attention_mask_argument(self):
        block = built_encoder(seed=6)
        x = random_inputs((2, 4, 8))
        # A (batch, T, T) mask equal to "causal" gives the causal result.
        causal = np.broadcast_to(np.tril(np.ones((4, 4), bool)), (2, 4, 4))
        np.testing.assert_allclose(
            ref.to_np(block(x, attention_mask=causal)),
            ref.to_np(block(x, use_causal_mask=True)),
            atol=1e-6,
        )
        expected, _ = ref.encoder(block, x, causal=True)
        np.testing.assert_allclose(
            ref.to_np(block(x, attention_mask=causal)), expected, atol=2e-5
        )

    def test_return_attention_scores(self):
        block = built_encoder(seed=7, num_heads=4)
        x = random_inputs((2, 6, 8))
        mask = TOKENS != 0
        out, scores = block(
            x, padding_mask=mask, use_causal_mask=True, return_attention_scores=True
        )
        scores = ref.to_np(scores)
        assert scores.shape == (2, 4, 6, 6)
        # Rows of real queries sum to one; padded keys and future keys get 0.
        sums = scores.sum(-1)
        np.testing.assert_allclose(sums[0][:, :4], 1.0, atol=1e-6)
        np.testing.assert_allclose(sums[1][:, :2], 1.0, atol=1e-6)
        assert np.all(scores[1][..., 2:] == 0.0)
        assert np.all(np.triu(scores[0][0], k=1) == 0.0)
        np.testing.assert_allclose(
            ref.to_np(out), ref.to_np(block(x, padding_mask=mask, use_causal_mask=True))
        )

    def test_dropout_only_in_training(self):
        block = built_encoder(seed=8, dropout=0.5)
        x = random_inputs()
        inference = ref.to_np(block(x))
        np.testing.assert_allclose(inference, ref.to_np(block(x, training=False)))
        expected, _ = ref.encoder(block, x)
        np.testing.assert_allclose(inference, expected, atol=2e-5)
        assert np.abs(ref.to_np(block(x, training=True)) - inference).max() > 1e-3


# --------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------


class TestMasking:
    @pytest.mark.parametrize(
        "arrangement, causal",
        [
            ("post_norm", False),
            ("post_norm", True),
            ("pre_norm", True),
            ("parallel", True),
        ],
    )
    def test_padding_does_not_change_real_positions(self, arrangement, causal):
        embedding = keras.layers.Embedding(12, 8, mask_zero=True)
        block = TransformerEncoder(12, 2, **ARRANGEMENTS[arrangement])
        block.build((None, None, 8))
        ref.randomize(block, 9)
        padded = ref.to_np(block(embedding(TOKENS), use_causal_mask=causal))
        for row, length in ((0, 4), (1, 2)):
            alone = block(
                embedding(TOKENS[row : row + 1, :length]), use_causal_mask=causal
            )
            np.testing.assert_allclose(
                padded[row, :length], ref.to_np(alone)[0], atol=2e-5
            )

    def test_output_carries_keras_mask_and_input_keeps_it(self):
        embedding = keras.layers.Embedding(12, 8, mask_zero=True)
        x = embedding(TOKENS)
        out = TransformerEncoder(12, 2)(x)
        np.testing.assert_array_equal(ref.to_np(out._keras_mask), TOKENS != 0)
        # The caller's tensor keeps its mask for other consumers.
        np.testing.assert_array_equal(ref.to_np(x._keras_mask), TOKENS != 0)
        # Stacked blocks see the mask through the first block's output.
        second = TransformerEncoder(12, 2)
        np.testing.assert_allclose(
            ref.to_np(second(out)),
            ref.to_np(second(out, padding_mask=TOKENS != 0)),
            atol=1e-6,
        )

    def test_explicit_padding_mask_equals_keras_mask(self):
        embedding = keras.layers.Embedding(12, 8, mask_zero=True)
        block = TransformerEncoder(12, 2)
        masked = ref.to_np(block(embedding(TOKENS)))
        x = ref.to_np(embedding(TOKENS))  # a plain array: no Keras mask
        explicit = ref.to_np(block(x, padding_mask=TOKENS != 0))
        valid = TOKENS != 0
        np.testing.assert_allclose(masked[valid], explicit[valid], atol=1e-6)
        unmasked = ref.to_np(block(x))
        assert np.abs(unmasked[valid] - masked[valid]).max() > 1e-3

    def test_functional_sibling_still_sees_mask(self):
        tokens = keras.Input(shape=(None,), dtype="int32")
        x = keras.layers.Embedding(12, 8, mask_zero=True)(tokens)
        encoded = TransformerEncoder(12, 2)(x)
        pooled = keras.layers.GlobalAveragePooling1D()(x)
        model = keras.Model(tokens, [encoded, pooled])
        embedded = ref.to_np(model.layers[1](TOKENS))
        _, got = model(TOKENS)
        valid = (TOKENS != 0)[..., None]
        expected = (embedded * valid).sum(1) / valid.sum(1)
        np.testing.assert_allclose(ref.to_np(got), expected, atol=1e-6)

    @pytest.mark.parametrize("arrangement", sorted(ARRANGEMENTS))
    def test_fully_padded_sequence_is_finite(self, arrangement):
        embedding = keras.layers.Embedding(12, 8, mask_zero=True)
        block = TransformerEncoder(12, 2, **ARRANGEMENTS[arrangement])
        tokens = np.array([[0, 0, 0], [4, 5, 0]], "int32")
        out, scores = block(
            embedding(tokens), use_causal_mask=True, return_attention_scores=True
        )
        assert np.isfinite(ref.to_np(out)).all()
        assert np.all(ref.to_np(scores)[0] == 0.0)


# --------------------------------------------------------------------------
# Choosing the attention
# --------------------------------------------------------------------------


class TestAttentionChoice:
    @pytest.mark.parametrize(
        "attention",
        [
            "multi_head",
            MultiHeadAttention,
            {"variant": "multi_head"},
            "keras_attention>MultiHeadAttention",
            "instance",
            "serialized",
        ],
        ids=["name", "class", "variant_dict", "keras_name", "instance", "serialized"],
    )
    def test_identifier_forms_compute_the_same(self, attention):
        if attention == "instance":
            attention = MultiHeadAttention(num_heads=2, key_dim=4)
        elif attention == "serialized":
            attention = keras.saving.serialize_keras_object(
                MultiHeadAttention(num_heads=2, key_dim=4)
            )
        reference = built_encoder(seed=10)
        block = TransformerEncoder(12, 2, attention=attention)
        x = random_inputs()
        block(x)
        ref.copy_block_weights(reference, block)
        np.testing.assert_allclose(
            ref.to_np(block(x)), ref.to_np(reference(x)), atol=1e-6
        )
        # The config rebuilds the same block.
        clone = TransformerEncoder.from_config(block.get_config())
        clone(x)
        ref.copy_block_weights(reference, clone)
        np.testing.assert_allclose(
            ref.to_np(clone(x)), ref.to_np(reference(x)), atol=1e-6
        )
        assert isinstance(clone.self_attention_layer, MultiHeadAttention)

    def test_attention_kwargs_reach_the_layer(self):
        block = TransformerEncoder(
            12,
            4,
            attention_kwargs={"num_key_value_heads": 2, "key_dim": 3, "dropout": 0.2},
        )
        block(random_inputs())
        attention = block.self_attention_layer
        assert (attention.num_heads, attention.num_key_value_heads) == (4, 2)
        assert attention.key_dim == 3 and attention.dropout == 0.2
        assert tuple(attention.key_dense.kernel.shape) == (8, 2, 3)
        # Derived defaults: key_dim = hidden // num_heads.
        block = TransformerEncoder(12, 4)
        block(random_inputs())
        assert block.self_attention_layer.key_dim == 2
        # num_heads from attention_kwargs wins over the block's.
        block = TransformerEncoder(12, 4, attention_kwargs={"num_heads": 1})
        block(random_inputs())
        assert block.self_attention_layer.num_heads == 1
        assert block.self_attention_layer.key_dim == 8

    def test_rope_variant_is_not_permutation_equivariant(self):
        x = random_inputs((1, 5, 8))
        perm = np.array([4, 2, 0, 1, 3])
        for kwargs, equivariant in (({}, True), ({"position_encoding": "rope"}, False)):
            block = TransformerEncoder(12, 2, attention_kwargs=kwargs)
            a = ref.to_np(block(x))[:, perm]
            b = ref.to_np(block(x[:, perm]))
            assert np.allclose(a, b, atol=1e-5) == equivariant

    def test_weightless_attention_variant(self):
        block = TransformerEncoder(12, 2, attention="scaled_dot_product")
        x = random_inputs()
        out, scores = block(x, use_causal_mask=True, return_attention_scores=True)
        assert tuple(out.shape) == (2, 5, 8)
        assert tuple(scores.shape) == (2, 5, 5)
        np.testing.assert_allclose(ref.to_np(scores).sum(-1), 1.0, atol=1e-6)
        assert block.get_config()["attention"] == "scaled_dot_product"

    def test_attention_without_query_and_value_masks(self):
        # A layer whose call has only `attention_mask` gets the padding folded
        # into a (batch, Tq, Tv) mask: same results as the value_mask route.
        class MaskOnly(ScaledDotProductAttention):
            def call(
                self,
                query,
                value,
                attention_mask=None,
                use_causal_mask=False,
                return_attention_scores=False,
                training=None,
            ):
                return super().call(
                    query,
                    value,
                    attention_mask=attention_mask,
                    use_causal_mask=use_causal_mask,
                    return_attention_scores=return_attention_scores,
                    training=training,
                )

        x = random_inputs((2, 6, 8))
        mask = TOKENS != 0
        causal = np.broadcast_to(np.tril(np.ones((6, 6), bool)), (2, 6, 6))
        results = []
        for attention in ("scaled_dot_product", MaskOnly):
            block = TransformerEncoder(12, 2, attention=attention)
            block.build(x.shape)
            ref.randomize(block, 16)
            for kwargs in ({}, {"attention_mask": causal}):
                out, scores = block(
                    x, padding_mask=mask, return_attention_scores=True, **kwargs
                )
                results.append((ref.to_np(out)[mask], ref.to_np(scores)[mask]))
        for a, b in zip(results[:2], results[2:]):
            np.testing.assert_allclose(a[0], b[0], atol=1e-6)
            np.testing.assert_allclose(a[1], b[1], atol=1e-6)
        # Padded keys got no weight on either route.
        assert np.all(results[2][1][:, 4:] == 0.0)

    def test_keras_multi_head_attention_class(self, tmp_path):
        # An unregistered (for us) class: serialized from the created layer.
        model = encoder_model(attention=keras.layers.MultiHeadAttention)
        restored = helpers.assert_keras_roundtrip(model, TOKENS, tmp_path)
        block = restored.layers[2]
        assert type(block.self_attention_layer) is keras.layers.MultiHeadAttention


# --------------------------------------------------------------------------
# Models, precision, training, saving
# --------------------------------------------------------------------------


class TestModels:
    def test_sequential(self):
        model = keras.Sequential(
            [
                keras.Input(shape=(5, 8)),
                TransformerEncoder(12, 2),
                TransformerEncoder(12, 2, norm_first=True),
            ]
        )
        x = random_inputs()
        manual = model.layers[1](model.layers[0](x))
        np.testing.assert_allclose(ref.to_np(model(x)), ref.to_np(manual), atol=1e-6)
        assert model.output_shape == (None, 5, 8)

    def test_functional_with_scores(self):
        inputs = keras.Input(shape=(None, 8))
        out, scores = TransformerEncoder(12, 2)(inputs, return_attention_scores=True)
        assert tuple(scores.shape) == (None, 2, None, None)
        model = keras.Model(inputs, [out, scores])
        got_out, got_scores = model(random_inputs())
        block = model.layers[1]
        expected, expected_scores = ref.encoder(block, random_inputs())
        np.testing.assert_allclose(ref.to_np(got_out), expected, atol=2e-5)
        np.testing.assert_allclose(ref.to_np(got_scores), expected_scores, atol=1e-6)

    def test_subclassed_model(self):
        class Classifier(keras.Model):
            def __init__(self):
                super().__init__()
                self.embedding = keras.layers.Embedding(12, 8, mask_zero=True)
                self.block = TransformerEncoder(12, 2, parallel=True)
                self.pool = keras.layers.GlobalAveragePooling1D()

            def call(self, tokens):
                return self.pool(self.block(self.embedding(tokens)))

        model = Classifier()
        got = ref.to_np(model(TOKENS))
        embedded = ref.to_np(model.embedding(TOKENS))
        encoded, _ = ref.encoder(model.block, embedded, mask=TOKENS != 0)
        valid = (TOKENS != 0)[..., None]
        np.testing.assert_allclose(
            got, (encoded * valid).sum(1) / valid.sum(1), atol=2e-5
        )

    def test_compute_output_shape(self):
        block = TransformerEncoder(12, 2)
        assert block.compute_output_shape((3, 7, 8)) == (3, 7, 8)
        assert block.compute_output_shape((None, None, 8)) == (None, None, 8)

    @pytest.mark.parametrize(
        "policy, atol", [("mixed_float16", 2e-2), ("mixed_bfloat16", 1e-1)]
    )
    def test_mixed_precision(self, policy, atol):
        reference = built_encoder(seed=11, norm_first=True)
        x = random_inputs()
        expected = ref.to_np(reference(x))
        keras.config.set_dtype_policy(policy)
        block = TransformerEncoder(12, 2, norm_first=True)
        out, scores = block(x, use_causal_mask=True, return_attention_scores=True)
        ref.copy_block_weights(reference, block)
        out = block(x)
        compute = policy.split("_")[1]
        assert keras.backend.standardize_dtype(out.dtype) == compute
        assert keras.backend.standardize_dtype(scores.dtype) == compute
        assert block.self_attention_layer.compute_dtype == compute
        assert block.self_attention_layer.query_dense.kernel.dtype == "float32"
        out = ref.to_np(out)
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, expected, atol=atol, rtol=atol)

    def test_fit_with_jit_compile_trains(self):
        model = encoder_model(norm_first=True, dropout=0.1)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=True)
        block = model.layers[2]
        before = [ref.to_np(w) for w in block.trainable_weights]
        y = np.array([[1.0, 0.0, -1.0], [0.0, 2.0, 1.0]], "float32")
        history = model.fit(TOKENS, y, epochs=5, batch_size=2, verbose=0)
        losses = history.history["loss"]
        assert np.isfinite(losses).all() and losses[-1] < losses[0]
        after = [ref.to_np(w) for w in block.trainable_weights]
        assert len(before) == 16
        assert all(np.abs(a - b).max() > 0 for a, b in zip(after, before))

    def test_keras_roundtrip_and_export(self, tmp_path):
        model = encoder_model(
            attention=MultiHeadAttention(num_heads=2, key_dim=4), parallel=True
        )
        for layer in model.layers:
            ref.randomize(layer, 12)
        restored = helpers.assert_keras_roundtrip(model, TOKENS, tmp_path)
        assert restored.layers[2].parallel
        helpers.assert_export_roundtrip(model, TOKENS, tmp_path)

    def test_config_is_json_and_complete(self):
        block = TransformerEncoder(
            16,
            4,
            attention={
                "variant": "multi_head",
                "position_encoding": "rope",
                "bias_initializer": keras.initializers.Constant(0.5),
            },
            attention_kwargs={
                "num_key_value_heads": 2,
                "kernel_regularizer": keras.regularizers.L2(0.01),
            },
            dropout=0.1,
            activation="gelu",
            layer_norm_epsilon=1e-6,
            norm_first=True,
            kernel_initializer="he_normal",
            bias_initializer="ones",
            name="block",
        )
        config = block.get_config()
        json.dumps(config)
        assert config["attention"]["variant"] == "multi_head"
        assert config["attention"]["bias_initializer"]["class_name"] == "Constant"
        clone = TransformerEncoder.from_config(config)
        assert clone.get_config() == config
        clone(random_inputs((1, 3, 8)))
        attention = clone.self_attention_layer
        assert attention.position_encoding == "rope"
        assert isinstance(attention.kernel_regularizer, keras.regularizers.L2)
        assert isinstance(attention.kernel_initializer, keras.initializers.HeNormal)
        assert clone.activation is keras.activations.gelu
        np.testing.assert_allclose(ref.to_np(attention.query_dense.bias), 0.5)
        feed_forward = clone.feed_forward_layer
        assert isinstance(feed_forward.kernel_initializer, keras.initializers.HeNormal)
        np.testing.assert_allclose(ref.to_np(feed_forward.output_dense.bias), 1.0)
        assert clone.layer_norm_epsilon == 1e-6
        assert clone.norm_first and clone.dropout == 0.1


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class TestErrors:
    @pytest.mark.parametrize(
        "kwargs, match",
        [
            (
                {"intermediate_dim": 0},
                r"`intermediate_dim` must be a positive integer\. Received: intermediate_dim=0",
            ),
            (
                {"num_heads": 2.0},
                r"`num_heads` must be a positive integer\. Received: num_heads=2\.0",
            ),
            (
                {"dropout": 1.0},
                r"`dropout` must be a float in \[0, 1\)\. Received: dropout=1\.0",
            ),
            ({"dropout": -0.1}, r"`dropout` must be a float in \[0, 1\)"),
            (
                {"layer_norm_epsilon": 0},
                r"`layer_norm_epsilon` must be a positive float",
            ),
            (
                {"norm_first": "yes"},
                r"`norm_first` must be a bool\. Received: norm_first='yes'",
            ),
            (
                {"activation": "nope"},
                r"`activation` must be the name of a Keras activation.*'nope'",
            ),
            (
                {"attention": "nope"},
                r"`attention` must be a registered attention variant \(one of \[.*'multi_head'.*Received: attention='nope'",
            ),
            (
                {"attention": 3},
                r"`attention` must be a registered attention name, a layer class.*Received: attention=3",
            ),
            (
                {"attention": {"num_heads": 2}},
                r"config dict \(with a 'class_name' or a 'variant' key\)",
            ),
            ({"attention": {"variant": "nope"}}, r"Received: attention='nope'"),
            ({"attention_kwargs": [1]}, r"`attention_kwargs` must be a dict or None"),
            (
                {
                    "attention": MultiHeadAttention(2, 4),
                    "attention_kwargs": {"dropout": 0.1},
                },
                r"`attention_kwargs` cannot be combined with a layer instance",
            ),
        ],
    )
    def test_bad_constructor_arguments(self, kwargs, match):
        kwargs = {"intermediate_dim": 8, "num_heads": 2, **kwargs}
        with pytest.raises(
            ValueError, match=r"Layer 'transformer_encoder.*' \(TransformerEncoder\)"
        ):
            TransformerEncoder(**kwargs)
        with pytest.raises(ValueError, match=match):
            TransformerEncoder(**kwargs)

    def test_heads_must_divide_hidden_size(self):
        block = TransformerEncoder(8, 3, name="enc")
        with pytest.raises(
            ValueError,
            match=r"Layer 'enc' \(TransformerEncoder\): `num_heads` must divide "
            r"the hidden size \(10\).*Received: num_heads=3, hidden size=10",
        ):
            block(random_inputs((2, 4, 10)))
        # ... unless key_dim is given.
        block = TransformerEncoder(8, 3, attention_kwargs={"key_dim": 4})
        assert tuple(block(random_inputs((2, 4, 10))).shape) == (2, 4, 10)

    def test_input_rank(self):
        with pytest.raises(
            ValueError,
            match=r"`inputs` must have rank 3: \(batch, sequence, features\)\. "
            r"Received: inputs.shape=\(2, 8\)",
        ):
            TransformerEncoder(8, 2)(np.zeros((2, 8), "float32"))
        with pytest.raises(ValueError, match="must have rank 3"):
            TransformerEncoder(8, 2)(keras.Input(shape=(4, 4, 8)))
        with pytest.raises(ValueError, match="known last"):
            TransformerEncoder(8, 2).build((2, 4, None))

    def test_padding_mask_shape(self):
        block = TransformerEncoder(8, 2)
        with pytest.raises(
            ValueError, match=r"`padding_mask` must have shape \(2, 5\)"
        ):
            block(random_inputs(), padding_mask=np.ones((2, 4), bool))

    def test_unserializable_class_before_build(self):
        block = TransformerEncoder(8, 2, attention=keras.layers.MultiHeadAttention)
        with pytest.raises(
            ValueError,
            match=r"\(TransformerEncoder\): `attention` can only be serialized "
            r"once its layer exists.*Received: attention=MultiHeadAttention",
        ):
            block.get_config()
        # Once built, the created layer's own serialization is used.
        block(random_inputs())
        assert block.get_config()["attention"]["module"] == "keras.layers"


def test_symbolic_call_refuses_a_causal_mask_the_variant_cannot_apply():
    # Functional models are built with symbolic calls; the refusal must come
    # then, not when the model first runs.
    x = keras.Input((8, 16))
    block = TransformerEncoder(
        intermediate_dim=32, num_heads=2, attention="low_rank", attention_kwargs={"max_length": 8, "rank": 4}
    )
    with pytest.raises(ValueError, match="use_causal_mask"):
        block(x, use_causal_mask=True)
