"""Finding a `fit` output again: the model file and the run's settings."""

import json
import os

from keras_attention.cli.options import UsageError


def resolve(model):
    """`(model_path, run_folder)` from a `fit` output folder or `.keras` file."""
    if os.path.isdir(model):
        folder, path = model, os.path.join(model, "model.keras")
    else:
        folder, path = os.path.dirname(model) or ".", model
    if not os.path.exists(path):
        raise UsageError(
            f"no model at {path!r}: --model takes a `keras-attention fit` output "
            "folder or a .keras file"
        )
    if not path.endswith(".keras"):
        raise UsageError(f"--model must be a .keras file or a folder. Received: {model!r}")
    return path, folder


def settings(folder):
    """The run's `metrics.json` (task, dataset, options), or `None`."""
    path = os.path.join(folder, "metrics.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def vocabulary(folder):
    """The run's `vocabulary.txt` as a list, or `None`."""
    path = os.path.join(folder, "vocabulary.txt")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")


def load_model(path):
    import keras

    import keras_attention  # noqa: F401  (registers the layers)

    return keras.models.load_model(path)
