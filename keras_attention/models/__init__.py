"""Functional model builders: one call returns a `keras.Model`."""

from keras_attention.models.common import compile_model
from keras_attention.models.text_classifier import compile_classifier
from keras_attention.models.text_classifier import text_classifier
from keras_attention.models.text_classifier import with_preprocessing
from keras_attention.models.image_classifier import image_classifier
from keras_attention.models.audio_classifier import audio_classifier
