"""`detection_data` on tfds' mock VOC and COCO (random images and objects;
their per-object fields may even differ in length, which the pipeline
must survive)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_attention.data import detection_data


def _mock_voc(num_examples=6):
    def as_dataset(self, split, *args, **kwargs):
        def example(i):
            image = np.full((20 + 3 * i, 30, 3), 10 * i, np.uint8)
            count = i % 4
            bbox = np.array([[0.1, 0.2, 0.5, 0.6], [0.6, 0.5, 0.2, 0.1], [0.0, 0.0, 1.0, 1.0]], np.float32)
            return {
                "image": image,
                "objects": {
                    "bbox": np.resize(bbox, (count, 4)),
                    "label": np.arange(count, dtype=np.int64) + i,
                    "is_difficult": np.array([False, True, False][:count]) if count else np.zeros((0,), bool),
                },
            }

        return tf.data.Dataset.from_generator(
            lambda: (example(i) for i in range(num_examples)),
            output_signature={
                "image": tf.TensorSpec((None, 30, 3), tf.uint8),
                "objects": {
                    "bbox": tf.TensorSpec((None, 4), tf.float32),
                    "label": tf.TensorSpec((None,), tf.int64),
                    "is_difficult": tf.TensorSpec((None,), tf.bool),
                },
            },
        )

    return tfds.testing.mock_data(num_examples=num_examples, as_dataset_fn=as_dataset)


def test_voc_layout_boxes_labels_padding_and_difficult_objects(tmp_path):
    with _mock_voc():
        data = detection_data("voc/2007", str(tmp_path), image_size=16, max_objects=3, batch_size=2)
        assert (data.canvas_size, data.num_classes, data.max_objects, data.channels) == (16, 20, 3, 3)
        test = [(i.numpy(), t["boxes"].numpy(), t["labels"].numpy()) for i, t in data.test]
        (image_spec, target_spec) = data.train.element_spec
        assert tuple(image_spec.shape) == (2, 16, 16, 3) and tuple(target_spec["boxes"].shape) == (2, 3, 4)
    images = np.concatenate([t[0] for t in test])
    boxes = np.concatenate([t[1] for t in test])
    labels = np.concatenate([t[2] for t in test])
    assert images.shape == (6, 16, 16, 3)
    np.testing.assert_allclose(images[2], 20 / 255.0, atol=1e-6)  # resized, scaled
    # Example 3 has three objects; the second is difficult and dropped.
    assert labels[3].tolist() == [3, 5, -1]
    np.testing.assert_allclose(boxes[3, 0], [0.4, 0.3, 0.4, 0.4], atol=1e-6)  # (cx, cy, w, h)
    np.testing.assert_allclose(boxes[3, 1], [0.5, 0.5, 1.0, 1.0], atol=1e-6)
    assert labels[0].tolist() == [-1, -1, -1] and not boxes[0].any()
    assert labels[2].tolist() == [2, -1, -1]
    with _mock_voc():
        kept = detection_data("voc/2007", str(tmp_path), image_size=16, max_objects=2, batch_size=2, drop_ignored=False)
        test = [(t["boxes"].numpy(), t["labels"].numpy()) for _, t in kept.test]
    boxes = np.concatenate([t[0] for t in test])
    labels = np.concatenate([t[1] for t in test])
    assert labels[3].tolist() == [3, 4] and labels[2].tolist() == [2, 3]  # the first max_objects kept
    # A box given as (ymax, xmax, ymin, xmin) is put in order.
    np.testing.assert_allclose(boxes[3, 1], [0.3, 0.4, 0.4, 0.4], atol=1e-6)


def test_coco_mock_data_of_uneven_fields_runs(tmp_path):
    with tfds.testing.mock_data(num_examples=4):
        data = detection_data(
            "coco/2017", str(tmp_path), image_size=8, max_objects=5, batch_size=2, train_split="train",
            validation_split="validation", test_split="validation",
        )
        assert data.num_classes == 80 and data.validation is not None
        for images, targets in data.train.take(2):
            assert images.shape == (2, 8, 8, 3)
            labels = targets["labels"].numpy()
            assert ((labels >= -1) & (labels < 80)).all()
            boxes = targets["boxes"].numpy()
            assert (boxes >= 0).all() and (boxes <= 1).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_size=0), r"`detection_data`: `image_size` must be a positive integer"),
        (dict(max_objects=-1), r"`detection_data`: `max_objects`"),
        (dict(drop_ignored="yes"), r"`detection_data`: `drop_ignored` must be True or False"),
        (dict(name="mnist"), r"`detection_data`: `name` must name a dataset with an 'image' image and 'objects'.*'image', 'label'"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(ValueError, match=match):
            detection_data(**{"data_dir": str(tmp_path), **kwargs})


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"`detection_data`: `data_dir` .* does not exist"):
        detection_data("voc/2007", str(tmp_path / "nope"))


def test_the_detect_task_trains_and_scores_on_a_voc_layout(tmp_path):
    from keras_attention.tasks import get_task

    task = get_task("detect")
    options = task.options(
        {"image_size": 16, "max_objects": 3, "batch_size": 2, "validation_split": "", "steps": 2,
         "patch_size": 4, "hidden_dim": 16, "num_heads": 2, "num_layers": 1, "num_decoder_layers": 1,
         "intermediate_dim": 16, "num_queries": 4}
    )
    with _mock_voc():
        data = task.load("voc/2007", str(tmp_path), options)
        assert data.validation is None and data.info["channels"] == 3 and data.info["num_classes"] == 20
        model = task.build(data, "linear", None, options)
        assert model.jit_compile is True
        model.jit_compile = False  # XLA training is tested with the builder; this test is about the data
        model.fit(data.train, epochs=1, steps_per_epoch=2, verbose=0)
        results = task.evaluate(model, data.test, data)
    assert set(results) == {"loss", "map_50", "map_50_95"} and 0 <= results["map_50"] <= 1
    assert model.input_shape == (None, 16, 16, 3) and model.output_shape == (None, 4, 20 + 5)
