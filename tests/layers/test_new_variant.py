"""A new attention variant is one file: the registry, the blocks, the
builders, the key/value cache, the tuner's search space and `.keras` files
all read what the class states, with nothing else edited."""

import importlib.util
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_attention.layers.attention import registry

VARIANT_FILE = '''
"""Attention over the first `window` keys only (a test variant)."""

from keras import ops

from keras_attention.layers import BaseAttention
from keras_attention.layers import register_attention
from keras_attention.layers.attention.registry import Tunable


@register_attention("first_keys")
class FirstKeysAttention(BaseAttention):
    search_space = {"window": Tunable([2, 4], default=4)}

    @classmethod
    def length_defaults(cls, length, given):
        return {"window": min(4, length)}

    def __init__(self, num_heads, key_dim, window, **kwargs):
        super().__init__(num_heads, key_dim, **kwargs)
        self.window = window

    def cache_limitation(self, query_length, causal):
        return "it reads keys by index"

    def attend(self, query, key, value, mask=None, return_scores=False, **kwargs):
        logits = ops.einsum("bqhd,bkhd->bhqk", query, key)
        keep = ops.arange(ops.shape(key)[1]) < self.window
        allowed = keep[None, None, None, :]
        if mask is not None:
            allowed = ops.logical_and(allowed, mask)
        logits = ops.where(allowed, logits, -1e9)
        weights = ops.softmax(logits, axis=-1)
        out = ops.einsum("bhqk,bkhd->bqhd", weights, value)
        return out, (weights if return_scores else None)

    def get_config(self):
        return {**super().get_config(), "window": self.window}
'''


@pytest.fixture
def first_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_VARIANTS", dict(registry._VARIANTS))
    path = tmp_path / "first_keys_attention.py"
    path.write_text(textwrap.dedent(VARIANT_FILE))
    spec = importlib.util.spec_from_file_location("first_keys_attention", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "first_keys_attention", module)
    spec.loader.exec_module(module)
    yield module.FirstKeysAttention
    keras.saving.get_custom_objects().pop("keras_attention>FirstKeysAttention", None)


def test_the_one_file_reaches_every_consumer(first_keys, tmp_path):
    import keras_attention as ka
    from keras_attention.tuning.search_space import variant_space

    assert "first_keys" in ka.layers.available()
    # The registry fills in what the variant needs from the length.
    assert registry.length_defaults("first_keys", 10) == {"window": 4}
    # The tuner reads its search space.
    assert set(variant_space("first_keys")) == {"window"}
    # The key/value cache reads its limitation.
    layer = ka.layers.get("first_keys", num_heads=2, key_dim=4, window=3)
    assert layer.cache_limitation(1, True) == "it reads keys by index"

    # A block and a builder take it by name; it saves and loads.
    model = ka.models.text_classifier(
        50, 3, 8, hidden_dim=8, num_layers=1, num_heads=2, attention="first_keys"
    )
    tokens = np.random.default_rng(0).integers(1, 50, size=(2, 8))
    expected = keras.ops.convert_to_numpy(model(tokens))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(tokens)), expected, atol=1e-6)


def test_only_the_first_keys_matter(first_keys):
    layer = first_keys(num_heads=1, key_dim=4, window=2)
    rng = np.random.default_rng(1)
    q, v = rng.normal(size=(1, 3, 4)), rng.normal(size=(1, 5, 4))
    changed = v.copy()
    changed[:, 2:] = rng.normal(size=(1, 3, 4))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(q, v)),
        keras.ops.convert_to_numpy(layer(q, changed)),
        atol=1e-6,
    )
