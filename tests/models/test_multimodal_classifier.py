import json

import keras
import numpy as np
import pytest

from model_checks import check_builder_model
from keras_attention.models import compile_classifier
from keras_attention.models.multimodal_classifier import multimodal_classifier

SMALL = dict(patch_size=4, hidden_dim=8, num_layers=1, num_heads=2)

def _compile(model, **kwargs):
    compile_classifier(model, **kwargs)
    # Built here, the optimizer's slots are not created inside the first
    # traced train step, which would then be traced twice.
    model.optimizer.build(model.trainable_variables)
    return model


def _inputs(batch=4, size=8, length=6, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, size, size, channels)).astype("uint8")
    tokens = rng.integers(1, 20, (batch, length)).astype("int32")
    tokens[0, 3:] = 0
    tokens[1, 1:] = 0
    tokens[2, :] = 0  # no text at all
    return {"image": images, "tokens": tokens}


@pytest.mark.parametrize(
    "fusion,attention,attention_kwargs,pooling",
    [
        ("cross", "multi_head", None, "attention"),
        ("co", "linear", None, "mean"),
        ("merged", "regional", {"window_size": 2}, "mean"),
    ],
)
def test_builds_trains_saves_exports(fusion, attention, attention_kwargs, pooling, tmp_path):
    model = multimodal_classifier(
        8, 6, 20, 3, fusion=fusion, attention=attention, attention_kwargs=attention_kwargs, pooling=pooling, **SMALL
    )
    _compile(model)
    inputs = _inputs()
    # The dict-input SavedModel is served with the dict.
    (logits,) = check_builder_model(model, inputs, np.array([0, 1, 2, 1]), tmp_path)
    assert logits.shape == (4, 3)
    fusion_layer = model.get_layer("fusion_0_attention")
    assert fusion_layer.mode == fusion and fusion_layer.attention == attention
    assert [i.name for i in model.inputs] == ["image", "tokens"]
    assert model.inputs[0].dtype == "uint8" and model.inputs[1].dtype == "int32"


@pytest.mark.parametrize("fusion", ["cross", "co", "merged"])
def test_padding_never_matters(fusion):
    # Whatever sits at the padded positions (the padding id's embedding, the
    # position embeddings past each text's end) does not change the logits
    # of texts with padding; the unpadded text shows the check is live.
    model = multimodal_classifier(8, 6, 20, 3, fusion=fusion, num_fusion_layers=2, dropout=0.0, **SMALL)
    inputs = _inputs()
    inputs["tokens"][3] = np.arange(1, 7)
    embedding = model.get_layer("token_embedding")
    before = keras.ops.convert_to_numpy(model(inputs))
    assert np.all(np.isfinite(before))
    rng = np.random.default_rng(1)
    tokens = embedding.token_embedding.embeddings
    tokens.assign(tokens.numpy() + np.where(np.arange(20)[:, None] == 0, 5.0, 0.0) * rng.normal(size=(20, 8)))
    positions = embedding.position_embedding.embeddings
    positions.assign(positions.numpy() + np.where(np.arange(6)[:, None] >= 3, 5.0, 0.0) * rng.normal(size=(6, 8)))
    after = keras.ops.convert_to_numpy(model(inputs))
    np.testing.assert_allclose(after[:3], before[:3], atol=1e-5)
    assert np.abs(after[3] - before[3]).max() > 1e-3


def _task(count, rng):
    # Label = 2 * (image is bright) + (text has token 2): each modality
    # alone can reach 50% at best; chance is 25%.
    bright = rng.integers(0, 2, count)
    marked = rng.integers(0, 2, count)
    base = np.where(bright, 170.0, 60.0)[:, None, None, None]
    images = np.clip(base + rng.normal(0, 40, (count, 8, 8, 1)), 0, 255).astype("uint8")
    tokens = np.zeros((count, 8), "int32")
    for i in range(count):
        length = rng.integers(2, 9)
        tokens[i, :length] = rng.integers(3, 16, length)
        if marked[i]:
            tokens[i, rng.integers(0, length)] = 2
    return {"image": images, "tokens": tokens}, (2 * bright + marked).astype("int32")


TRAIN, EPOCHS = 256, 4


def test_fit_uses_both_modalities():
    rng = np.random.default_rng(0)
    train_x, train_y = _task(TRAIN, rng)
    test_x, test_y = _task(128, rng)
    model = multimodal_classifier(
        8, 8, 16, 4, channels=1, patch_size=4, hidden_dim=16, num_layers=1, num_heads=2, fusion="co", dropout=0.0
    )
    _compile(model, learning_rate=3e-3)
    model.fit(train_x, train_y, batch_size=32, epochs=EPOCHS, verbose=0)
    predicted = np.argmax(keras.ops.convert_to_numpy(model(test_x)), axis=-1)
    accuracy = np.mean(predicted == test_y)
    assert accuracy > 0.8, accuracy  # one modality alone: <= 0.5


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"image_size": (8, 8, 3)}, "image_size"),
        ({"patch_size": 3}, "patch_size.*divide"),
        ({"sequence_length": 0}, "sequence_length"),
        ({"vocabulary_size": -1}, "vocabulary_size"),
        ({"num_classes": 1}, "num_classes"),
        ({"num_heads": 3}, "num_heads"),
        ({"fusion": "late"}, r"fusion.*\['cross', 'co', 'merged'\]"),
        ({"num_fusion_layers": 0}, "num_fusion_layers"),
        ({"pooling": "first"}, "pooling"),
        ({"dropout": 1.0}, "dropout"),
        ({"attention": "nope"}, r"multimodal_classifier.*one of \["),
        ({"attention": "multimodal"}, r"multimodal_classifier.*attention"),
        ({"attention_kwargs": [1]}, "attention_kwargs"),
    ],
)
def test_bad_config(kwargs, match):
    arguments = dict(image_size=8, sequence_length=6, vocabulary_size=20, num_classes=3, **SMALL)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        multimodal_classifier(**arguments)


def test_config_round_trip_names_are_unique():
    model = multimodal_classifier(8, 6, 20, 3, fusion="co", num_fusion_layers=2, pooling="mean", **SMALL)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names)), json.dumps(names)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    inputs = _inputs()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clone(inputs)), keras.ops.convert_to_numpy(model(inputs)), atol=1e-5
    )
