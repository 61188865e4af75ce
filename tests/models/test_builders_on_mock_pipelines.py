"""Each vision/video/speech builder trains one XLA step on batches from its
own tfds pipeline (`tfds.testing.mock_data`) and predicts finite values."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_attention.data import segmentation_data
from keras_attention.data import speech_recognition_data
from keras_attention.data import video_classification_data
from keras_attention.models import compile_segmenter
from keras_attention.models import compile_speech_recognizer
from keras_attention.models import compile_video_classifier
from keras_attention.models import image_segmenter
from keras_attention.models import speech_recognizer
from keras_attention.models import video_classifier

SMALL = dict(hidden_dim=16, num_layers=1, num_heads=2)


def _one_step(model, dataset):
    assert model.jit_compile is True
    history = model.fit(dataset.take(1), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    batch = next(iter(dataset))[0]
    predicted = model.predict(batch, verbose=0)
    assert np.all(np.isfinite(predicted))
    return predicted


def test_video_classifier_on_mock_ucf101():
    with tfds.testing.mock_data(num_examples=4):
        data = video_classification_data("ucf101", frames=4, image_size=16, batch_size=2, shuffle_buffer=4)
    model = video_classifier(4, 16, data.num_classes, **SMALL)
    compile_video_classifier(model)
    assert _one_step(model, data.train).shape == (2, data.num_classes)


def test_image_segmenter_on_mock_oxford_pets():
    with tfds.testing.mock_data(as_dataset_fn=_mock_pets):
        data = segmentation_data(image_size=16, batch_size=2, shuffle_buffer=4, cache=False)
    model = image_segmenter(16, data.num_classes, **SMALL)
    compile_segmenter(model)
    assert _one_step(model, data.train).shape == (2, 16, 16, data.num_classes)


def test_speech_recognizer_on_mock_librispeech():
    # Random mock utterances are long: the test split keeps (crops) them all.
    with tfds.testing.mock_data(num_examples=4):
        data = speech_recognition_data(num_samples=1600, max_label_length=20, batch_size=2)
    model = speech_recognizer(1600, data.vocabulary_size, **SMALL)
    compile_speech_recognizer(model)
    logits = _one_step(model, data.test)
    assert logits.shape[0] == 2 and logits.shape[-1] == data.vocabulary_size + 1


def _mock_pets(self, *args, **kwargs):
    def generate():
        for i in range(4):
            mask = (1 + (np.arange(20) * 3 // 20))[None, :, None].repeat(18, 0).astype("uint8")
            yield {"image": np.full((18, 20, 3), 60 * i, "uint8"), "segmentation_mask": mask}

    return tf.data.Dataset.from_generator(
        generate,
        output_signature={
            "image": tf.TensorSpec((None, None, 3), tf.uint8),
            "segmentation_mask": tf.TensorSpec((None, None, 1), tf.uint8),
        },
    )


def test_segmentation_masks_out_of_range_fail_clearly():
    # tfds' random mock masks take any uint8 value: not Oxford pet classes.
    with tfds.testing.mock_data(num_examples=2):
        data = segmentation_data(image_size=8, batch_size=1, shuffle_buffer=2, cache=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask values outside"):
        next(iter(data.test))
