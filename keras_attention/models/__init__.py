"""Functional model builders: one call returns a `keras.Model`."""

from keras_attention.models.common import compile_model
from keras_attention.models.text_classifier import compile_classifier
from keras_attention.models.text_classifier import text_classifier
from keras_attention.models.text_classifier import with_preprocessing
from keras_attention.models.raw_input_model import RawInputModel
from keras_attention.models.image_classifier import image_classifier
from keras_attention.models.audio_classifier import audio_classifier
from keras_attention.models.question_answering import best_span
from keras_attention.models.question_answering import compile_question_answering
from keras_attention.models.question_answering import evaluate_question_answering
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
from keras_attention.models.sequential_recommender import compile_sequential_recommender
from keras_attention.models.sequential_recommender import sequential_recommender
from keras_attention.models.ranking import ranking_metrics
from keras_attention.models.ranking import rating_metrics
from keras_attention.models.recommendation_baselines import fit_matrix_factorization
from keras_attention.models.recommendation_baselines import matrix_factorization
from keras_attention.models.recommendation_baselines import popularity_scores
from keras_attention.models.image_segmenter import compile_segmenter
from keras_attention.models.image_segmenter import image_segmenter
from keras_attention.models.video_classifier import compile_video_classifier
from keras_attention.models.video_classifier import video_classifier
from keras_attention.models.multimodal_classifier import multimodal_classifier
from keras_attention.models.speech_recognizer import CTCLoss
from keras_attention.models.speech_recognizer import character_error_rate
from keras_attention.models.speech_recognizer import compile_speech_recognizer
from keras_attention.models.speech_recognizer import ctc_greedy_decode
from keras_attention.models.speech_recognizer import speech_recognizer
from keras_attention.models.speech_recognizer import transcribe
from keras_attention.models.speech_recognizer import word_error_rate
from keras_attention.models.scale_invariant_sdr import NegativeScaleInvariantSDR
from keras_attention.models.scale_invariant_sdr import ScaleInvariantSDR
from keras_attention.models.scale_invariant_sdr import scale_invariant_sdr
from keras_attention.models.speech_enhancer import compile_speech_enhancer
from keras_attention.models.speech_enhancer import speech_enhancer
from keras_attention.models.boxes import box_iou
from keras_attention.models.boxes import center_to_corners
from keras_attention.models.boxes import corners_to_center
from keras_attention.models.boxes import generalized_box_iou
from keras_attention.models.mean_average_precision import COCO_THRESHOLDS
from keras_attention.models.mean_average_precision import average_precision
from keras_attention.models.mean_average_precision import mean_average_precision
from keras_attention.models.hungarian_matching import hungarian_matching
from keras_attention.models.set_prediction_loss import SetPredictionLoss
from keras_attention.models.set_prediction_loss import pack_detection_targets
from keras_attention.models.object_detector import compile_object_detector
from keras_attention.models.object_detector import detect
from keras_attention.models.object_detector import evaluate_detector
from keras_attention.models.object_detector import object_detector
from keras_attention.models.mean_average_precision_callback import MeanAveragePrecisionCallback
from keras_attention.models.speech_quality import perceptual_speech_quality
from keras_attention.models.speech_quality import short_time_objective_intelligibility

__all__ = [
    "compile_model",
    "compile_classifier",
    "text_classifier",
    "with_preprocessing",
    "RawInputModel",
    "image_classifier",
    "audio_classifier",
    "best_span",
    "compile_question_answering",
    "evaluate_question_answering",
    "exact_match",
    "f1_score",
    "question_answering",
    "squad_scores",
    "compile_language_model",
    "export_generator",
    "generate",
    "language_model",
    "compile_seq2seq",
    "corpus_bleu",
    "export_translator",
    "seq2seq",
    "translate",
    "compile_sequential_recommender",
    "sequential_recommender",
    "ranking_metrics",
    "rating_metrics",
    "fit_matrix_factorization",
    "matrix_factorization",
    "popularity_scores",
    "compile_segmenter",
    "image_segmenter",
    "compile_video_classifier",
    "video_classifier",
    "multimodal_classifier",
    "CTCLoss",
    "character_error_rate",
    "compile_speech_recognizer",
    "ctc_greedy_decode",
    "speech_recognizer",
    "transcribe",
    "word_error_rate",
    "NegativeScaleInvariantSDR",
    "ScaleInvariantSDR",
    "scale_invariant_sdr",
    "compile_speech_enhancer",
    "speech_enhancer",
    "box_iou",
    "center_to_corners",
    "corners_to_center",
    "generalized_box_iou",
    "COCO_THRESHOLDS",
    "average_precision",
    "mean_average_precision",
    "hungarian_matching",
    "SetPredictionLoss",
    "pack_detection_targets",
    "compile_object_detector",
    "detect",
    "evaluate_detector",
    "object_detector",
    "MeanAveragePrecisionCallback",
    "perceptual_speech_quality",
    "short_time_objective_intelligibility",
]
