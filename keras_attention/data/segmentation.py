"""Semantic segmentation pipelines over tensorflow-datasets."""

import dataclasses

from keras_attention.arguments import check_positive_int
from keras_attention.data.arguments import image_size_argument
from keras_attention.data.feeding import prefetched
from keras_attention.data.prepared import load_prepared
from keras_attention.data.prepared import prepared_builder

# Datasets whose masks need a known offset / class count.
KNOWN = {
    # Trimaps: 1 pet, 2 background, 3 border.
    "oxford_iiit_pet": {"num_classes": 3, "mask_offset": 1},
}


@dataclasses.dataclass
class SegmentationData:
    """What `segmentation_data` returns.

    Attributes:
        train: `tf.data.Dataset` of `(uint8 (batch, H, W, C), int32
            (batch, H, W))`, shuffled, last partial batch dropped.
        test: like `train`, in order, all examples, never flipped.
        image_shape: `(H, W, C)`.
        num_classes: int, the mask classes (`0 ... num_classes - 1`).
    """

    train: object
    test: object
    image_shape: tuple
    num_classes: int


def segmentation_data(
    name="oxford_iiit_pet",
    data_dir=None,
    image_size=(128, 128),
    batch_size=32,
    train_split="train",
    test_split="test",
    image_key="image",
    mask_key="segmentation_mask",
    num_classes=None,
    mask_offset=None,
    flip=False,
    shuffle_buffer=1000,
    cache=True,
    seed=0,
):
    """Loads a tfds segmentation dataset as fixed-size image / mask pairs.

    Images are resized (bilinear) to `image_size` and cast back to `uint8`
    (the builders rescale inside the model); masks are resized with nearest
    neighbours (labels are never blended), shifted down by `mask_offset`
    (Oxford-IIIT Pet's trimap values 1, 2, 3 become 0, 1, 2) and returned
    as int32 `(H, W)` maps of class ids. Every tensor has a static shape.

    Args:
        name: tfds name with an image and a mask feature, e.g.
            `"oxford_iiit_pet"`.
        data_dir: tfds data directory.
        image_size: int or `(height, width)`.
        batch_size: int.
        train_split, test_split: split names (tfds slicing works).
        image_key, mask_key: feature names.
        num_classes: int, the number of mask classes. Known for
            `"oxford_iiit_pet"` (3); required otherwise.
        mask_offset: int subtracted from the mask values. Defaults to 1
            for `"oxford_iiit_pet"`, else 0.
        flip: bool, random horizontal flips (image and mask together) of
            the training split.
        shuffle_buffer: int, training shuffle buffer.
        cache: bool, cache the resized examples in memory.
        seed: shuffle / flip seed.

    Returns:
        A `SegmentationData`.

    Example:

    ```python
    data = segmentation_data("oxford_iiit_pet", image_size=128)
    model = image_segmenter(128, data.num_classes)
    compile_segmenter(model)
    model.fit(data.train, validation_data=data.test, epochs=1)
    ```
    """
    import tensorflow as tf

    where = "`segmentation_data`"
    image_size = image_size_argument(where, image_size)
    check_positive_int(where, "batch_size", batch_size)
    known = KNOWN.get(name.split("/")[0].split(":")[0], {})
    num_classes = num_classes if num_classes is not None else known.get("num_classes")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"{where}: `num_classes` must be an int >= 2 (it is only known for "
            f"{sorted(KNOWN)}). Received: num_classes={num_classes!r} for {name!r}"
        )
    mask_offset = mask_offset if mask_offset is not None else known.get("mask_offset", 0)
    if isinstance(mask_offset, bool) or not isinstance(mask_offset, int):
        raise ValueError(f"{where}: `mask_offset` must be an int. Received: mask_offset={mask_offset!r}")
    builder = prepared_builder(where, name, data_dir)
    features = builder.info.features
    for key in (image_key, mask_key):
        if key not in features:
            raise ValueError(f"{where}: {name!r} has no feature {key!r}; it has {sorted(features)}")
    channels = features[image_key].shape[-1]
    if channels is None:
        raise ValueError(f"{where}: {name!r} images have no fixed channel count")
    size = (int(image_size[0]), int(image_size[1]))
    image_shape = size + (int(channels),)

    def prepare(example):
        image = tf.image.resize(example[image_key], size)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        mask = example[mask_key]
        if mask.shape.rank == 2:
            mask = mask[..., None]
        mask = tf.image.resize(mask, size, method="nearest")[..., 0]
        mask = tf.cast(mask, tf.int32) - mask_offset
        # Out-of-range classes would make the loss NaN: fail with the cause.
        check = tf.debugging.assert_less(
            tf.reduce_max(mask) + 1,
            1 + num_classes,
            message=f"`segmentation_data`: {name!r} has mask values outside [{mask_offset}, "
            f"{mask_offset + num_classes - 1}] (num_classes={num_classes}, mask_offset={mask_offset})",
        )
        with tf.control_dependencies([check, tf.debugging.assert_non_negative(mask, message=(
            f"`segmentation_data`: {name!r} has mask values below mask_offset={mask_offset}"
        ))]):
            mask = tf.identity(mask)
        return tf.ensure_shape(image, image_shape), tf.ensure_shape(mask, size)

    def random_flip(image, mask):
        flipped = tf.random.uniform((), seed=seed) < 0.5
        return (
            tf.where(flipped, tf.reverse(image, [1]), image),
            tf.where(flipped, tf.reverse(mask, [1]), mask),
        )

    def load(split, training):
        ds = load_prepared(where, name, split=split, data_dir=data_dir, shuffle_files=training)
        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        if cache:
            ds = ds.cache()
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
            if flip:
                ds = ds.map(random_flip, num_parallel_calls=tf.data.AUTOTUNE)
        return prefetched(ds.batch(batch_size, drop_remainder=training))

    return SegmentationData(
        train=load(train_split, True),
        test=load(test_split, False),
        image_shape=image_shape,
        num_classes=int(num_classes),
    )
