"""Text classification pipelines over tensorflow-datasets.

`text_classification_data("glue/sst2", data_dir=...)` loads the splits,
adapts a `keras.layers.TextVectorization` on the training text, and returns
batched `(token ids, label)` datasets with a fixed length (static shapes for
XLA), plus the vectorizer, which `keras_attention.models.with_preprocessing`
puts in front of a trained model so the saved or exported model takes raw
strings.
"""

import dataclasses

from keras_attention.data.feeding import prefetched
from keras_attention.data.prepared import cache_in_memory
from keras_attention.data.prepared import load_prepared
from keras_attention.data.prepared import prepared_builder

# Text feature names of common tfds text-classification layouts, in the
# order they are tried when `text_key` is not given.
TEXT_KEYS = ("sentence", "text", "description", "content", "review", "document")


@dataclasses.dataclass
class TextClassificationData:
    """What `text_classification_data` returns.

    Attributes:
        train: `tf.data.Dataset` of `(int32 (batch, sequence_length), int64
            (batch,))`, shuffled, last partial batch dropped.
        validation: like `train`, in order, or `None` without that split.
        test: like `validation`, or `None`.
        vectorizer: the adapted `keras.layers.TextVectorization`.
        num_classes: int.
        vocabulary: list of token strings (id -> string).
        sequence_length: int.
        majority_accuracy: float, accuracy of always answering the training
            split's most frequent class on the evaluation split.
        raw_evaluation: `tf.data.Dataset` of `(string (batch,), label)` of
            the evaluation split (`validation`, else `test`), for models that
            take raw strings.
        label_names: list of class names.
    """

    train: object
    validation: object
    test: object
    vectorizer: object
    num_classes: int
    vocabulary: list
    sequence_length: int
    majority_accuracy: float
    raw_evaluation: object = None
    label_names: list = None


def _text_key(builder_name, features, text_key):
    if text_key is not None:
        keys = (text_key,) if isinstance(text_key, str) else tuple(text_key)
        missing = [key for key in keys if key not in features]
        if not keys or missing:
            raise ValueError(
                f"`text_classification_data`: {builder_name!r} has no feature "
                f"{(missing[0] if missing else text_key)!r}; it has {sorted(features)}"
            )
        return keys
    for key in TEXT_KEYS:
        if key in features:
            return (key,)
    raise ValueError(
        f"`text_classification_data`: cannot tell the text feature of "
        f"{builder_name!r} (features {sorted(features)}); pass `text_key`"
    )


def _checked_pairs(dataset):
    """`dataset` if it yields unbatched `(string, integer)` pairs, else a `ValueError`."""
    import tensorflow as tf

    spec = dataset.element_spec
    ok = (
        isinstance(spec, tuple)
        and len(spec) == 2
        and all(isinstance(s, tf.TensorSpec) and s.shape.rank == 0 for s in spec)
        and spec[0].dtype == tf.string
        and spec[1].dtype.is_integer
    )
    if not ok:
        raise ValueError(
            "`text_classification_data`: a split given as a `tf.data.Dataset` must yield unbatched "
            f"`(string, integer label)` pairs. Received: element_spec={spec}"
        )
    return dataset.map(lambda text, label: (text, tf.cast(label, "int64")))


