"""A `fit` output folder as the commands that read it find it: the model
file, the run's settings and vocabulary (written by
`keras_attention.tasks.run_output`)."""

import json
import os

from keras_attention.cli.options import UsageError


def resolve(model, command="evaluate"):
    """`(model_path, run_folder)` from a `fit` output folder or `.keras` file.

    A run folder whose saving was interrupted is repaired first (see
    `RunFolder.recover`).
    """
    from keras_attention.tasks.run_folder import RunFolder

    if os.path.isdir(model):
        folder, path = model, os.path.join(model, "model.keras")
    else:
        folder, path = os.path.dirname(model) or ".", model
    RunFolder(folder, command).recover()
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
