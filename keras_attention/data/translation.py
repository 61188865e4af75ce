"""Parallel-text pipelines over tensorflow-datasets, for `seq2seq`.

`translation_data("flores/neen", data_dir=...)` loads a translation
dataset, adapts one `keras.layers.TextVectorization` per language on the
training split, and returns batched teacher-forcing datasets with fixed
lengths (static shapes for XLA):

- inputs `(source_ids (batch, source_length), target_inputs (batch,
  target_length))`, target inputs being `[start] y_1 ... y_{T-1}`;
- labels `(batch, target_length)`, `y_1 ... y_n [end]`, 0-padded.

The target vocabulary is the adapted one plus two tokens that text never
produces (`"[start]"`, `"[end]"`: the standardisation strips the
brackets), so the target vectoriser still maps raw text to ids and the
start/end ids are fixed. Tokens are the vectoriser's words (whitespace
split by default, `split="character"` for characters); a subword
tokenizer would cut the unknown-word rate but needs tools outside Keras.

FLoRes (`flores/neen`, `flores/sien`) has only `validation` (~2.5k
sentences) and `test` splits: train on `validation`, evaluate on `test`.
"""

import dataclasses

from keras_attention.data.feeding import prefetched
from keras_attention.data.prepared import load_prepared
from keras_attention.data.prepared import prepared_builder

START_TOKEN = "[start]"
END_TOKEN = "[end]"
FUNCTION = "translation_data"


@dataclasses.dataclass
class TranslationData:
    """What `translation_data` returns.

    Attributes:
        train: `tf.data.Dataset` of `((source_ids, target_inputs), labels)`
            int32 batches, shuffled, last partial batch dropped.
        test: like `train`, in order, every example kept (or `None`).
        source_vectorizer: the adapted source `TextVectorization`
            (strings -> `(batch, source_length)` ids).
        target_vectorizer: the target `TextVectorization` (its vocabulary
            ends with the start and end tokens).
        source_vocabulary: list, source id -> token.
        target_vocabulary: list, target id -> token.
        source_length: int.
        target_length: int.
        start_token_id: int.
        end_token_id: int.
        baseline_accuracy: float, the token accuracy on the test labels of
            always answering the training labels' most frequent token.
        raw_test: `tf.data.Dataset` of `(source strings, target strings)`
            batches of the test split, in the order of `test`.
        source_key: str.
        target_key: str.
    """

    train: object
    test: object
    source_vectorizer: object
    target_vectorizer: object
    source_vocabulary: list
    target_vocabulary: list
    source_length: int
    target_length: int
    start_token_id: int
    end_token_id: int
    baseline_accuracy: float
    raw_test: object = None
    source_key: str = None
    target_key: str = None


def _keys(name, info, source_key, target_key):
    features = info.features
    names = (
        list(features["translation"].languages)
        if "translation" in features
        else list(features)
    )
    supervised = info.supervised_keys or (None, None)
    source_key = source_key or supervised[0]
    target_key = target_key or supervised[1]
    for argument, key in (("source_key", source_key), ("target_key", target_key)):
        if key is None:
            raise ValueError(
                f"`{FUNCTION}`: cannot tell the {argument[:-4]} language of "
                f"{name!r} (no supervised keys); pass `{argument}`, one of "
                f"{sorted(names)}"
            )
        if key not in names:
            raise ValueError(
                f"`{FUNCTION}`: {name!r} has no feature {key!r} "
                f"(`{argument}`); it has {sorted(names)}"
            )
    return source_key, target_key


def target_sequences(content, start_token_id, end_token_id):
    """Teacher-forcing pairs from `(batch, T - 1)` 0-padded content ids.

    Returns `(inputs, labels)`, both `(batch, T)`: inputs
    `[start] c_1 ... c_{T-1}` and labels `c_1 ... c_n [end] 0 ...`.
    """
    import tensorflow as tf

    content = tf.cast(content, tf.int32)
    batch = tf.shape(content)[0]
    length = content.shape[1] + 1
    count = tf.reduce_sum(tf.cast(content != 0, tf.int32), axis=1)
    labels = tf.pad(content, [[0, 0], [0, 1]])
    labels += end_token_id * tf.one_hot(count, length, dtype=tf.int32)
    start = tf.fill([batch, 1], tf.constant(start_token_id, tf.int32))
    inputs = tf.concat([start, content], axis=1)
    return inputs, labels


