"""MNIST detection: a generated object-detection dataset of real MNIST digits,
as a tensorflow-datasets builder (`tfds.load("mnist_detection")` works
offline once `keras_attention.data` is imported and MNIST is prepared).

A canvas (`canvas_size` square, one channel, black) holds 1 to `max_digits`
MNIST digits, each resized to a side drawn uniformly from
`[min_scale, max_scale]` pixels (an antialiased bilinear NumPy resize, so
generation is deterministic and needs neither PIL nor TensorFlow ops) and
pasted at a random position, composited with `max` so that overlapping
strokes stay readable. A placement whose box overlaps an already placed box
with IoU above `max_iou` (0.3) is drawn again, at most `max_tries` times;
after that the digit is left out (the first digit always fits).

Features (the VOC/COCO layout of tfds):

- `"canvas"`: uint8 image `(canvas_size, canvas_size, 1)`;
- `"objects"`: a sequence of
  - `"bbox"`: `tfds.features.BBoxFeature`, normalised `(ymin, xmin, ymax,
    xmax)`: the TIGHT box around the digit's non-zero pixels after resizing
    (not the paste square), in pixel edges: a digit covering rows `r0..r1`
    has `ymin = r0 / canvas_size`, `ymax = (r1 + 1) / canvas_size`;
  - `"label"`: `ClassLabel(10)`, the digit.

Splits: `train` draws its digits from MNIST's train split only, `test` from
MNIST's test split only. Everything comes from a seeded NumPy generator
(one seed per split), so a config always gives the same canvases.

MNIST is read with `download=False` from the folder given as the builder's
`mnist_data_dir` argument (tfds' default folder when `None`), e.g.
`tfds.builder("mnist_detection", mnist_data_dir="../shared/tfds")` or
`tfds.load(..., builder_kwargs={"mnist_data_dir": ...})`; it is only read
while generating.

Configs: `"default"` (canvas 64, 1-4 digits of 14-28 pixels, 6,000 / 1,000
canvases) and `"small"` (for tests: canvas 32, 1-2 digits of 10-20 pixels,
64 / 16 canvases).
"""

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_int
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import is_number
from keras_attention.data.feeding import prefetched
from keras_attention.data.prepared import cache_in_memory
from keras_attention.data.prepared import load_prepared

NAME = "mnist_detection"
NUM_CLASSES = 10
DIGIT_SIZE = 28
_SPLITS = ("train", "test")


def resize_digit(image, size):
    """Resizes a square uint8 image to `size` x `size` (antialiased bilinear).

    Bilinear interpolation with half-pixel centres; when shrinking, the
    triangle kernel widens by the scale factor (as `tf.image.resize(...,
    antialias=True)` does), so thin strokes do not vanish. Pure NumPy,
    deterministic.

    Args:
        image: 2-D uint8 array (square).
        size: int >= 1, the output side.

    Returns:
        uint8 array `(size, size)`.

    Example:

    >>> resize_digit(np.full((28, 28), 200, np.uint8), 14).tolist()[0][:3]
    [200, 200, 200]
    """
    image = np.asarray(image)
    weights = _resize_weights(image.shape[0], size)
    out = weights @ image.astype(np.float64) @ _resize_weights(image.shape[1], size).T
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _resize_weights(source, size):
    scale = source / size
    width = max(1.0, scale)
    centres = (np.arange(size) + 0.5) * scale - 0.5
    taps = np.arange(source)
    weights = np.maximum(0.0, 1.0 - np.abs(taps[None, :] - centres[:, None]) / width)
    return weights / weights.sum(axis=1, keepdims=True)


