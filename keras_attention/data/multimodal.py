"""Image + text classification pipelines over tensorflow-datasets, for
`multimodal_classifier`."""

import dataclasses

from keras_attention.arguments import check_positive_int
from keras_attention.data.arguments import image_size_argument
from keras_attention.data.feeding import prefetched
from keras_attention.data.prepared import load_prepared
from keras_attention.data.prepared import prepared_builder

WHERE = "`image_text_classification_data`"


@dataclasses.dataclass
class ImageTextClassificationData:
    """What `image_text_classification_data` returns.

    Attributes:
        train: `tf.data.Dataset` of `({"image": uint8 (batch, H, W, C),
            "tokens": int32 (batch, sequence_length)}, int64 (batch,))`,
            shuffled, last partial batch dropped.
        test: like `train`, in order, every example (or `None`).
        vectorizer: the `TextVectorization` adapted on the training text.
        vocabulary: list, id -> token (0 padding, 1 out of vocabulary).
        image_shape: `(H, W, C)`.
        sequence_length: int.
        num_classes: int.
    """

    train: object
    test: object
    vectorizer: object
    vocabulary: list
    image_shape: tuple
    sequence_length: int
    num_classes: int


def image_text_classification_data(
    name,
    data_dir=None,
    image_key="image",
    text_key="text",
    label_key="label",
    train_split="train",
    test_split="test",
    image_size=64,
    sequence_length=32,
    vocabulary_size=10000,
    batch_size=32,
    shuffle_buffer=2048,
    seed=0,
):
    """Loads a tfds dataset of (image, text, class) examples.

    Images are resized to `image_size` (static shapes) and kept `uint8`
    (the model rescales); the text goes through a
    `keras.layers.TextVectorization` adapted on the training split to
    `sequence_length` ids (0-padded). The output dicts match
    `multimodal_classifier`'s inputs.

    Args:
        name: tfds name of a dataset with an image, a text and a
            `ClassLabel` feature.
        data_dir: tfds data directory.
        image_key, text_key, label_key: the feature names.
        train_split, test_split: split names (`test_split=None` to skip).
        image_size: int or `(height, width)`.
        sequence_length: int, token ids per text.
        vocabulary_size: int, the vectoriser's vocabulary (with padding and
            out-of-vocabulary ids).
        batch_size: int.
        shuffle_buffer: int, training shuffle buffer.
        seed: int.

    Returns:
        `ImageTextClassificationData`.

    Example:

    ```python
    data = image_text_classification_data("my_image_text_dataset")
    model = multimodal_classifier(data.image_shape[:2], data.sequence_length,
                                  len(data.vocabulary), data.num_classes)
    compile_classifier(model)
    model.fit(data.train, epochs=3)
    ```
    """
    import keras
    import tensorflow as tf

    size = image_size_argument(WHERE, image_size)
    for argument, value in (
        ("sequence_length", sequence_length),
        ("vocabulary_size", vocabulary_size),
        ("batch_size", batch_size),
    ):
        check_positive_int(WHERE, argument, value)
    builder = prepared_builder(WHERE, name, data_dir)
    features = builder.info.features
    for key in (image_key, text_key, label_key):
        if key not in features:
            raise ValueError(f"{WHERE}: {name!r} has no feature {key!r}; it has {sorted(features)}")
    if not hasattr(features[label_key], "num_classes"):
        raise ValueError(f"{WHERE}: feature {label_key!r} of {name!r} is not a ClassLabel")
    channels = features[image_key].shape[-1]
    if channels is None:
        raise ValueError(f"{WHERE}: {name!r} images have no fixed channel count")
    image_shape = size + (int(channels),)

    def load(split):
        ds = load_prepared(WHERE, name, split=split, data_dir=data_dir)
        return ds.map(
            lambda ex: (ex[image_key], ex[text_key], ex[label_key]), num_parallel_calls=tf.data.AUTOTUNE
        )

    train = load(train_split)
    vectorizer = keras.layers.TextVectorization(
        max_tokens=vocabulary_size, output_sequence_length=sequence_length, name="vectorizer"
    )
    vectorizer.adapt(train.map(lambda image, text, label: text).batch(1024))

    def prepare(image, text, label):
        image = tf.image.resize(image, size)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        tokens = tf.cast(vectorizer(text[None])[0], tf.int32)
        return {"image": tf.ensure_shape(image, image_shape), "tokens": tf.ensure_shape(tokens, (sequence_length,))}, label

    def batches(ds, training):
        if ds is None:
            return None
        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).cache()
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        return prefetched(ds.batch(batch_size, drop_remainder=training))

    return ImageTextClassificationData(
        train=batches(train, True),
        test=batches(None if test_split is None else load(test_split), False),
        vectorizer=vectorizer,
        vocabulary=list(vectorizer.get_vocabulary()),
        image_shape=image_shape,
        sequence_length=sequence_length,
        num_classes=int(features[label_key].num_classes),
    )
