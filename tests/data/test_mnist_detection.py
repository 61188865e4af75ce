"""The generated MNIST detection dataset: generator, tfds builder, pipeline.

No test needs the prepared MNIST: the builder's MNIST source
(`load_mnist_digits`) is replaced by a tiny in-memory one whose digit `k` is
a solid block of a known value (train: 100 + 10 k, test: 200 + 5 k), so a
box's pixels tell its digit and its MNIST split; `tfds.testing.mock_data`
checks the real reader.
"""

import doctest
import itertools
import re
import tempfile
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_attention.data import mnist_detection as md

TRAIN_VALUE = {k: 100 + 10 * k for k in range(10)}
TEST_VALUE = {k: 200 + 5 * k for k in range(10)}


def _fake_digits(split):
    values = TRAIN_VALUE if split == "train" else TEST_VALUE
    labels = np.array([k for _ in range(3) for k in range(10)], np.int64)
    images = np.zeros((len(labels), 28, 28), np.uint8)
    for i, k in enumerate(labels):
        # Blocks smaller than the digit square: tight boxes differ from paste squares.
        images[i, 4 + i % 3 : 24, 6 : 22 - i % 2] = values[int(k)]
    return images, labels


@pytest.fixture
def fake_mnist(monkeypatch):
    calls = []

    def load(split, mnist_data_dir=None):
        calls.append((split, mnist_data_dir))
        return _fake_digits(split)

    monkeypatch.setattr(md, "load_mnist_digits", load)
    return calls


TINY = md.MnistDetectionConfig(
    name="tiny3", canvas_size=40, max_digits=3, min_scale=12, max_scale=24, train_size=48, test_size=24
)


def _build(data_dir, config, mnist_data_dir="somewhere"):
    builder = tfds.builder("mnist_detection", config=config, data_dir=str(data_dir), mnist_data_dir=mnist_data_dir)
    builder.download_and_prepare()
    return {split: list(tfds.as_numpy(builder.as_dataset(split=split))) for split in ("train", "test")}


def _pixel_boxes(bbox, size):
    boxes = np.rint(np.asarray(bbox) * size).astype(int)
    np.testing.assert_allclose(boxes / size, bbox, atol=1e-5)  # whole pixels
    return boxes


@pytest.mark.parametrize("config", ["small", TINY], ids=["small", "tiny3"])
def test_builder_generates_tight_labelled_boxes(tmp_path, fake_mnist, config):
    data = _build(tmp_path, config)
    cfg = md.MnistDetection.builder_configs["small"] if config == "small" else config
    size = cfg.canvas_size
    assert sorted(fake_mnist) == [("test", "somewhere"), ("train", "somewhere")]
    assert len(data["train"]) == cfg.train_size and len(data["test"]) == cfg.test_size
    counts = set()
    for split, examples in data.items():
        values = TRAIN_VALUE if split == "train" else TEST_VALUE
        for ex in examples:
            canvas = ex["canvas"][..., 0]
            assert ex["canvas"].shape == (size, size, 1) and ex["canvas"].dtype == np.uint8
            labels = ex["objects"]["label"]
            boxes = _pixel_boxes(ex["objects"]["bbox"], size)
            assert 1 <= len(labels) <= cfg.max_digits and boxes.shape == (len(labels), 4)
            counts.add(len(labels))
            inside = np.zeros_like(canvas, bool)
            for (top, left, bottom, right), label in zip(boxes, labels):
                assert 0 <= top < bottom <= size and 0 <= left < right <= size
                assert cfg.min_scale // 2 <= bottom - top <= cfg.max_scale
                patch = canvas[top:bottom, left:right]
                # Tight: every border row and column holds a non-zero pixel.
                assert patch[0].any() and patch[-1].any() and patch[:, 0].any() and patch[:, -1].any()
                inside[top:bottom, left:right] = True
            assert not canvas[~inside].any()  # nothing outside the boxes
            for i, ((top, left, bottom, right), label) in enumerate(zip(boxes, labels)):
                brighter = [
                    j
                    for j, other in enumerate(boxes)
                    if j != i
                    and values[int(labels[j])] > values[int(label)]
                    and md.box_iou(other, (top, left, bottom, right)) > 0
                ]
                if not brighter:  # the digit's own value shows in its box
                    assert values[int(label)] in canvas[top:bottom, left:right]
            for a, b in itertools.combinations(boxes, 2):
                assert md.box_iou(a, b) <= 0.3 + 1e-9
            # Train canvases hold train digits only, test canvases test digits only.
            assert canvas.max() in values.values()
    assert counts == set(range(1, cfg.max_digits + 1))


