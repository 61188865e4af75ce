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
