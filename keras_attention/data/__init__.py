"""Input pipelines (tensorflow-datasets) and the embedded generated datasets.

Importing this module registers the generated datasets with tfds, so
`tfds.load("listops")` works offline.
"""

from keras_attention.data.listops import Listops
from keras_attention.data.listops import ListopsConfig
from keras_attention.data.listops import decode_listops
from keras_attention.data.listops import encode_listops
from keras_attention.data.listops import evaluate_listops
from keras_attention.data.listops import generate_listops
from keras_attention.data.listops import listops_config
from keras_attention.data.listops import listops_vocabulary
from keras_attention.data.listops import load_listops
from keras_attention.data.text import text_classification_data
from keras_attention.data.sentence_holdout import hold_out_sentences
from keras_attention.data.vision import image_classification_data
from keras_attention.data.audio import spoken_digit_data
from keras_attention.data.speech_enhancement import speech_enhancement_data
from keras_attention.data.question_answering import squad_data
from keras_attention.data.translation import translation_data
from keras_attention.data.recommendation import generate_behaviour
from keras_attention.data.recommendation import movielens_interactions
from keras_attention.data.recommendation import sequential_recommendation_data
from keras_attention.data.segmentation import segmentation_data
from keras_attention.data.speech import CharacterVocabulary
from keras_attention.data.speech import speech_recognition_data
from keras_attention.data.video import video_classification_data
from keras_attention.data.multimodal import image_text_classification_data
from keras_attention.data.mnist_detection import DetectionData
from keras_attention.data.mnist_detection import MnistDetection
from keras_attention.data.mnist_detection import MnistDetectionConfig
from keras_attention.data.mnist_detection import mnist_detection_data
from keras_attention.data.detection import detection_data

__all__ = [
    "Listops",
    "ListopsConfig",
    "decode_listops",
    "encode_listops",
    "evaluate_listops",
    "generate_listops",
    "listops_config",
    "listops_vocabulary",
    "load_listops",
    "text_classification_data",
    "hold_out_sentences",
    "image_classification_data",
    "spoken_digit_data",
    "speech_enhancement_data",
    "squad_data",
    "translation_data",
    "generate_behaviour",
    "movielens_interactions",
    "sequential_recommendation_data",
    "segmentation_data",
    "CharacterVocabulary",
    "speech_recognition_data",
    "video_classification_data",
    "image_text_classification_data",
    "DetectionData",
    "MnistDetection",
    "MnistDetectionConfig",
    "mnist_detection_data",
    "detection_data",
]
