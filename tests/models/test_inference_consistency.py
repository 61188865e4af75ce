"""Inference mode computes what training mode computes, after any schedule.

A normalization with running statistics (BatchNormalization, Dice) uses
moving averages at inference; after a short training they lag the weights
and a model scores far worse than its progress bar says (one epoch of the
image task on mnist: 0.59 in inference, 0.96 in training mode with the old
batch-normalized stem). No builder keeps such statistics by default, and a
brief training leaves inference and training mode agreeing.
"""

import keras
import numpy as np
import pytest

from builder_cases import CASES
from keras_attention import models
from keras_attention.layers.activations.dice import Dice

RUNNING_STATISTICS = (keras.layers.BatchNormalization, Dice)


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_builder_keeps_running_statistics_by_default(name):
    model, _ = CASES[name]()
    found = [
        layer.name
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, RUNNING_STATISTICS)
    ]
    assert found == [], f"{name}: {found}"


def quadrants(count, size=16, seed=0):
    """uint8 images whose class (0-3) is the brighter quadrant, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, count)
    images = rng.integers(0, 60, (count, size, size, 1))
    half = size // 2
    for image, label in zip(images, labels):
        row, col = divmod(int(label), 2)
        image[row * half:(row + 1) * half, col * half:(col + 1) * half] += 150
    return images.astype("uint8"), labels.astype("int32")


def brief_training(model, images, targets):
    keras.utils.set_random_seed(0)
    model.fit(images, targets, batch_size=32, epochs=2, verbose=0)  # 16 steps
    inference = model.predict(images, batch_size=64, verbose=0)
    training = np.concatenate(
        [np.asarray(model(images[i:i + 64], training=True)) for i in range(0, len(images), 64)]
    )
    return inference, training


@pytest.mark.parametrize("normalization", ["layer", "group", "batch"])
def test_image_classifier_inference_matches_training_mode(normalization):
    images, labels = quadrants(256)
    model = models.image_classifier(
        (16, 16, 1), 4, patch_size=4, hidden_dim=16, num_layers=1, num_heads=2,
        dropout=0.0, augmentation=False, stem_normalization=normalization,
    )
    models.compile_classifier(model, learning_rate=3e-3, warmup_steps=0, decay_steps=16)
    inference, training = brief_training(model, images, labels)
    agree = np.mean(np.argmax(inference, -1) == np.argmax(training, -1))
    if normalization == "batch":
        # What the check guards against: the moving statistics lag.
        assert np.max(np.abs(inference - training)) > 0.1
        return
    np.testing.assert_allclose(inference, training, rtol=1e-3, atol=1e-3)
    assert agree == 1.0


def test_default_image_classifier_and_segmenter_have_no_running_statistics():
    classifier = models.image_classifier((16, 16, 1), 4, patch_size=4, hidden_dim=16, num_layers=1, num_heads=2)
    segmenter = models.image_segmenter(16, 3, patch_size=4, hidden_dim=16, num_layers=1, num_heads=2)
    for model in (classifier, segmenter):
        norms = [l for l in model._flatten_layers(include_self=False) if "norm" in l.name]
        assert norms and not any(isinstance(l, RUNNING_STATISTICS) for l in norms)


def test_image_segmenter_inference_matches_training_mode():
    images, labels = quadrants(128)
    masks = np.broadcast_to(labels[:, None, None, None] % 3, (128, 16, 16, 1)).astype("int32")
    images = np.repeat(images, 3, axis=-1)
    model = models.image_segmenter(16, 3, patch_size=4, hidden_dim=16, num_layers=1, num_heads=2, dropout=0.0)
    models.compile_segmenter(model, learning_rate=3e-3, warmup_steps=0, decay_steps=8)
    inference, training = brief_training(model, images, masks)
    np.testing.assert_allclose(inference, training, rtol=1e-3, atol=1e-3)
