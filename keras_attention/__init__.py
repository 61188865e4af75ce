"""keras-attention: attention layers, ops and models for Keras 3."""

import importlib

from keras_attention import data
from keras_attention import layers
from keras_attention import models
from keras_attention import ops

__version__ = "0.1.0"

__all__ = ["data", "layers", "models", "ops", "tuning", "__version__"]


def __getattr__(name):
    # `keras_attention.tuning` imports keras-tuner: only on first use.
    if name == "tuning":
        return importlib.import_module("keras_attention.tuning")
    raise AttributeError(f"module 'keras_attention' has no attribute {name!r}")
