"""Functional model builders: one call returns a `keras.Model`."""

from keras_attention.models.common import compile_model
from keras_attention.models.text_classifier import compile_classifier
from keras_attention.models.text_classifier import text_classifier
from keras_attention.models.text_classifier import with_preprocessing
from keras_attention.models.image_classifier import image_classifier
from keras_attention.models.audio_classifier import audio_classifier
from keras_attention.models.question_answering import best_span
from keras_attention.models.question_answering import compile_question_answering
from keras_attention.models.question_answering import exact_match
from keras_attention.models.question_answering import f1_score
from keras_attention.models.question_answering import question_answering
from keras_attention.models.question_answering import squad_scores
from keras_attention.models.language_model import compile_language_model
from keras_attention.models.language_model import export_generator
from keras_attention.models.language_model import generate
from keras_attention.models.language_model import language_model
from keras_attention.models.seq2seq import compile_seq2seq
from keras_attention.models.seq2seq import corpus_bleu
from keras_attention.models.seq2seq import export_translator
from keras_attention.models.seq2seq import seq2seq
from keras_attention.models.seq2seq import translate
