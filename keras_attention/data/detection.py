"""Object detection pipelines for tfds datasets in the VOC / COCO layout."""

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_int
from keras_attention.arguments import check_positive_int
from keras_attention.data.feeding import prefetched
from keras_attention.data.mnist_detection import DetectionData
from keras_attention.data.mnist_detection import to_center_boxes
from keras_attention.data.prepared import load_prepared
from keras_attention.data.prepared import prepared_builder

_NAME = "detection_data"
# Per-object flags that mark objects the COCO / VOC evaluations leave out.
_IGNORED_FLAGS = ("is_crowd", "is_difficult")


def detection_data(
    name="voc/2007",
    data_dir=None,
    image_size=128,
    max_objects=32,
    batch_size=16,
    train_split="train",
    validation_split=None,
    test_split="test",
    drop_ignored=True,
    image_key="image",
    shuffle_buffer=1000,
    seed=0,
):
    """Detection pipelines for any prepared tfds dataset with an image and
    an `"objects"` sequence of `"bbox"` and `"label"` (`voc`, `coco`,
    `mnist_detection` with `image_key="canvas"`, ...), with static shapes
    for XLA.

    Each image is resized (bilinear, aspect ratio not kept: boxes are
    fractions of the image, so they stay right) to `image_size` square,
    converted to 3 channels (grey images are repeated) and scaled to
    `[0, 1]`. Boxes become `(cx, cy, w, h)` fractions; objects are padded
    to `max_objects` (label -1, box zeros). An image with more objects
    keeps its first `max_objects` (choose `max_objects` at least the
    dataset's most, e.g. 42 for VOC 2007, 93 for COCO 2017, or the model is
    taught that the others are background). With `drop_ignored`, objects
    flagged `is_crowd` (COCO) or `is_difficult` (VOC) are left out, as
    their evaluations leave them out.

    Args:
        name: tfds name, e.g. `"voc/2007"`, `"coco/2017"`.
        data_dir: tfds folder holding it prepared (nothing is downloaded).
        image_size: int, the square side images are resized to.
        max_objects: int, padded object count.
        batch_size: int.
        train_split, validation_split, test_split: tfds split names
            (`validation_split=None`: no validation).
        drop_ignored: bool, leave out crowd / difficult objects.
        image_key: str, the image feature's name.
        shuffle_buffer: int, train shuffle buffer (>= 1).
        seed: shuffle seed.

    Returns:
        A `DetectionData` (`canvas_size` is `image_size`, `channels` 3,
        `num_classes` the dataset's label count); training batches drop
        the last partial batch, validation and test keep every image.

    Example:

    ```python
    data = detection_data("voc/2007", "../shared/tfds", image_size=256, max_objects=42)
    model = object_detector(256, data.num_classes, channels=3, num_queries=50)
    ```
    """
    check_positive_int(_NAME, "image_size", image_size)
    check_positive_int(_NAME, "max_objects", max_objects)
    check_positive_int(_NAME, "batch_size", batch_size)
    check_positive_int(_NAME, "shuffle_buffer", shuffle_buffer)
    check_int(_NAME, "seed", seed)
    if drop_ignored not in (True, False):
        raise argument_error(_NAME, "drop_ignored", "must be True or False", f"drop_ignored={drop_ignored!r}")
    builder = prepared_builder(f"`{_NAME}`", name, data_dir)
    features = builder.info.features
    if image_key not in features or "objects" not in features or not {"bbox", "label"} <= set(features["objects"].keys()):
        raise argument_error(
            _NAME, "name", f"must name a dataset with an {image_key!r} image and 'objects' of 'bbox' and 'label' (the VOC/COCO layout)",
            f"name={name!r} with features {sorted(features.keys())}",
        )
    num_classes = features["objects"]["label"].num_classes
    flags = [f for f in _IGNORED_FLAGS if f in features["objects"].keys()] if drop_ignored else []

    import tensorflow as tf

    def convert(example):
        image = example[image_key]
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size)) / 255.0
        image = tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), (image_size, image_size, 3))
        objects = example["objects"]
        count = tf.minimum(tf.shape(objects["bbox"])[0], tf.shape(objects["label"])[0])
        for flag in flags:
            count = tf.minimum(count, tf.shape(objects[flag])[0])
        bbox = tf.cast(objects["bbox"][:count], tf.float32)
        # (ymin, xmin, ymax, xmax), ordered and inside the image.
        low = tf.clip_by_value(tf.minimum(bbox[:, :2], bbox[:, 2:]), 0.0, 1.0)
        high = tf.clip_by_value(tf.maximum(bbox[:, :2], bbox[:, 2:]), 0.0, 1.0)
        boxes = to_center_boxes(tf.concat([low, high], axis=-1))
        labels = tf.cast(objects["label"][:count], tf.int32)
        keep = tf.ones((count,), tf.bool)
        for flag in flags:
            keep = tf.logical_and(keep, tf.logical_not(objects[flag][:count]))
        boxes, labels = tf.boolean_mask(boxes, keep)[:max_objects], tf.boolean_mask(labels, keep)[:max_objects]
        pad = max_objects - tf.shape(labels)[0]
        boxes = tf.ensure_shape(tf.pad(boxes, [[0, pad], [0, 0]]), (max_objects, 4))
        labels = tf.ensure_shape(tf.pad(labels, [[0, pad]], constant_values=-1), (max_objects,))
        return image, {"boxes": boxes, "labels": labels}

    def pipeline(split, training):
        size(split)
        ds = load_prepared(f"`{_NAME}`", name, split, data_dir, shuffle_files=training)
        ds = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        return prefetched(ds.batch(batch_size, drop_remainder=training))

    known = sorted(builder.info.splits.keys())

    def size(split):
        """The split's example count (0 when unknown); a split the
        prepared dataset does not have is a clear error."""
        if split is None:
            return 0
        if known and split.split("[")[0] not in known:
            raise argument_error(_NAME, "split", f"must be one of {name!r}'s splits {known}", f"split={split!r}")
        try:
            return int(builder.info.splits[split].num_examples)
        except (KeyError, ValueError):
            return 0

    return DetectionData(
        train=pipeline(train_split, True),
        test=pipeline(test_split, False),
        canvas_size=image_size,
        num_classes=num_classes,
        max_objects=max_objects,
        validation=None if validation_split is None else pipeline(validation_split, False),
        train_size=size(train_split),
        validation_size=size(validation_split),
        test_size=size(test_split),
        channels=3,
    )
