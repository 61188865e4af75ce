"""Text classification pipelines on `tfds.testing.mock_data`."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_attention.data import text_classification_data
from keras_attention.models import text_classifier
from keras_attention.models import with_preprocessing


@pytest.mark.parametrize(
    "name,text_key,classes",
    [("glue/sst2", "sentence", 2), ("imdb_reviews", "text", 2), ("ag_news_subset", "description", 4)],
)
def test_layouts(name, text_key, classes):
    with tfds.testing.mock_data(num_examples=40):
        data = text_classification_data(
            name, sequence_length=12, vocabulary_size=200, batch_size=8,
            validation_split="test" if name != "glue/sst2" else "validation",
        )
    assert data.num_classes == classes
    assert tuple(data.train.element_spec[0].shape) == (8, 12)
    assert int(data.train.cardinality()) == 40 // 8  # known, for the schedule
    assert data.train.element_spec[0].dtype == tf.int32
    ids, labels = next(iter(data.train))
    assert int(tf.reduce_max(labels)) < classes
    assert len(data.vocabulary) <= 200 and data.vocabulary[:2] == ["", "[UNK]"]
    assert 0 <= data.majority_accuracy <= 1
    texts, _ = next(iter(data.raw_evaluation))
    assert texts.dtype == tf.string


def test_vectorizer_matches_the_token_ids_and_serves_strings(tmp_path):
    with tfds.testing.mock_data(num_examples=40):
        data = text_classification_data("glue/sst2", sequence_length=10, vocabulary_size=100, batch_size=4, ngrams=2)
    texts, _ = next(iter(data.raw_evaluation))
    ids = data.vectorizer(texts)
    assert ids.shape[1] == 10
    # The words of the first text are in the vocabulary in order.
    words = texts[0].numpy().decode().lower().split()
    vocabulary = data.vocabulary
    first = [vocabulary[i] for i in ids[0].numpy() if i]
    assert all(w in vocabulary or t == "[UNK]" for w, t in zip(words, first))
    model = text_classifier(len(vocabulary), 2, 10, hidden_dim=8, num_layers=1, num_heads=2)
    raw = with_preprocessing(model, data.vectorizer)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(raw(texts)), keras.ops.convert_to_numpy(model(ids)), atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [({"sequence_length": 0}, "sequence_length"), ({"text_key": "nope"}, "no feature 'nope'"), ({"label_key": "idx"}, "no class label")],
)
def test_errors(kwargs, match):
    with tfds.testing.mock_data(num_examples=8):
        with pytest.raises(ValueError, match=match):
            text_classification_data("glue/sst2", **kwargs)


TRAIN = [("Good film!", 1), ("good, GOOD plot", 1), ("bad film", 0), ("Bad good film", 0), ("film", 1), ("nice", 1)]
VALIDATION = [("bad plot", 0), ("good", 0), ("unseen words", 1), ("film film", 0)]


def _sst2(self, split, *args, **kwargs):
    rows = TRAIN if str(split).startswith("train") else VALIDATION
    return tf.data.Dataset.from_tensor_slices(
        {"sentence": [r[0] for r in rows], "label": np.array([r[1] for r in rows], "int64"), "idx": np.arange(len(rows), dtype="int32")}
    )


def test_token_ids_and_baseline_hand_computed():
    with tfds.testing.mock_data(as_dataset_fn=_sst2):
        data = text_classification_data("glue/sst2", sequence_length=4, vocabulary_size=100, batch_size=2)
    # Counts on the training text (lower-cased, punctuation stripped):
    # good 4, film 4, bad 2, plot 1, nice 1 -> ids by frequency.
    assert data.vocabulary[:2] == ["", "[UNK]"]
    assert set(data.vocabulary[2:4]) == {"good", "film"} and data.vocabulary[4] == "bad"
    assert set(data.vocabulary[5:]) == {"plot", "nice"}
    index = {t: i for i, t in enumerate(data.vocabulary)}
    expected = np.array([
        [index["bad"], index["plot"], 0, 0],
        [index["good"], 0, 0, 0],
        [1, 1, 0, 0],  # out of vocabulary
        [index["film"], index["film"], 0, 0],
    ])
    ids = np.concatenate([x.numpy() for x, _ in data.validation])
    np.testing.assert_array_equal(ids, expected)
    labels = np.concatenate([y.numpy() for _, y in data.validation])
    np.testing.assert_array_equal(labels, [0, 0, 1, 0])
    # Training majority class is 1 (4 of 6); it is right on 1 of 4.
    assert data.majority_accuracy == 0.25
    assert int(data.train.cardinality()) == 3


def test_bigrams_follow_the_words():
    with tfds.testing.mock_data(as_dataset_fn=_sst2):
        data = text_classification_data("glue/sst2", sequence_length=6, vocabulary_size=100, batch_size=2, ngrams=2)
    assert "good film" in data.vocabulary and "bad film" in data.vocabulary
    index = {t: i for i, t in enumerate(data.vocabulary)}
    ids = keras.ops.convert_to_numpy(data.vectorizer(["Bad film."]))[0]
    np.testing.assert_array_equal(ids, [index["bad"], index["film"], index["bad film"], 0, 0, 0])


def _ag_news(self, split, *args, **kwargs):
    return tf.data.Dataset.from_tensor_slices(
        {"title": ["Stocks up", "Team wins"], "description": ["Markets rally.", "A late goal."], "label": np.array([2, 1], "int64")}
    )


def test_joined_text_features():
    with tfds.testing.mock_data(as_dataset_fn=_ag_news):
        data = text_classification_data(
            "ag_news_subset", text_key=("title", "description"), validation_split="test",
            sequence_length=6, vocabulary_size=50, batch_size=1,
        )
    texts, labels = next(iter(data.raw_evaluation))
    assert texts.numpy()[0].decode() == "Stocks up Markets rally."
    index = {t: i for i, t in enumerate(data.vocabulary)}
    first = next(iter(data.validation))[0].numpy()[0]
    np.testing.assert_array_equal(first, [index[w] for w in ["stocks", "up", "markets", "rally"]] + [0, 0])
    with pytest.raises(ValueError, match="no feature 'summary'"):
        with tfds.testing.mock_data(as_dataset_fn=_ag_news):
            text_classification_data("ag_news_subset", text_key=("title", "summary"))


def test_splits_given_as_datasets_are_used_as_they_are():
    train = tf.data.Dataset.from_tensor_slices((["good film", "bad film", "good"], np.array([1, 0, 1], "int32")))
    holdout = tf.data.Dataset.from_tensor_slices((["bad plot"], np.array([0], "int64")))
    with tfds.testing.mock_data(as_dataset_fn=_sst2):
        data = text_classification_data(
            "glue/sst2", train_split=train, validation_split=holdout, test_split="validation",
            sequence_length=3, vocabulary_size=20, batch_size=1,
        )
    assert set(data.vocabulary) == {"", "[UNK]", "good", "film", "bad"}  # adapted on the given text only
    assert int(data.train.cardinality()) == 3
    index = {t: i for i, t in enumerate(data.vocabulary)}
    (ids, label), = list(data.validation)
    np.testing.assert_array_equal(ids.numpy(), [[index["bad"], 1, 0]])
    assert label.dtype == tf.int64 and label.numpy().tolist() == [0]
    assert sum(int(y.shape[0]) for _, y in data.test) == len(VALIDATION)  # the named split
    assert data.majority_accuracy == 0.0  # the training majority (1) on the given hold-out ([0])


@pytest.mark.parametrize(
    "dataset",
    [
        tf.data.Dataset.from_tensor_slices((["a", "b"], [0.5, 1.0])),  # float labels
        tf.data.Dataset.from_tensor_slices((["a", "b"], [0, 1])).batch(2),  # batched
        tf.data.Dataset.from_tensor_slices(["a", "b"]),  # no labels
    ],
)
def test_a_dataset_split_of_the_wrong_kind_is_refused(dataset):
    with tfds.testing.mock_data(as_dataset_fn=_sst2):
        with pytest.raises(ValueError, match=r"text_classification_data.*unbatched `\(string, integer label\)` pairs.*element_spec="):
            text_classification_data("glue/sst2", validation_split=dataset)