def text_classification_data(
    name="glue/sst2",
    data_dir=None,
    text_key=None,
    label_key="label",
    train_split="train",
    validation_split="validation",
    test_split=None,
    sequence_length=64,
    vocabulary_size=20000,
    ngrams=None,
    standardize="lower_and_strip_punctuation",
    batch_size=64,
    shuffle_buffer=20000,
    seed=0,
):
    """Loads a tfds text-classification dataset as fixed-length token ids.

    Args:
        name: tfds name, e.g. `"glue/sst2"` (`sentence`), `"imdb_reviews"`
            (`text`), `"ag_news_subset"` (`description`).
        data_dir: tfds data directory (nothing is downloaded if the data is
            there; tfds' usual download otherwise).
        text_key: the text feature, or a tuple of features joined with a
            space (e.g. `("title", "description")` for `ag_news_subset`);
            guessed from `TEXT_KEYS` when `None`.
        label_key: the label feature (a `ClassLabel`).
        train_split, validation_split, test_split: split names (`None` to
            skip; GLUE's test labels are hidden, so SST-2 evaluates on
            `validation`), or `tf.data.Dataset`s of unbatched
            `(string, integer label)` pairs (e.g. a hold-out made by
            `hold_out_sentences`), used as they are.
        sequence_length: int, tokens per example (padded with 0 / cut).
        vocabulary_size: int, vectorizer vocabulary (padding and OOV
            included).
        ngrams: `None` or int, also index n-grams up to this size (e.g. 2:
            bigrams), adapted on the training text.
        standardize: `TextVectorization` standardisation.
        batch_size: int.
        shuffle_buffer: int, training shuffle buffer.
        seed: shuffle seed.

    Returns:
        A `TextClassificationData`.

    Example:

    ```python
    data = text_classification_data("glue/sst2", data_dir="shared/tfds")
    model = keras_attention.models.text_classifier(
        len(data.vocabulary), data.num_classes, data.sequence_length)
    ```
    """
    import keras
    import numpy as np
    import tensorflow as tf

    for argument, value in (
        ("sequence_length", sequence_length),
        ("vocabulary_size", vocabulary_size),
        ("batch_size", batch_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"`text_classification_data`: `{argument}` must be a positive "
                f"int. Received: {argument}={value!r}"
            )
    builder = prepared_builder("`text_classification_data`", name, data_dir)
    features = builder.info.features
    text_keys = _text_key(name, features, text_key)
    if label_key not in features or not hasattr(features[label_key], "num_classes"):
        raise ValueError(
            f"`text_classification_data`: {name!r} has no class label "
            f"{label_key!r}; features: {sorted(features)}"
        )
    num_classes = features[label_key].num_classes

    def load(split):
        if split is None:
            return None
        if isinstance(split, tf.data.Dataset):
            return _checked_pairs(split)
        ds = load_prepared("`text_classification_data`", name, split=split, data_dir=data_dir)
        return ds.map(
            lambda ex: (
                ex[text_keys[0]]
                if len(text_keys) == 1
                else tf.strings.reduce_join([ex[key] for key in text_keys], separator=" "),
                ex[label_key],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    train_text = load(train_split)
    vectorizer = keras.layers.TextVectorization(
        max_tokens=vocabulary_size,
        output_sequence_length=sequence_length,
        ngrams=ngrams,
        standardize=standardize,
        name="vectorizer",
    )
    vectorizer.adapt(train_text.map(lambda text, label: text).batch(1024))

    def encode(ds, training, count=None):
        if ds is None:
            return None
        ds = ds.batch(1024).map(
            lambda text, label: (tf.cast(vectorizer(text), "int32"), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        ).unbatch()
        if count is not None:
            # `unbatch` forgets the size; Keras and the schedules need it.
            ds = ds.apply(tf.data.experimental.assert_cardinality(count))
        ds = cache_in_memory(ds)
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        return prefetched(ds.batch(batch_size, drop_remainder=training))

    train_counts = np.zeros(num_classes)
    for _, labels in train_text.batch(4096):
        train_counts += np.bincount(labels.numpy(), minlength=num_classes)[:num_classes]
    validation = load(validation_split)
    majority = float("nan")
    evaluation = validation if validation is not None else load(test_split)
    if evaluation is not None:
        eval_labels = np.concatenate([labels.numpy() for _, labels in evaluation.batch(4096)])
        majority = float(np.mean(eval_labels == int(np.argmax(train_counts))))
    return TextClassificationData(
        train=encode(train_text, True, int(train_counts.sum())),
        validation=encode(validation, False),
        test=encode(load(test_split), False),
        vectorizer=vectorizer,
        num_classes=int(num_classes),
        vocabulary=list(vectorizer.get_vocabulary()),
        sequence_length=sequence_length,
        majority_accuracy=majority,
        raw_evaluation=None if evaluation is None else evaluation.batch(batch_size),
        label_names=list(features[label_key].names),
    )
