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
