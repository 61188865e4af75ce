"""Image classification pipelines over tensorflow-datasets."""

import dataclasses

from keras_attention.data.feeding import prefetched
from keras_attention.data.prepared import cache_in_memory
from keras_attention.data.prepared import load_prepared
from keras_attention.data.prepared import prepared_builder


@dataclasses.dataclass
class ImageClassificationData:
    """What `image_classification_data` returns.

    Attributes:
        train: `tf.data.Dataset` of `(uint8 (batch, H, W, C), int64
            (batch,))`, shuffled, last partial batch dropped.
        test: like `train`, in order, all examples.
        image_shape: `(H, W, C)`.
        num_classes: int.
        label_names: list of class names.
        majority_accuracy: accuracy of always answering the training split's
            most frequent class on `test`.
    """

    train: object
    test: object
    image_shape: tuple
    num_classes: int
    label_names: list
    majority_accuracy: float


def image_classification_data(
    name="mnist",
    data_dir=None,
    train_split="train",
    test_split="test",
    image_key="image",
    label_key="label",
    image_size=None,
    batch_size=128,
    shuffle_buffer=10000,
    seed=0,
):
    """Loads a tfds image-classification dataset with static shapes.

    Images stay `uint8` (the builders rescale inside the model); with
    `image_size` they are resized (bilinear) and cast back to `uint8`.

    Args:
        name: tfds name with `image` and `label` features, e.g. `"mnist"`,
            `"fashion_mnist"`, `"cifar10"`.
        data_dir: tfds data directory.
        train_split, test_split: split names (tfds slicing works).
        image_key, label_key: feature names.
        image_size: optional `(height, width)`; required when the images do
            not all have one size.
        batch_size: int.
        shuffle_buffer: int, training shuffle buffer.
        seed: shuffle seed.

    Returns:
        An `ImageClassificationData`.
    """
    import numpy as np
    import tensorflow as tf

    builder = prepared_builder("`image_classification_data`", name, data_dir)
    features = builder.info.features
    for key in (image_key, label_key):
        if key not in features:
            raise ValueError(
                f"`image_classification_data`: {name!r} has no feature "
                f"{key!r}; it has {sorted(features)}"
            )
    shape = tuple(features[image_key].shape)
    if image_size is not None:
        shape = (int(image_size[0]), int(image_size[1]), shape[-1])
    if None in shape:
        raise ValueError(
            f"`image_classification_data`: {name!r} images have no fixed size "
            f"({features[image_key].shape}); pass image_size=(height, width)"
        )
    num_classes = features[label_key].num_classes

    def prepare(example):
        image = example[image_key]
        if image_size is not None:
            image = tf.cast(
                tf.clip_by_value(tf.round(tf.image.resize(image, shape[:2])), 0, 255), tf.uint8
            )
        return tf.ensure_shape(image, shape), example[label_key]

    def load(split, training):
        ds = load_prepared("`image_classification_data`", name, split=split, data_dir=data_dir)
        ds = cache_in_memory(ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE))
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        return prefetched(ds.batch(batch_size, drop_remainder=training))

    train = load(train_split, True)
    test = load(test_split, False)
    counts = np.zeros(num_classes)
    for _, labels in load_prepared("`image_classification_data`", name, split=train_split, data_dir=data_dir).map(
        lambda ex: (0, ex[label_key])
    ).batch(8192):
        counts += np.bincount(labels.numpy(), minlength=num_classes)[:num_classes]
    test_labels = np.concatenate(
        [labels.numpy() for _, labels in load_prepared("`image_classification_data`", name, split=test_split, data_dir=data_dir).map(
            lambda ex: (0, ex[label_key])).batch(8192)]
    )
    return ImageClassificationData(
        train=train,
        test=test,
        image_shape=shape,
        num_classes=int(num_classes),
        label_names=list(features[label_key].names),
        majority_accuracy=float(np.mean(test_labels == int(np.argmax(counts)))),
    )