def translation_data(
    name="flores/neen",
    data_dir=None,
    source_key=None,
    target_key=None,
    train_split="validation",
    test_split="test",
    source_length=48,
    target_length=48,
    source_vocabulary_size=8000,
    target_vocabulary_size=8000,
    split="whitespace",
    standardize="lower_and_strip_punctuation",
    batch_size=32,
    shuffle_buffer=4096,
    seed=0,
):
    """Loads a tfds translation dataset as fixed-length teacher-forcing pairs.

    Args:
        name: tfds name, e.g. `"flores/neen"` (Nepali -> English).
        data_dir: tfds data directory (nothing is downloaded if the data is
            there).
        source_key: the source language; defaults to the dataset's
            supervised keys.
        target_key: the target language; defaults likewise.
        train_split: split the vectorisers are adapted on and the model
            trains on (`"validation"` for FLoRes).
        test_split: evaluation split, or `None`.
        source_length: int, source tokens per example (0-padded / cut).
        target_length: int, target positions (`target_length - 1` words
            at most, then the end token).
        source_vocabulary_size: int, source vocabulary (padding and OOV
            included).
        target_vocabulary_size: int, target vocabulary (padding, OOV,
            start and end included).
        split: `TextVectorization` split (`"whitespace"`, `"character"`).
        standardize: `TextVectorization` standardisation.
        batch_size: int.
        shuffle_buffer: int, training shuffle buffer.
        seed: shuffle seed.

    Returns:
        A `TranslationData`.

    Example:

    ```python
    data = translation_data("flores/neen", data_dir="shared/tfds")
    model = keras_attention.models.seq2seq(
        len(data.source_vocabulary), len(data.target_vocabulary),
        data.source_length, data.target_length)
    ```
    """
    import keras
    import numpy as np
    import tensorflow as tf

    for argument, value, minimum in (
        ("source_length", source_length, 1),
        ("target_length", target_length, 2),
        ("source_vocabulary_size", source_vocabulary_size, 3),
        ("target_vocabulary_size", target_vocabulary_size, 5),
        ("batch_size", batch_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(
                f"`{FUNCTION}`: `{argument}` must be an int >= {minimum}. "
                f"Received: {argument}={value!r}"
            )
    builder = prepared_builder("`translation_data`", name, data_dir)
    source_key, target_key = _keys(name, builder.info, source_key, target_key)

    def load(split_name):
        if split_name is None:
            return None
        ds = load_prepared("`translation_data`", name, split=split_name, data_dir=data_dir)
        return ds.map(
            lambda ex: (ex[source_key], ex[target_key]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    train_text = load(train_split)
    source_vectorizer = keras.layers.TextVectorization(
        max_tokens=source_vocabulary_size,
        output_sequence_length=source_length,
        standardize=standardize,
        split=split,
        name="source_vectorizer",
    )
    source_vectorizer.adapt(train_text.map(lambda s, t: s).batch(1024))
    adapted = keras.layers.TextVectorization(
        max_tokens=target_vocabulary_size - 2,
        standardize=standardize,
        split=split,
    )
    adapted.adapt(train_text.map(lambda s, t: t).batch(1024))
    target_vocabulary = [str(t) for t in adapted.get_vocabulary()]
    target_vocabulary += [START_TOKEN, END_TOKEN]
    target_vectorizer = keras.layers.TextVectorization(
        vocabulary=target_vocabulary,
        output_sequence_length=target_length - 1,
        standardize=standardize,
        split=split,
        name="target_vectorizer",
    )
    start_token_id = len(target_vocabulary) - 2
    end_token_id = len(target_vocabulary) - 1

    def encode(source, target):
        source_ids = tf.cast(source_vectorizer(source), tf.int32)
        inputs, labels = target_sequences(
            target_vectorizer(target), start_token_id, end_token_id
        )
        return (source_ids, inputs), labels

    def pipeline(text, training):
        if text is None:
            return None
        count = int(text.reduce(0, lambda n, _: n + 1))
        ds = text.batch(1024).map(encode, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.unbatch().apply(tf.data.experimental.assert_cardinality(count))
        ds = ds.cache()
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        return prefetched(ds.batch(batch_size, drop_remainder=training))

    test_text = load(test_split)
    baseline = float("nan")
    if test_text is not None:
        counts = np.zeros(len(target_vocabulary), "int64")
        for _, labels in train_text.batch(1024).map(encode):
            counts += np.bincount(labels.numpy().ravel(), minlength=len(counts))
        counts[0] = 0
        frequent = int(np.argmax(counts))
        hits = total = 0
        for _, labels in test_text.batch(1024).map(encode):
            labels = labels.numpy()
            hits += int(np.sum(labels == frequent))
            total += int(np.sum(labels != 0))
        baseline = hits / max(total, 1)
    return TranslationData(
        train=pipeline(train_text, True),
        test=pipeline(test_text, False),
        source_vectorizer=source_vectorizer,
        target_vectorizer=target_vectorizer,
        source_vocabulary=[str(t) for t in source_vectorizer.get_vocabulary()],
        target_vocabulary=target_vocabulary,
        source_length=source_length,
        target_length=target_length,
        start_token_id=start_token_id,
        end_token_id=end_token_id,
        baseline_accuracy=baseline,
        raw_test=None if test_text is None else test_text.batch(batch_size),
        source_key=source_key,
        target_key=target_key,
    )