def box_iou(a, b):
    """IoU of two boxes given as `(top, left, bottom, right)` edges.

    >>> box_iou((0, 0, 2, 2), (1, 1, 3, 3))  # 1 / 7
    0.14285714285714285
    """
    height = min(a[2], b[2]) - max(a[0], b[0])
    width = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0, height) * max(0, width)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _check_fields(canvas_size, max_digits, min_scale, max_scale, max_iou, max_tries):
    check_int(NAME, "canvas_size", canvas_size, 1)
    check_int(NAME, "max_digits", max_digits, 1)
    check_int(NAME, "min_scale", min_scale, 1)
    check_int(NAME, "max_scale", max_scale, 1)
    if min_scale > max_scale:
        raise argument_error(
            NAME, "min_scale", f"must be <= max_scale={max_scale}", f"min_scale={min_scale}"
        )
    if max_scale > canvas_size:
        raise argument_error(
            NAME, "max_scale", f"must be <= canvas_size={canvas_size}", f"max_scale={max_scale}"
        )
    if not is_number(max_iou) or not 0 <= max_iou <= 1:
        raise argument_error(NAME, "max_iou", "must be a number in [0, 1]", f"max_iou={max_iou!r}")
    check_int(NAME, "max_tries", max_tries, 1)


def generate_canvases(
    images,
    labels,
    count,
    seed,
    canvas_size=64,
    max_digits=4,
    min_scale=14,
    max_scale=28,
    max_iou=0.3,
    max_tries=50,
):
    """Draws `count` canvases of digits from `images` (see the module).

    Args:
        images: uint8 array `(n, h, w)` or `(n, h, w, 1)` of digits.
        labels: int array `(n,)`, their classes.
        count: int, number of canvases.
        seed: int, seed of the NumPy generator.
        canvas_size, max_digits, min_scale, max_scale, max_iou, max_tries:
            as in `MnistDetectionConfig`.

    Returns:
        An iterator of `(canvas, boxes, classes)`: uint8 `(canvas_size,
        canvas_size, 1)`, float32 `(k, 4)` normalised tight `(ymin, xmin,
        ymax, xmax)`, int64 `(k,)`, with `1 <= k <= max_digits`.

    Example:

    >>> digits = np.zeros((10, 28, 28), np.uint8)
    >>> digits[:, 4:24, 8:20] = 255
    >>> canvas, boxes, classes = next(generate_canvases(
    ...     digits, np.arange(10), 1, seed=0, canvas_size=32, max_digits=2,
    ...     min_scale=10, max_scale=20))
    >>> canvas.shape, boxes.shape[1], bool(canvas.any())
    ((32, 32, 1), 4, True)
    """
    check_int(NAME, "count", count, 0)
    _check_fields(canvas_size, max_digits, min_scale, max_scale, max_iou, max_tries)
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    labels = np.asarray(labels)
    if images.ndim != 3 or len(images) == 0 or labels.shape != images.shape[:1]:
        raise argument_error(
            NAME,
            "images",
            "must be a non-empty (n, h, w) array with labels of shape (n,)",
            f"images of shape {images.shape}, labels of shape {labels.shape}",
        )
    return _generate(images, labels, count, seed, canvas_size, max_digits, min_scale, max_scale, max_iou, max_tries)


def _generate(images, labels, count, seed, canvas_size, max_digits, min_scale, max_scale, max_iou, max_tries):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        canvas = np.zeros((canvas_size, canvas_size), np.uint8)
        placed, classes = [], []
        for _ in range(int(rng.integers(1, max_digits + 1))):
            for _ in range(max_tries):
                index = int(rng.integers(len(images)))
                size = int(rng.integers(min_scale, max_scale + 1))
                top = int(rng.integers(0, canvas_size - size + 1))
                left = int(rng.integers(0, canvas_size - size + 1))
                digit = resize_digit(images[index], size)
                rows = np.flatnonzero(digit.any(axis=1))
                cols = np.flatnonzero(digit.any(axis=0))
                if rows.size == 0:  # a blank digit has no box
                    continue
                box = (top + rows[0], left + cols[0], top + rows[-1] + 1, left + cols[-1] + 1)
                if all(box_iou(box, other) <= max_iou for other in placed):
                    region = canvas[top : top + size, left : left + size]
                    np.maximum(region, digit, out=region)
                    placed.append(box)
                    classes.append(int(labels[index]))
                    break
        boxes = np.array(placed, np.float32).reshape(-1, 4) / canvas_size
        yield canvas[..., None], boxes, np.array(classes, np.int64)