def test_builder_is_deterministic(tmp_path, fake_mnist):
    first, second = _build(tmp_path / "a", "small"), _build(tmp_path / "b", "small")
    for split in ("train", "test"):
        for a, b in zip(first[split], second[split], strict=True):
            np.testing.assert_array_equal(a["canvas"], b["canvas"])
            np.testing.assert_array_equal(a["objects"]["bbox"], b["objects"]["bbox"])
            np.testing.assert_array_equal(a["objects"]["label"], b["objects"]["label"])
    # Train and test draw from different seeds too.
    assert not np.array_equal(first["train"][0]["canvas"], first["test"][0]["canvas"])


def test_generator_direct_and_resize():
    images, labels = _fake_digits("train")
    runs = [
        list(md.generate_canvases(images, labels, 20, seed=3, canvas_size=48, max_digits=4, min_scale=14, max_scale=28))
        for _ in range(2)
    ]
    for (c1, b1, l1), (c2, b2, l2) in zip(*runs, strict=True):
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_array_equal(b1, b2)
        np.testing.assert_array_equal(l1, l2)
        assert b1.dtype == np.float32 and l1.dtype == np.int64
    other = list(md.generate_canvases(images, labels, 20, seed=4, canvas_size=48))
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(runs[0], other))
    block = np.zeros((28, 28), np.uint8)
    block[7:21, 7:21] = 255
    half = md.resize_digit(block, 14)
    assert half.shape == (14, 14) and half[5:9, 5:9].min() == 255 and half[0].max() == 0
    assert md.resize_digit(block, 28).tolist() == block.tolist()


def test_real_reader_with_mock_data():
    with tfds.testing.mock_data(num_examples=5):
        images, labels = md.load_mnist_digits("test")
    assert images.shape == (5, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5,) and labels.min() >= 0 and labels.max() < 10


