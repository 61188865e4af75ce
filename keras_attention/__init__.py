"""keras-attention: attention layers, ops and models for Keras 3."""

import importlib
import os
import sys


def _quiet_for_the_command_line():
    # TensorFlow prints its C++ start-up log (oneDNN, CUDA probing, CPU
    # features, an error-level `cuInit` line on machines without a GPU) when
    # it is imported, before `keras-attention` has parsed its arguments, and
    # TensorFlow 2.21 writes part of it before its log level is read. For
    # the command line, TensorFlow is therefore imported here with the
    # process's stderr (file descriptor 2) pointed at /dev/null; Python
    # errors still propagate as exceptions. `--verbose` keeps the log.
    argv = getattr(sys, "orig_argv", sys.argv)
    command = os.path.basename(sys.argv[0] or "") == "keras-attention" or "keras_attention.cli" in argv
    if not command or "--verbose" in argv or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_quiet_for_the_command_line()

from keras_attention import layers  # noqa: E402
from keras_attention import models  # noqa: E402
from keras_attention import ops  # noqa: E402

__version__ = "0.1.0"
"""The package version (the `keras-attention-kit` distribution's)."""

__all__ = ["data", "distribute", "layers", "models", "ops", "tuning", "xla_check", "__version__"]


def __getattr__(name):
    # Loaded on first use: `data` imports tensorflow-datasets (and registers
    # the generated datasets with it), `tuning` imports keras-tuner. A user
    # who only wants a layer or a model pays for neither. `distribute`
    # (tf.distribute strategies) and `xla_check` (TPU readiness) are tools
    # for a few.
    if name in ("data", "distribute", "tuning", "xla_check"):
        return importlib.import_module(f"keras_attention.{name}")
    raise AttributeError(f"module 'keras_attention' has no attribute {name!r}")
