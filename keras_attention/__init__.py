"""keras-attention: attention layers, ops and models for Keras 3."""

from keras_attention import data
from keras_attention import layers
from keras_attention import models
from keras_attention import ops

__version__ = "0.1.0"

__all__ = ["data", "layers", "models", "ops", "__version__"]
