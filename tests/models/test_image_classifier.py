import numpy as np
import pytest
import tensorflow_datasets as tfds

from model_checks import check_builder_model
from keras_attention.data import image_classification_data
from keras_attention.models import compile_classifier
from keras_attention.models import image_classifier


def _images(shape=(8, 8, 1), batch=4):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (batch,) + shape).astype("uint8"), np.array([0, 1, 2, 1])


@pytest.mark.parametrize(
    "attention,kwargs",
    [
        ("multi_head", {"pooling": "class_token", "augmentation": True}),
        ("linear", {"conv_attention": "cbam"}),
        ("regional", {"conv_stem": False, "pooling": "mean"}),
        ("dynamic", {"conv_attention": "channel"}),
    ],
)
def test_builds_trains_saves_exports(attention, kwargs, tmp_path):
    model = image_classifier((8, 8, 1), 3, patch_size=2, hidden_dim=16, num_layers=1, num_heads=2,
                             attention=attention, **kwargs)
    compile_classifier(model)
    images, labels = _images()
    (logits,) = check_builder_model(model, images, labels, tmp_path)
    assert logits.shape == (4, 3)


def test_on_mock_tfds_pipelines():
    with tfds.testing.mock_data(num_examples=32):
        data = image_classification_data("cifar10", batch_size=8)
        assert data.image_shape == (32, 32, 3) and data.num_classes == 10
        images, labels = next(iter(data.train))
        assert tuple(images.shape) == (8, 32, 32, 3) and images.dtype.name == "uint8"
        model = image_classifier(data.image_shape, data.num_classes, patch_size=8, hidden_dim=16,
                                 num_layers=1, num_heads=2)
        compile_classifier(model)
        history = model.fit(data.train, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
    with tfds.testing.mock_data(num_examples=16):
        resized = image_classification_data("mnist", image_size=(16, 16), batch_size=4)
        assert tuple(next(iter(resized.test))[0].shape) == (4, 16, 16, 1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"image_shape": (8, 8)}, "image_shape"),
        ({"patch_size": 3}, "patch_size.*must divide"),
        ({"image_shape": (9, 9, 1), "patch_size": 3}, "patch_size.*must be even"),
        ({"num_classes": 1}, "num_classes"),
        ({"pooling": "max"}, "pooling"),
        ({"conv_attention": "se"}, "conv_attention"),
        ({"conv_attention": "cbam", "conv_stem": False}, "needs conv_stem"),
        ({"attention": "nope"}, r"image_classifier.*one of \["),
    ],
)
def test_bad_config(kwargs, match):
    arguments = dict(image_shape=(8, 8, 1), num_classes=3, patch_size=2, hidden_dim=16, num_layers=1, num_heads=2)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        image_classifier(**arguments)