def test_missing_mnist_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=r"`mnist_detection`: `mnist_data_dir` .*nowhere.* does not exist"):
        md.load_mnist_digits("train", str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    builder = tfds.builder("mnist_detection/small", data_dir=str(tmp_path / "out"), mnist_data_dir=str(empty))
    with pytest.raises(ValueError, match=r"mnist_detection.*'mnist' is not prepared in .*empty") as error:
        builder.download_and_prepare()
    assert "\n" not in str(error.value)


def test_pipeline_shapes_padding_and_boxes(tmp_path, fake_mnist):
    data = md.mnist_detection_data(str(tmp_path), "somewhere", config="small", max_objects=3, batch_size=4)
    assert (data.canvas_size, data.num_classes, data.max_objects) == (32, 10, 3)
    # Training batches are static; the test split keeps every canvas.
    for ds, batches, batch in ((data.train, 16, 4), (data.test, 4, None)):
        image_spec, target_spec = ds.element_spec
        assert tuple(image_spec.shape) == (batch, 32, 32, 1) and image_spec.dtype.name == "float32"
        assert tuple(target_spec["boxes"].shape) == (batch, 3, 4) and target_spec["boxes"].dtype.name == "float32"
        assert tuple(target_spec["labels"].shape) == (batch, 3) and target_spec["labels"].dtype.name == "int32"
        assert ds.options().autotune.enabled is False
        assert len(list(ds)) == batches
    raw = _build(tmp_path, "small")["test"]
    seen = 0
    for images, targets in data.test:
        for image, boxes, labels in zip(images.numpy(), targets["boxes"].numpy(), targets["labels"].numpy()):
            ex = raw[seen]
            seen += 1
            n = len(ex["objects"]["label"])
            np.testing.assert_allclose(image[..., 0], ex["canvas"][..., 0] / 255.0, atol=1e-6)
            assert 0 <= image.min() and image.max() <= 1
            assert labels[:n].tolist() == ex["objects"]["label"].tolist()
            assert (labels[n:] == -1).all() and not boxes[n:].any()
            ymin, xmin, ymax, xmax = ex["objects"]["bbox"].T
            expected = np.stack([(xmin + xmax) / 2, (ymin + ymax) / 2, xmax - xmin, ymax - ymin], -1)
            np.testing.assert_allclose(boxes[:n], expected, atol=1e-6)
    train_labels = np.concatenate([t["labels"].numpy().ravel() for _, t in data.train])
    assert (train_labels == -1).any() and (train_labels >= 0).any()


def test_validation_is_the_end_of_the_train_split(tmp_path, fake_mnist):
    data = md.mnist_detection_data(
        str(tmp_path), "somewhere", config="small", batch_size=8, validation_fraction=0.25, shuffle_buffer=1
    )
    assert (data.train_size, data.validation_size, data.test_size) == (48, 16, 16)
    raw = _build(tmp_path, "small")["train"]
    validation = np.concatenate([images.numpy() for images, _ in data.validation])
    np.testing.assert_allclose(validation[..., 0], np.stack([ex["canvas"][..., 0] for ex in raw[48:]]) / 255.0, atol=1e-6)
    trained = np.concatenate([images.numpy() for images, _ in data.train])
    assert len(trained) == 48
    held_out = {v.tobytes() for v in (validation * 255).round().astype(np.uint8)}
    assert not held_out & {t.tobytes() for t in (trained * 255).round().astype(np.uint8)}
    none = md.mnist_detection_data(str(tmp_path), "somewhere", config="small", batch_size=8)
    assert none.validation is None and none.train_size == 64


def test_generic_detection_data_reads_the_generated_dataset(tmp_path, fake_mnist):
    from keras_attention.data import detection_data

    own = md.mnist_detection_data(str(tmp_path), "somewhere", config="small", max_objects=2, batch_size=8)
    generic = detection_data(
        "mnist_detection/small", str(tmp_path), image_size=32, max_objects=2, batch_size=8, image_key="canvas"
    )
    assert (generic.train_size, generic.test_size, generic.num_classes, generic.channels) == (64, 16, 10, 3)
    for (a, ta), (b, tb) in zip(own.test, generic.test):
        np.testing.assert_allclose(b.numpy(), np.repeat(a.numpy(), 3, axis=-1), atol=1e-6)
        np.testing.assert_allclose(tb["boxes"].numpy(), ta["boxes"].numpy(), atol=1e-6)
        np.testing.assert_array_equal(tb["labels"].numpy(), ta["labels"].numpy())
    with pytest.raises(ValueError, match=r"`detection_data`: `split` must be one of 'mnist_detection/small''s splits \['test', 'train'\]. Received: split='val'"):
        detection_data("mnist_detection/small", str(tmp_path), validation_split="val", image_key="canvas")


def test_to_center_boxes():
    bbox = np.array([[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.5, 0.25]], np.float32)
    expected = [[0.75, 0.5, 0.5, 0.5], [0.125, 0.25, 0.25, 0.5]]
    np.testing.assert_allclose(md.to_center_boxes(bbox), expected)
    import tensorflow as tf

    np.testing.assert_allclose(md.to_center_boxes(tf.constant(bbox)).numpy(), expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(config="huge"), r"`mnist_detection_data`: `config` must be one of \['default', 'small'\]"),
        (dict(config="small", max_objects=1), r"`max_objects` must be at least the config's max_digits \(2\)"),
        (dict(batch_size=0), r"`batch_size` must be a positive integer. Received: batch_size=0"),
        (dict(shuffle_buffer=0), r"`shuffle_buffer`"),
        (dict(max_objects=2.5), r"`max_objects`"),
        (dict(validation_fraction=1.0), r"`validation_fraction` must be a number in \[0, 1\)"),
        (dict(validation_fraction="0.1"), r"`validation_fraction` must be a number in \[0, 1\)"),
    ],
)
def test_pipeline_rejects_bad_arguments(tmp_path, fake_mnist, kwargs, match):
    with pytest.raises(ValueError, match=match):
        md.mnist_detection_data(str(tmp_path), "somewhere", **kwargs)
    assert not fake_mnist and not list(tmp_path.iterdir())  # nothing generated