def load_mnist_digits(split, mnist_data_dir=None):
    """MNIST's `split` as NumPy arrays, read with `download=False`.

    Args:
        split: `"train"` or `"test"`.
        mnist_data_dir: the tfds folder holding prepared MNIST (`None`:
            tfds' default folder).

    Returns:
        `(images uint8 (n, 28, 28), labels int64 (n,))`.

    Raises:
        ValueError: the folder does not exist or holds no prepared MNIST.
    """
    if mnist_data_dir is not None and not os.path.isdir(mnist_data_dir):
        raise ValueError(
            f"`{NAME}`: `mnist_data_dir` {os.fspath(mnist_data_dir)!r} does not exist; it must be "
            "a folder holding MNIST prepared by tensorflow-datasets (nothing is downloaded)."
        )
    ds = load_prepared(f"{NAME} (reading MNIST from `mnist_data_dir`)", "mnist", split, mnist_data_dir)
    # Large batches rather than `batch_size=-1`, which aborts on datasets of
    # unknown size (tfds' mock data).
    batches = list(tfds.as_numpy(ds.batch(16_384)))
    if not batches:
        raise ValueError(f"`{NAME}`: MNIST's {split!r} split in {mnist_data_dir!r} is empty")
    images = np.concatenate([b["image"] for b in batches])[..., 0]
    labels = np.concatenate([b["label"] for b in batches]).astype(np.int64)
    return images, labels


_FIELDS = (
    "canvas_size",
    "max_digits",
    "min_scale",
    "max_scale",
    "train_size",
    "test_size",
    "seed",
    "max_iou",
    "max_tries",
)


@dataclasses.dataclass
class MnistDetectionConfig(tfds.core.BuilderConfig):
    """An MNIST detection config; tfds stores its data under its name.

    Attributes:
        canvas_size: canvas side in pixels.
        max_digits: most digits per canvas (each canvas draws 1..max_digits).
        min_scale, max_scale: range of the resized digit's side (pixels).
        train_size, test_size: canvases per split.
        seed: base seed; each split draws from its own seed derived from it.
        max_iou: largest IoU allowed between two boxes of a canvas.
        max_tries: placements tried per digit before leaving it out.

    Example:

    >>> MnistDetectionConfig(name="tiny", canvas_size=32, max_scale=20).max_digits
    4
    """

    canvas_size: int = 64
    max_digits: int = 4
    min_scale: int = 14
    max_scale: int = 28
    train_size: int = 6000
    test_size: int = 1000
    seed: int = 0
    max_iou: float = 0.3
    max_tries: int = 50

    def __post_init__(self):
        _check_fields(self.canvas_size, self.max_digits, self.min_scale, self.max_scale, self.max_iou, self.max_tries)
        check_int(NAME, "train_size", self.train_size, 1)
        check_int(NAME, "test_size", self.test_size, 1)
        check_int(NAME, "seed", self.seed, 0)


