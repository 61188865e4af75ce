"""A `fit` output folder: writing its model files, and finding them again
(the model file and the run's settings)."""

import json
import os

from keras_attention.cli.options import UsageError


def save_model_files(model, task, data, folder, export=True):
    """Writes a trained model as `fit` does; returns `(model_path, export_path)`.

    `folder/model.keras` (with the task's preprocessing, e.g. the text
    vectoriser, in front when the data has one, so it takes raw inputs),
    `folder/export/` (a SavedModel) unless `export=False`, and
    `folder/vocabulary.txt` when the data has a vocabulary.
    """
    os.makedirs(folder, exist_ok=True)
    saved = model
    if data.preprocessor is not None:
        from keras_attention.models import with_preprocessing

        saved = with_preprocessing(model, data.preprocessor)
        # Preprocessing such as TextVectorization does not compile with XLA.
        saved.compile(loss=task.loss(), metrics=task.metrics(), jit_compile=False)
        # Its optimizer's slots exist when saved, so the file loads without
        # "skipping variable loading for optimizer" warnings.
        saved.optimizer.build(saved.trainable_variables)
    model_path = os.path.join(folder, "model.keras")
    saved.save(model_path)
    export_path = None
    if export:
        export_path = os.path.join(folder, "export")
        saved.export(export_path, verbose=False)
    if data.vocabulary is not None:
        with open(os.path.join(folder, "vocabulary.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(data.vocabulary))
    return model_path, export_path


def verify(path):
    """Loads a just-written `.keras` file back once: a damaged or partial
    file fails here, before it replaces anything."""
    load_model(path)


def resolve(model, command="evaluate"):
    """`(model_path, run_folder)` from a `fit` output folder or `.keras` file.

    A run folder whose saving was interrupted is repaired first (see
    `RunFolder.recover`).
    """
    from keras_attention.cli.run_folder import RunFolder

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
