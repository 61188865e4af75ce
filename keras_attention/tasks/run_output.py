"""What a trained task's run writes: its model files and its `metrics.json`.

`keras-attention fit` and `tune` (its best model) both write a run through
these functions, into a `RunFolder`'s staging folder, so that the two
commands write the same files in the same format and
`keras-attention evaluate`/`predict` read either.
"""

import os

from keras_attention.tasks.run_folder import atomic_write_json


def save_model_files(model, task, data, folder, export=True):
    """Writes a trained model; returns `(model_path, export_path)`.

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
    import keras

    import keras_attention  # noqa: F401  (registers the layers)

    keras.models.load_model(path)


def write_metrics(path, *, task, data, dataset, data_dir, attention, attention_kwargs,
                  options, test, model, model_path, export_path, **extra):
    """Writes a run's `metrics.json` (the one writer of that file).

    Args:
        path: the file to write (atomically).
        task, data: the `Task` and its `TaskData`.
        dataset, data_dir: where the data came from.
        attention, attention_kwargs, options: the run's configuration.
        test: dict of the metrics on `data.test_split`.
        model: the trained model (its parameters are counted).
        model_path, export_path: where its files are (`export_path` may be
            `None`).
        **extra: command-specific fields (e.g. `train_seconds`, `score`).

    Returns:
        The dict written.
    """
    metrics = {
        "task": task.name,
        "dataset": dataset,
        "data_dir": data_dir,
        "attention": attention,
        "attention_kwargs": attention_kwargs,
        "options": options,
        "test_split": data.test_split,
        "test": {k: round(float(v), 4) for k, v in (test or {}).items()},
        "baselines": {k: round(float(v), 4) for k, v in task.baselines(data).items()},
        "parameters": int(model.count_params()),
        "model": model_path,
        "export": export_path,
        **extra,
    }
    atomic_write_json(path, metrics)
    return metrics
