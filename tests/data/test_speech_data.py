"""Speech recognition pipelines on `tfds.testing.mock_data`."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_attention.data.speech import CharacterVocabulary
from keras_attention.data.speech import speech_recognition_data
from keras_attention.models.speech_recognizer import speech_recognizer


def test_librispeech_layout_on_random_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        data = speech_recognition_data(num_samples=64, max_label_length=40, batch_size=4)
    assert data.vocabulary_size == 28 and data.sample_rate == 16000
    waves, labels = data.train.element_spec
    assert tuple(waves.shape) == (4, 64) and waves.dtype == tf.float32
    assert tuple(labels.shape) == (4, 40) and labels.dtype == tf.int32
    assert tuple(data.validation.element_spec[0].shape) == (None, 64)
    waves, labels = next(iter(data.test))
    assert np.all(np.abs(waves.numpy()) <= 1.0)
    assert labels.numpy().min() >= 0 and labels.numpy().max() <= 28
    with tfds.testing.mock_data(num_examples=12):
        data = speech_recognition_data(
            num_samples=64, max_label_length=40, batch_size=4, with_lengths=True, validation_split=None
        )
    assert data.validation is None
    (waves, lengths), labels = next(iter(data.train))
    assert waves.shape == (4, 64) and lengths.dtype == tf.int32 and lengths.shape == (4,)
    assert np.all((lengths.numpy() >= 1) & (lengths.numpy() <= 64))


def test_batches_feed_the_model():
    with tfds.testing.mock_data(num_examples=8):
        data = speech_recognition_data(num_samples=800, max_label_length=30, batch_size=4, with_lengths=True)
    model = speech_recognizer(800, data.vocabulary_size, hidden_dim=8, num_layers=1, num_heads=2, input_lengths=True)
    (waves, lengths), labels = next(iter(data.train))
    logits = keras.ops.convert_to_numpy(model([waves, lengths]))
    assert logits.shape == (4, 2, data.vocabulary_size + 1) and np.all(np.isfinite(logits))


# (speech samples, transcript) per split.
TRAIN = [
    ([100, -200, 32767], "HELLO  World!"),
    ([1, 2, 3, 4, 5, 6, 7], "too long audio"),  # 7 > num_samples: dropped
    ([5], "a b c d e f g"),  # 13 characters > max_label_length: dropped
    ([-32768, 0], "it's"),
]
TEST = [([1, 2, 3, 4, 5, 6, 7], "crop me please")]


def _librispeech(self, split, *args, **kwargs):
    rows = TRAIN if str(split).startswith("train") else TEST

    def generate():
        for speech, text in rows:
            yield {"speech": np.array(speech, "int16"), "text": text}

    return tf.data.Dataset.from_generator(
        generate,
        output_signature={
            "speech": tf.TensorSpec((None,), tf.int16),
            "text": tf.TensorSpec((), tf.string),
        },
    )


def test_values_on_known_examples():
    with tfds.testing.mock_data(as_dataset_fn=_librispeech):
        data = speech_recognition_data(
            num_samples=5, max_label_length=12, batch_size=1, shuffle_buffer=1, with_lengths=True
        )
    vocabulary = data.vocabulary
    train = sorted(
        ((tuple(l.numpy()[0]), w.numpy()[0].tolist(), int(n.numpy()[0])) for (w, n), l in data.train),
        key=lambda row: row[2],
    )
    assert len(train) == 2  # the too-long utterances are left out of train
    (ids_a, wave_a, n_a), (ids_b, wave_b, n_b) = train
    assert vocabulary.decode(ids_a) == "it's" and n_a == 2
    assert wave_a == [-1.0, 0.0, 0.0, 0.0, 0.0]
    assert vocabulary.decode(ids_b) == "hello world" and n_b == 3
    np.testing.assert_allclose(wave_b, [100 / 32768, -200 / 32768, 32767 / 32768, 0.0, 0.0])
    assert list(ids_b) == vocabulary.encode("hello world") + [0]
    # Evaluation keeps every utterance, cropped and truncated.
    ((wave, n), ids), = list(data.validation)
    np.testing.assert_allclose(wave.numpy()[0], np.arange(1, 6) / 32768)
    assert int(n.numpy()[0]) == 5
    assert vocabulary.decode(ids.numpy()[0]) == "crop me plea"


def test_tf_encode_matches_encode():
    vocabulary = CharacterVocabulary()
    texts = ["HELLO  World!", "  it's\ta TEST \n", "", "!!!", "a - b", " x ", "MR. O'BRIEN'S 2ND CAR", "café au lait"]
    for text in texts:
        assert vocabulary.tf_encode(tf.constant(text)).numpy().tolist() == vocabulary.encode(text), text
    digits = CharacterVocabulary("0123456789", lowercase=False)
    assert digits.tf_encode(tf.constant("a1 2b3")).numpy().tolist() == digits.encode("a1 2b3") == [2, 3, 4]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_samples": 0}, "num_samples"),
        ({"max_label_length": 1.5}, "max_label_length"),
        ({"batch_size": True}, "batch_size"),
        ({"train_split": None}, "train_split"),
        ({"vocabulary": "abc"}, "vocabulary"),
        ({"speech_key": "audio"}, "no feature 'audio'"),
        ({"text_key": "transcript"}, "no feature 'transcript'"),
    ],
)
def test_errors(kwargs, match):
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(ValueError, match=match):
            speech_recognition_data(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, r"`speech_recognition_data`: `batch_size` must be a positive integer\. Received: batch_size=0"),
        ({"num_samples": 2.5}, r"`num_samples` must be a positive integer\. Received: num_samples=2\.5"),
        ({"train_split": ""}, r"`train_split` must name a split\. Received: train_split=''"),
        ({"vocabulary": "abc"}, r"`vocabulary` must be a CharacterVocabulary or None\. Received: vocabulary='abc'"),
    ],
)
def test_bad_arguments_are_named_before_any_data_is_read(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        speech_recognition_data(data_dir=str(tmp_path / "absent"), **kwargs)
    assert not (tmp_path / "absent").exists()
