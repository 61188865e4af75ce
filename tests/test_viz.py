import os

import keras
import numpy as np
import pytest

from keras_attention import layers
from keras_attention import viz
from keras_attention.models import text_classifier
from keras_attention.models import with_preprocessing


def _model():
    return text_classifier(30, 2, 8, hidden_dim=8, num_layers=2, num_heads=2)


def test_weights_match_the_layer_and_respect_padding():
    model = _model()
    tokens = np.array([[3, 4, 5, 6, 7, 8, 9, 10], [3, 4, 5, 0, 0, 0, 0, 0]], "int32")
    maps = viz.attention_weights(model, tokens)
    assert sorted(maps) == ["encoder_0", "encoder_1", "pooling"]
    first = maps["encoder_0"]
    assert first.shape == (2, 2, 8, 8)
    # Real query rows sum to one; padded keys get no weight; padded queries
    # are all zeros.
    np.testing.assert_allclose(first[0].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(first[1, :, :3].sum(-1), 1.0, rtol=1e-5)
    assert np.all(first[1, :, :, 3:] == 0)
    assert np.all(first[1, :, 3:] == 0)
    # Same weights as calling the block directly on its input.
    hidden = keras.Model(model.inputs, model.get_layer("embedding_dropout").output)
    x = hidden(tokens)
    _, direct = model.get_layer("encoder_0")(x, return_attention_scores=True)
    np.testing.assert_allclose(first, keras.ops.convert_to_numpy(direct), atol=1e-6)


def test_nested_model_and_model_still_saves(tmp_path):
    model = _model()
    vectorizer = keras.layers.TextVectorization(max_tokens=30, output_sequence_length=8)
    vectorizer.adapt(["a b c d", "e f g"])
    raw = with_preprocessing(model, vectorizer)
    maps = viz.attention_weights(raw, np.array(["a b c"]))
    assert set(maps) == {f"{model.name}/encoder_0", f"{model.name}/encoder_1", f"{model.name}/pooling"}
    assert maps[f"{model.name}/encoder_1"].shape == (1, 2, 8, 8)
    before = keras.ops.convert_to_numpy(raw(np.array(["a b"])))
    raw.save(os.path.join(tmp_path, "m.keras"))
    restored = keras.models.load_model(os.path.join(tmp_path, "m.keras"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(np.array(["a b"]))), before, atol=1e-6)


def test_plain_attention_layer_in_a_model():
    q = keras.Input((5, 4))
    out = layers.MultiHeadAttention(num_heads=2, key_dim=2, name="mha")(q, q)
    model = keras.Model(q, out)
    maps = viz.attention_weights(model, np.ones((1, 5, 4), "float32"))
    np.testing.assert_allclose(maps["mha"], 0.2, rtol=1e-5)


def test_rejects_non_functional_models():
    with pytest.raises(ValueError, match="attention_weights.*functional"):
        viz.attention_weights(keras.Sequential([keras.layers.Dense(2)]), np.ones((1, 2)))


def test_plot_attention_writes_png(tmp_path):
    path = os.path.join(tmp_path, "map.png")
    weights = np.random.default_rng(0).dirichlet(np.ones(4), size=(3, 4))
    figure = viz.plot_attention(weights, tokens=list("abcd"), title="layer 0", path=path)
    assert os.path.getsize(path) > 1000
    assert len([a for a in figure.axes if a.get_title().startswith("head")]) == 3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"weights": np.ones((2, 2, 2, 2))}, "weights.*Received: shape"),
        ({"weights": np.ones((2, 3, 3)), "heads": [5]}, "heads"),
    ],
)
def test_plot_attention_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        viz.plot_attention(**kwargs)
