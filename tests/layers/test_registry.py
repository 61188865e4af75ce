"""Tests for `get`, `available` and `register_attention` (the registry)."""

import keras
import numpy as np
import pytest

import keras_attention
from keras_attention.layers import BaseAttention
from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import ScaledDotProductAttention
from keras_attention.layers import available
from keras_attention.layers import get
from keras_attention.layers import register_attention
from keras_attention.layers.attention import registry


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test are forgotten after it."""
    monkeypatch.setattr(registry, "_VARIANTS", dict(registry._VARIANTS))


def test_available_lists_the_public_variants():
    names = available()
    assert {"multi_head", "scaled_dot_product"} <= set(names)
    assert names == sorted(names)
    assert "base" not in names  # registered for saving, not for `get`
    assert MultiHeadAttention.registry_name == "multi_head"
    assert ScaledDotProductAttention.registry_name == "scaled_dot_product"


def test_get_by_name():
    layer = get("multi_head", num_heads=2, key_dim=8, num_key_value_heads=1)
    assert type(layer) is MultiHeadAttention
    assert (layer.num_heads, layer.key_dim, layer.num_key_value_heads) == (
        2,
        8,
        1,
    )
    sdpa = get("scaled_dot_product")
    assert type(sdpa) is ScaledDotProductAttention
    assert sdpa.scale is None


def test_get_by_class():
    layer = get(MultiHeadAttention, num_heads=3, key_dim=4)
    assert type(layer) is MultiHeadAttention
    assert (layer.num_heads, layer.key_dim) == (3, 4)
    assert get(ScaledDotProductAttention, scale=0.5).scale == 0.5


def test_get_by_serialized_config():
    original = MultiHeadAttention(
        num_heads=4, key_dim=6, num_key_value_heads=2, position_encoding="rope"
    )
    config = keras.saving.serialize_keras_object(original)
    assert config["registered_name"] == "keras_attention>MultiHeadAttention"
    layer = get(config)
    assert type(layer) is MultiHeadAttention
    assert layer is not original
    assert layer.get_config() == original.get_config()
    # Keyword arguments override the stored config.
    wider = get(config, num_heads=8)
    assert (wider.num_heads, wider.num_key_value_heads) == (8, 2)
    assert wider.position_encoding == "rope"


def test_get_by_variant_dict():
    layer = get(
        {"variant": "multi_head", "num_heads": 2, "key_dim": 4}, dropout=0.1
    )
    assert type(layer) is MultiHeadAttention
    assert (layer.num_heads, layer.key_dim, layer.dropout) == (2, 4, 0.1)
    spec = {"variant": "scaled_dot_product", "scale": 2.0}
    assert get(spec).scale == 2.0
    assert spec == {
        "variant": "scaled_dot_product",
        "scale": 2.0,
    }  # not mutated


def test_get_returns_an_instance_as_is():
    layer = ScaledDotProductAttention()
    assert get(layer) is layer
    with pytest.raises(
        ValueError,
        match=r"keyword arguments cannot be applied to a layer instance.*\['scale'\]",
    ):
        get(layer, scale=1.0)


def test_layers_from_get_compute_the_same_thing():
    # A layer built from a config with copied weights is the same function.
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype("float32")
    original = get(
        "multi_head", num_heads=2, key_dim=4, position_encoding="alibi"
    )
    want = keras.ops.convert_to_numpy(original(x, x, use_causal_mask=True))
    clone = get(keras.saving.serialize_keras_object(original))
    assert clone.built  # from the serialized build config
    clone.set_weights(original.get_weights())
    got = keras.ops.convert_to_numpy(clone(x, x, use_causal_mask=True))
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize(
    "identifier, message",
    [
        (
            "multihead",
            r"unknown attention variant 'multihead'. Expected one of \[.*'multi_head'.*'scaled_dot_product'.*\]",
        ),
        (
            {"variant": "nope"},
            r"unknown attention variant 'nope'. Expected one of \[.*'multi_head'",
        ),
        (
            {"num_heads": 2},
            r"a config dict needs a 'class_name' .* or a 'variant'.*\['num_heads'\]",
        ),
        (
            3,
            r"expected a registered name, a layer class, a config dict or a layer instance. Received: 3",
        ),
    ],
    ids=["unknown_name", "unknown_variant", "dict_without_name", "int"],
)
def test_bad_identifiers(identifier, message):
    with pytest.raises(ValueError, match=message):
        get(identifier)


def test_register_attention(scratch_registry):
    @register_attention("test_identity")
    class IdentityAttention(BaseAttention):
        def attend(self, query, key, value, mask=None, **kwargs):
            return query, None

    assert "test_identity" in available()
    assert IdentityAttention.registry_name == "test_identity"
    layer = get("test_identity", num_heads=2, key_dim=4)
    assert type(layer) is IdentityAttention
    # Registered as Keras-serializable too.
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == "keras_attention>IdentityAttention"
    assert (
        type(keras.saving.deserialize_keras_object(config)) is IdentityAttention
    )

    # A name can't be taken twice by different classes.
    with pytest.raises(
        ValueError,
        match=r"'test_identity' is already taken by IdentityAttention",
    ):

        @register_attention("test_identity")
        class Other(BaseAttention):
            pass


def test_private_registration(scratch_registry):
    @register_attention("test_hidden", public=False)
    class HiddenAttention(BaseAttention):
        pass

    assert "test_hidden" not in available()
    with pytest.raises(
        ValueError, match="unknown attention variant 'test_hidden'"
    ):
        get("test_hidden")
    assert (
        keras.saving.get_registered_object("keras_attention>HiddenAttention")
        is HiddenAttention
    )


def test_package_exports():
    assert keras_attention.layers.get is get
    assert keras_attention.layers.available is available


def test_structural_layers_are_built_by_name_but_not_swappable():
    from keras_attention.layers.attention import registry as reg

    for name in ("pooling", "target", "spatiotemporal"):
        assert name not in reg.available()
        assert name in reg.available(structural=True)
        assert reg.get_class(name) is None
    pooling = reg.get("pooling", num_heads=2)
    assert type(pooling).__name__ == "AttentionPooling"
    with pytest.raises(ValueError, match="unknown attention variant 'nope'.*'pooling'"):
        reg.get("nope")


def test_length_defaults():
    from keras_attention.layers.attention import registry as reg

    assert reg.length_defaults("low_rank", 32) == {"max_length": 32, "rank": 32}
    assert reg.length_defaults("regional", 300) == {"window_size": 64}
    assert reg.length_defaults("multi_head", 32) == {}
    assert reg.length_defaults("low_rank", None) == {}