class MnistDetection(tfds.core.GeneratorBasedBuilder):
    """Canvases of MNIST digits with boxes and labels; see the module.

    Registered with tfds as `"mnist_detection"` (configs `"default"`, the
    default, and `"small"`).

    Args:
        mnist_data_dir: folder holding prepared MNIST (`None`: tfds'
            default), read only while generating.
        **kwargs: `tfds.core.GeneratorBasedBuilder` arguments (`data_dir`,
            `config`, ...).

    Example:

    ```python
    import tempfile

    import tensorflow_datasets as tfds

    from keras_attention.data import mnist_detection  # registers the builder

    ds = tfds.load(
        "mnist_detection/small",
        split="train",
        data_dir=tempfile.mkdtemp(),
        builder_kwargs={"mnist_data_dir": "../shared/tfds"},
    )
    example = next(iter(ds))
    assert example["canvas"].shape == (32, 32, 1)
    assert example["objects"]["bbox"].shape[1] == 4  # normalised ymin, xmin, ymax, xmax
    ```
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Generated locally from prepared MNIST."}
    BUILDER_CONFIGS = [
        MnistDetectionConfig(
            name="default",
            description="Canvas 64, 1-4 digits of 14-28 px, 6000/1000 canvases.",
        ),
        MnistDetectionConfig(
            name="small",
            description="Canvas 32, 1-2 digits of 10-20 px, 64/16 canvases (tests).",
            canvas_size=32,
            max_digits=2,
            min_scale=10,
            max_scale=20,
            train_size=64,
            test_size=16,
        ),
    ]
    DEFAULT_CONFIG_NAME = "default"

    def __init__(self, *, mnist_data_dir=None, **kwargs):
        super().__init__(**kwargs)
        self._mnist_data_dir = None if mnist_data_dir is None else os.fspath(mnist_data_dir)
        self._original_state["mnist_data_dir"] = self._mnist_data_dir  # for pickling

    def _info(self):
        size = self.builder_config.canvas_size
        return self.dataset_info_from_configs(
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict(
                {
                    "canvas": tfds.features.Image(shape=(size, size, 1), dtype=np.uint8),
                    "objects": tfds.features.Sequence(
                        {
                            "bbox": tfds.features.BBoxFeature(),
                            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                        }
                    ),
                }
            ),
            homepage="http://yann.lecun.com/exdb/mnist/",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing is downloaded
        # Read both MNIST splits first, so a missing MNIST fails at once.
        sources = {split: load_mnist_digits(split, self._mnist_data_dir) for split in _SPLITS}
        return {split: self._generate_examples(split, *sources[split]) for split in _SPLITS}

    def _generate_examples(self, split, images, labels):
        config = self.builder_config
        canvases = generate_canvases(
            images,
            labels,
            getattr(config, f"{split}_size"),
            seed=config.seed * 1000 + _SPLITS.index(split),
            canvas_size=config.canvas_size,
            max_digits=config.max_digits,
            min_scale=config.min_scale,
            max_scale=config.max_scale,
            max_iou=config.max_iou,
            max_tries=config.max_tries,
        )
        for i, (canvas, boxes, classes) in enumerate(canvases):
            yield i, {"canvas": canvas, "objects": {"bbox": boxes, "label": classes}}


def to_center_boxes(bbox):
    """tfds boxes `(ymin, xmin, ymax, xmax)` to `(cx, cy, w, h)` (same units).

    Works on NumPy arrays and tensors, any leading shape.

    >>> to_center_boxes(np.array([[0.25, 0.5, 0.75, 1.0]], np.float32)).tolist()
    [[0.75, 0.5, 0.5, 0.5]]
    """
    ymin, xmin, ymax, xmax = (bbox[..., i] for i in range(4))
    stack = np.stack if isinstance(bbox, np.ndarray) else _tf().stack
    return stack([(xmin + xmax) / 2, (ymin + ymax) / 2, xmax - xmin, ymax - ymin], axis=-1)


def _tf():
    import tensorflow as tf

    return tf


@dataclasses.dataclass
class DetectionData:
    """Detection pipelines and what a model needs to know about them.

    Attributes:
        train, test: `tf.data.Dataset`s of `(image float32 (batch, canvas,
            canvas, 1) in [0, 1], {"boxes": float32 (batch, max_objects, 4)
            normalised (cx, cy, w, h), "labels": int32 (batch,
            max_objects), -1 for padding})`.
        canvas_size, num_classes, max_objects: ints.
        validation: like `test`, the last canvases of the train split, or
            `None` (`validation_fraction=0`).
        train_size, validation_size, test_size: canvases in each split.
        channels: image channels.
    """

    train: object
    test: object
    canvas_size: int
    num_classes: int
    max_objects: int
    validation: object = None
    train_size: int = 0
    validation_size: int = 0
    test_size: int = 0
    channels: int = 1


def mnist_detection_data(
    data_dir=None,
    mnist_data_dir=None,
    config="default",
    max_objects=4,
    batch_size=16,
    shuffle_buffer=1000,
    seed=0,
    validation_fraction=0.0,
):
    """MNIST detection pipelines with static shapes (see `DetectionData`).

    Generates the config's data on first use (into `data_dir`, reading
    MNIST from `mnist_data_dir`), then reads it back; boxes are converted to
    `(cx, cy, w, h)` and padded to `max_objects` (label -1, box zeros). Both
    splits drop their last partial batch, so every shape is static.

    Args:
        data_dir: tfds folder for the generated dataset (`None`: tfds'
            default).
        mnist_data_dir: tfds folder holding prepared MNIST (only read when
            generating).
        config: `"default"`, `"small"` or a `MnistDetectionConfig`.
        max_objects: int, padded object count, at least the config's
            `max_digits`.
        batch_size: int.
        shuffle_buffer: int, train shuffle buffer (>= 1).
        seed: shuffle seed.
        validation_fraction: float in `[0, 1)`; that share of the train
            split's canvases (its last ones, at least one) is held out as
            `validation`, never trained on.

    Returns:
        A `DetectionData`.

    Example:

    ```python
    import tempfile

    from keras_attention.data.mnist_detection import mnist_detection_data

    data = mnist_detection_data(tempfile.mkdtemp(), "../shared/tfds", config="small",
                                max_objects=2, batch_size=8)
    images, targets = next(iter(data.train))
    assert images.shape == (8, 32, 32, 1) and targets["boxes"].shape == (8, 2, 4)
    ```
    """
    names = [c.name for c in MnistDetection.BUILDER_CONFIGS]
    if not isinstance(config, MnistDetectionConfig) and config not in names:
        raise argument_error(
            "mnist_detection_data",
            "config",
            f"must be one of {names} or a MnistDetectionConfig",
            f"config={config!r}",
        )
    check_positive_int("mnist_detection_data", "batch_size", batch_size)
    check_positive_int("mnist_detection_data", "shuffle_buffer", shuffle_buffer)
    check_positive_int("mnist_detection_data", "max_objects", max_objects)
    check_int("mnist_detection_data", "seed", seed)
    if not is_number(validation_fraction) or not 0.0 <= validation_fraction < 1.0:
        raise argument_error(
            "mnist_detection_data", "validation_fraction", "must be a number in [0, 1)",
            f"validation_fraction={validation_fraction!r}",
        )
    if data_dir is not None and not os.path.isdir(data_dir):
        raise argument_error("mnist_detection_data", "data_dir", "must be an existing folder", f"data_dir={data_dir!r}")
    builder = tfds.builder(NAME, config=config, data_dir=data_dir, mnist_data_dir=mnist_data_dir)
    most = builder.builder_config.max_digits
    if max_objects < most:
        raise argument_error(
            "mnist_detection_data",
            "max_objects",
            f"must be at least the config's max_digits ({most}), or objects would be dropped",
            f"max_objects={max_objects}",
        )
    builder.download_and_prepare()
    tf = _tf()

    def convert(example):
        image = tf.cast(example["canvas"], tf.float32) / 255.0
        boxes = to_center_boxes(tf.cast(example["objects"]["bbox"], tf.float32))
        labels = tf.cast(example["objects"]["label"], tf.int32)
        pad = max_objects - tf.shape(labels)[0]
        boxes = tf.ensure_shape(tf.pad(boxes, [[0, pad], [0, 0]]), (max_objects, 4))
        labels = tf.ensure_shape(tf.pad(labels, [[0, pad]], constant_values=-1), (max_objects,))
        return image, {"boxes": boxes, "labels": labels}

    def pipeline(split, shuffle):
        ds = builder.as_dataset(split=split).map(convert, num_parallel_calls=tf.data.AUTOTUNE)
        ds = cache_in_memory(ds)
        if shuffle:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        # Training batches have a static shape; validation and test keep every canvas.
        return prefetched(ds.batch(batch_size, drop_remainder=shuffle))

    total = builder.builder_config.train_size
    held_out = max(1, round(validation_fraction * total)) if validation_fraction > 0 else 0
    if held_out and total - held_out < batch_size:
        raise argument_error(
            "mnist_detection_data",
            "validation_fraction",
            f"must leave at least one training batch ({batch_size} canvases) of the {total} train canvases",
            f"validation_fraction={validation_fraction!r} ({total - held_out} left)",
        )
    kept = total - held_out
    return DetectionData(
        train=pipeline(f"train[:{kept}]" if held_out else "train", True),
        test=pipeline("test", False),
        canvas_size=builder.builder_config.canvas_size,
        num_classes=NUM_CLASSES,
        max_objects=max_objects,
        validation=pipeline(f"train[{kept}:]", False) if held_out else None,
        train_size=kept,
        validation_size=held_out,
        test_size=builder.builder_config.test_size,
    )