def test_pipeline_rejects_missing_data_dir(tmp_path):
    with pytest.raises(ValueError, match=r"`mnist_detection_data`: `data_dir` must be an existing folder"):
        md.mnist_detection_data(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(min_scale=20, max_scale=10), r"`mnist_detection`: `min_scale` must be <= max_scale=10"),
        (dict(canvas_size=16), r"`max_scale` must be <= canvas_size=16"),
        (dict(max_digits=0), r"`max_digits` must be an integer >= 1. Received: max_digits=0"),
        (dict(max_iou=1.5), r"`max_iou` must be a number in \[0, 1\]"),
        (dict(train_size=0), r"`train_size`"),
        (dict(seed=-1), r"`seed`"),
    ],
)
def test_configs_are_checked(fields, match):
    with pytest.raises(ValueError, match=match):
        md.MnistDetectionConfig(name="bad", **fields)


def test_generator_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"`mnist_detection`: `images` must be a non-empty"):
        md.generate_canvases(np.zeros((0, 28, 28), np.uint8), np.zeros((0,)), 1, seed=0)
    with pytest.raises(ValueError, match=r"`count` must be an integer >= 0"):
        md.generate_canvases(np.zeros((1, 28, 28), np.uint8), np.zeros((1,)), -1, seed=0)


def test_registered_configs():
    assert "mnist_detection" in tfds.list_builders()
    builder = tfds.builder("mnist_detection", data_dir=tempfile.mkdtemp())
    assert builder.builder_config.name == "default"
    cfg = builder.builder_config
    assert (cfg.canvas_size, cfg.max_digits, cfg.min_scale, cfg.max_scale) == (64, 4, 14, 28)
    assert (cfg.train_size, cfg.test_size, cfg.max_iou) == (6000, 1000, 0.3)
    small = md.MnistDetection.builder_configs["small"]
    assert (small.canvas_size, small.max_digits, small.train_size, small.test_size) == (32, 2, 64, 16)
    features = builder.info.features
    assert isinstance(features["objects"]["bbox"], tfds.features.BBoxFeature)
    assert features["objects"]["label"].num_classes == 10


def test_docstring_examples_run(tmp_path, monkeypatch, fake_mnist):
    folders = iter(range(100))

    def mkdtemp(*args, **kwargs):
        folder = tmp_path / str(next(folders))
        folder.mkdir()
        return str(folder)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = doctest.DocTestFinder().find(md, globs=vars(md).copy())
    assert sum(len(t.examples) for t in tests) >= 6
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
    blocks = [
        textwrap.dedent(block)
        for obj in (md.MnistDetection, md.mnist_detection_data)
        for block in re.findall(r"```python\n(.*?)```", obj.__doc__, re.S)
    ]
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "<docstring>", "exec"), {})
    # Both examples generated into their own temporary folder (tfds makes some too).
    assert len(list(tmp_path.glob("*/mnist_detection/small/1.0.0"))) == 2
