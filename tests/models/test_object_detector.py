import keras
import numpy as np
import pytest

from model_checks import check_builder_model
from keras_attention.layers import LearnedQueries
from keras_attention.models import MeanAveragePrecisionCallback
from keras_attention.models import compile_object_detector
from keras_attention.models import detect
from keras_attention.models import evaluate_detector
from keras_attention.models import object_detector
from keras_attention.models import pack_detection_targets

SMALL = dict(hidden_dim=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, dropout=0.0)


def _squares(count, size=16, seed=0):
    """One or two non-overlapping squares per image: class 0 filled,
    class 1 an outline; targets padded to 2 objects."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, size, size, 1), np.float32)
    boxes = np.zeros((count, 2, 4), np.float32)
    labels = np.full((count, 2), -1, np.int32)
    for i in range(count):
        for m in range(1 + (rng.random() < 0.5)):
            side = int(rng.integers(4, 7))
            x0 = int(rng.integers(0, size // 2 - side + 1)) + m * size // 2  # left / right half
            y0 = int(rng.integers(0, size - side + 1))
            label = int(rng.integers(0, 2))
            images[i, y0:y0 + side, x0:x0 + side] = 1.0
            if label:
                images[i, y0 + 1:y0 + side - 1, x0 + 1:x0 + side - 1] = 0.0
            boxes[i, m] = [(x0 + side / 2) / size, (y0 + side / 2) / size, side / size, side / size]
            labels[i, m] = label
    return images, boxes, labels


def test_builds_trains_saves_exports(tmp_path):
    model = object_detector(16, 2, num_queries=4, patch_size=4, attention="linear", **SMALL)
    compile_object_detector(model)
    images, boxes, labels = _squares(4)
    (outputs,) = check_builder_model(model, images, np.asarray(pack_detection_targets(boxes, labels)), tmp_path)
    assert outputs.shape == (4, 4, 2 + 5) and outputs.dtype == np.float32
    assert np.all((outputs[..., -4:] > 0) & (outputs[..., -4:] < 1))


def test_training_under_xla_finds_the_squares():
    # Filled and hollow squares: a few hundred XLA steps
    # localise and classify them (mAP@0.5 of an untrained model is ~0).
    keras.utils.set_random_seed(0)
    model = object_detector(16, 2, num_queries=4, patch_size=4, **{**SMALL, "hidden_dim": 32})
    compile_object_detector(model, learning_rate=2e-3, clipnorm=1.0)
    assert model.jit_compile is True
    images, boxes, labels = _squares(512, seed=1)
    test = _squares(64, seed=2)
    before = evaluate_detector(model, [(test[0], {"boxes": test[1], "labels": test[2]})], 2)
    model.fit(images, pack_detection_targets(boxes, labels), batch_size=32, epochs=12, verbose=0)
    after = evaluate_detector(model, [(test[0], {"boxes": test[1], "labels": test[2]})], 2)
    assert before["map_50"] < 0.2 and after["map_50"] > 0.5, (before, after)
    assert after["images"] == 64


def test_map_callback_feeds_history_and_later_callbacks():
    model = object_detector(16, 2, num_queries=4, patch_size=4, **SMALL)
    compile_object_detector(model, jit_compile=False)  # the callback, not XLA, is under test
    images, boxes, labels = _squares(8, seed=4)
    targets = pack_detection_targets(boxes, labels)
    seen = []
    later = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(dict(logs)))
    callback = MeanAveragePrecisionCallback([(images, targets)], 2, every=2)
    history = model.fit(images, targets, batch_size=4, epochs=2, verbose=0, callbacks=[callback, later])
    assert "val_map_50" not in seen[0] and "val_map_50" in seen[1]  # every=2: epochs 2, 4, ...
    assert history.history["val_map_50"] == [seen[1]["val_map_50"]]
    expected = evaluate_detector(model, [(images, targets)], 2)
    assert seen[1]["val_map_50"] == pytest.approx(expected["map_50"])
    assert seen[1]["val_map_50_95"] == pytest.approx(expected["map_50_95"])
    # keras-tuner deep-copies callbacks per trial; the pipeline is shared.
    import copy

    import tensorflow as tf

    pipeline = tf.data.Dataset.from_tensor_slices((images, targets)).batch(4)
    copied = copy.deepcopy(MeanAveragePrecisionCallback(pipeline, 2, prefix="test_", every=3))
    assert copied.dataset is pipeline and (copied.num_classes, copied.prefix, copied.every) == (2, "test_", 3)
    with pytest.raises(ValueError, match=r"MeanAveragePrecisionCallback.*`every`.*every=0"):
        MeanAveragePrecisionCallback([], 2, every=0)


class _Fixed:
    """A stand-in model whose `predict` returns fixed outputs."""

    def __init__(self, outputs):
        self.outputs = np.asarray(outputs, np.float32)
        self.seen = 0  # the next call continues where the last stopped

    def predict(self, images, batch_size=None, verbose=0):
        start, self.seen = self.seen, self.seen + len(images)
        return self.outputs[start:self.seen]


def test_detect_reads_class_probability_label_and_corner_box():
    outputs = np.zeros((1, 3, 3 + 4), np.float32)
    outputs[0, 0, :3] = [np.log(3.0), np.log(1.0), np.log(6.0)]  # p = 0.3, 0.1, 0.6 (no object)
    outputs[0, 0, 3:] = [0.5, 0.5, 0.2, 0.4]
    outputs[0, 1, :3] = [0.0, np.log(4.0), 0.0]  # p = 1/6, 4/6, 1/6
    outputs[0, 1, 3:] = [0.05, 0.9, 0.2, 0.4]  # clipped to the image
    outputs[0, 2, :3] = [0.0, 0.0, 10.0]
    found = detect(_Fixed(outputs), np.zeros((1, 8, 8, 1)))
    assert len(found) == 1
    np.testing.assert_allclose(found[0]["scores"][:2], [0.3, 4 / 6], rtol=1e-6)
    np.testing.assert_array_equal(found[0]["labels"], [0, 1, 0])
    np.testing.assert_allclose(found[0]["boxes"][:2], [[0.4, 0.3, 0.6, 0.7], [0.0, 0.7, 0.15, 1.0]], atol=1e-6)
    kept = detect(_Fixed(outputs), np.zeros((1, 8, 8, 1)), score_threshold=0.5)
    np.testing.assert_array_equal(kept[0]["labels"], [1])


def test_evaluate_detector_scores_perfect_and_empty_outputs():
    _, boxes, labels = _squares(6, seed=3)
    perfect = np.zeros((6, 3, 2 + 5), np.float32)
    perfect[:, :, 2] = 20.0  # no object
    for i in range(6):
        for m in range(2):
            if labels[i, m] >= 0:
                perfect[i, m, :3] = 0.0
                perfect[i, m, labels[i, m]] = 20.0
                perfect[i, m, -4:] = boxes[i, m]
    images = np.zeros((6, 16, 16, 1))
    for targets in ({"boxes": boxes, "labels": labels}, pack_detection_targets(boxes, labels)):
        scores = evaluate_detector(_Fixed(perfect), [(images[:4], _cut(targets, 0, 4)), (images[4:], _cut(targets, 4, 6))], 2)
        assert scores["map_50"] == pytest.approx(1.0) and scores["map_50_95"] == pytest.approx(1.0)
        assert scores["images"] == 6
    shifted = perfect.copy()
    shifted[..., -4] += 0.5  # every box moved half an image to the right
    assert evaluate_detector(_Fixed(shifted), [(images, {"boxes": boxes, "labels": labels})], 2)["map_50"] == 0.0


def _cut(targets, start, stop):
    if isinstance(targets, dict):
        return {k: v[start:stop] for k, v in targets.items()}
    return np.asarray(targets)[start:stop]


def test_learned_queries_are_shared_across_the_batch_and_serialize():
    layer = LearnedQueries(5, dtype="mixed_float16")
    out = layer(keras.ops.ones((3, 7, 8)))
    assert tuple(out.shape) == (3, 5, 8) and keras.backend.standardize_dtype(out.dtype) == "float16"
    out = np.asarray(out)
    np.testing.assert_array_equal(out[0], out[2])
    assert len(np.unique(out[0].round(3), axis=0)) == 5
    restored = LearnedQueries.from_config(layer.get_config())
    assert restored.num_queries == 5
    with pytest.raises(ValueError, match=r"LearnedQueries.*`num_queries`.*num_queries=0"):
        LearnedQueries(0)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(image_size=15), r"object_detector.*`image_size`.*divisible by patch_size=4"),
        (dict(patch_size=3), r"object_detector.*`patch_size`.*power of two"),
        (dict(num_queries=0), r"object_detector.*`num_queries`.*num_queries=0"),
        (dict(num_classes=0), r"object_detector.*`num_classes`.*num_classes=0"),
        (dict(hidden_dim=15), r"object_detector.*hidden_dim.*num_heads"),
        (dict(attention="nope"), r"object_detector.*one of \["),
    ],
)
def test_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        object_detector(**{**dict(image_size=16, num_classes=2, patch_size=4), **SMALL, **arguments})


def test_bad_detect_arguments():
    with pytest.raises(ValueError, match=r"detect.*`score_threshold`.*\[0, 1\].*score_threshold=2"):
        detect(_Fixed(np.zeros((1, 2, 7))), np.zeros((1, 8, 8, 1)), score_threshold=2)
    with pytest.raises(ValueError, match=r"detect.*`model`.*num_classes \+ 5.*\(1, 2\)"):
        detect(_Fixed(np.zeros((1, 2))), np.zeros((1, 8, 8, 1)))
    with pytest.raises(ValueError, match=r"evaluate_detector.*`dataset`.*at least one batch"):
        evaluate_detector(_Fixed(np.zeros((1, 2, 7))), [], 2)
