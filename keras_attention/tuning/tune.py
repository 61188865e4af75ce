"""`tune`: a resumable keras-tuner search over a task's models.

Writes into `directory/project_name`:

- keras-tuner's own state (`oracle.json`, `trial_*/trial.json`,
  `trial_*/checkpoint.weights.h5`): re-running with the same directory
  continues the search; finished trials are not redone, the trial that was
  running when the search was killed runs again;
- `trial_*/seconds.json`: each trial's wall-clock time, and whether the
  time budget stopped its training early;
- `results.md`, `results.csv`, `results.json`: one row per trial (trial id,
  status, hyperparameters, score, seconds), best first;
- `best/model.keras` (loads after `import keras_attention`, without
  `custom_objects`), `best/export/` (a
  SavedModel: `tf.saved_model.load(path).serve(x)`), `best/metrics.json`
  (the best configuration and its test metrics, in `keras-attention fit`'s
  format, so `keras-attention evaluate --model DIR/best` works).
"""

import csv
import dataclasses
import json
import os
import time
import warnings

from keras_attention.arguments import argument_error

TUNERS = ("hyperband", "random", "bayesian")
"""The keras-tuner search algorithms `tune` and `make_tuner` accept by name."""


@dataclasses.dataclass
class TuningResult:
    """What `tune` returns.

    Attributes:
        best_configuration: the best `Configuration` (attention, its
            arguments, the task options).
        best_hyperparameters: dict, the best trial's `hp` values.
        best_score: float, the best trial's objective value.
        test: dict, the best model's test metrics.
        rows: list of dicts, one per trial (see `results_rows`).
        table: str, the rows as a markdown table.
        project_dir: str, the folder of the search.
        model_path: str, `best/model.keras`.
        export_path: str or `None`, `best/export`.
        tuner: the `keras_tuner.Tuner`.
    """

    best_configuration: object
    best_hyperparameters: dict
    best_score: float
    test: dict
    rows: list
    table: str
    project_dir: str
    model_path: str
    export_path: str
    tuner: object




# The message of a trial whose training the time budget stopped early.
CUT_MESSAGE = "stopped by the time budget"


def _deadline_callback(search):
    """Stops training once `search.deadline` is past, and tells `search`."""
    import keras

    class Deadline(keras.callbacks.Callback):
        """Stops training once the search's time budget is spent."""

        def on_train_batch_end(self, batch, logs=None):
            if time.time() > search.deadline:
                self.model.stop_training = True
                search.trial_cut = True

    return Deadline()


class _BudgetSpent(Exception):
    pass


def _tuner_class(name):
    import keras_tuner

    base = {
        "hyperband": keras_tuner.Hyperband,
        "random": keras_tuner.RandomSearch,
        "bayesian": keras_tuner.BayesianOptimization,
    }[name]

    class Tuner(base):
        """`base` that times its trials and stops at a deadline."""

        deadline = None
        trial_cut = False

        def _populate_initial_space(self):
            # Exploring the conditional space builds the model once per
            # condition; no model is needed for that.
            self.hypermodel.exploring = True
            try:
                super()._populate_initial_space()
            finally:
                self.hypermodel.exploring = False

        def pre_create_trial(self):
            if self.deadline is not None and time.time() > self.deadline:
                raise _BudgetSpent()
            super().pre_create_trial()

        def on_trial_begin(self, trial):
            self._trial_start = time.perf_counter()
            self.trial_cut = False
            super().on_trial_begin(trial)

        def on_trial_end(self, trial):
            seconds = time.perf_counter() - self._trial_start
            path = os.path.join(self.get_trial_dir(trial.trial_id), "seconds.json")
            with open(path, "w") as f:
                json.dump({"seconds": round(seconds, 1), "cut_by_time_budget": self.trial_cut}, f)
            super().on_trial_end(trial)

        def search(self, *args, **kwargs):
            try:
                super().search(*args, **kwargs)
            except _BudgetSpent:
                self.on_search_end()

    Tuner.__name__ = base.__name__
    return Tuner


def make_tuner(
    hypermodel,
    tuner="hyperband",
    objective="val_accuracy",
    max_trials=10,
    max_epochs=3,
    directory="tuning",
    project_name="search",
    seed=0,
    overwrite=False,
):
    """The keras-tuner `Tuner` of a search (resumes an existing project).

    Args:
        hypermodel: a `TaskHyperModel`.
        tuner: `"hyperband"`, `"random"` or `"bayesian"`.
        objective: the `val_` metric to maximize.
        max_trials: int, most trials (Hyperband: a cap on top of its
            brackets).
        max_epochs: int, Hyperband's largest per-trial epochs.
        directory, project_name: where the search lives.
        seed: int, the oracle's seed.
        overwrite: bool; `False` resumes a search found there.

    Returns:
        A `keras_tuner.Tuner` (`RandomSearch`, `BayesianOptimization` or
        `Hyperband`), timing its trials.
    """
    import keras_tuner

    if tuner not in TUNERS:
        raise argument_error("tune", "tuner", f"must be one of {list(TUNERS)}", f"tuner={tuner!r}")
    if tuner == "bayesian":
        try:
            import scipy  # noqa: F401
            import sklearn  # noqa: F401
        except ImportError:
            raise ImportError(
                "`tune`: `tuner='bayesian'` needs scipy and scikit-learn "
                "(`pip install keras-tuner[bayesian]`); use `tuner='random'` "
                "or `'hyperband'` without them."
            ) from None
    cls = _tuner_class(tuner)
    common = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective(objective, direction="max"),
        seed=seed,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
        max_consecutive_failed_trials=3,
    )
    if tuner == "hyperband":
        result = cls(max_epochs=max_epochs, factor=3, **common)
        if max_trials:
            result.oracle.max_trials = max_trials
        return result
    return cls(max_trials=max_trials, **common)


def tune(
    task="listops",
    dataset=None,
    tuner="hyperband",
    max_trials=10,
    directory="tuning",
    project_name=None,
    epochs=None,
    steps=None,
    max_seconds=None,
    data_dir=None,
    options=None,
    tunable=True,
    seed=0,
    overwrite=False,
    export=True,
    verbose=1,
    log=print,
    **arguments,
):
    """Searches a task's model and training hyperparameters with keras-tuner.

    The data comes from the task's `tf.data` pipelines (`Task.load`: tfds
    datasets, the embedded ListOps); every trial trains the task's model
    (`Task.build`, `jit_compile=True`) and is ranked by the validation
    value of the task's `monitor` (tasks without a validation split are
    ranked on their test split). Re-running with the same `directory` and
    `project_name` resumes: finished trials are kept, the interrupted one
    runs again.

    Args:
        task: a task name (`"listops"`, `"text"`, `"image"`, `"audio"`) or
            a `keras_attention.tasks.Task`.
        dataset: the tfds dataset; defaults to the task's.
        tuner: `"hyperband"` (default), `"random"` or `"bayesian"`.
        max_trials: int, most trials.
        directory: str, the folder of searches.
        project_name: str, the search's sub-folder; defaults to the task's
            name.
        epochs: int, epochs per trial (Hyperband: the most); defaults to the
            task's `epochs`.
        steps: int or `None`, steps per epoch; defaults to the whole split.
        max_seconds: float or `None`; no trial starts after that many
            seconds, and a running trial stops training then (its score is
            what it reached; its row's message says it was stopped by the
            time budget).
        data_dir: tensorflow-datasets data directory.
        options: dict of fixed task options (data options such as
            `max_length`, `train_size`, `batch_size`).
        tunable: bool; `False` freezes every argument left out at its
            default (one configuration: the task's default).
        seed: int, the random seed (weights, data order, the oracle).
        overwrite: bool; `True` starts over, discarding a previous search.
        export: bool, also export the best model as a SavedModel.
        verbose: Keras' `fit` verbosity.
        log: callable for progress lines (`None`: silent).
        **arguments: the search-space arguments (see `hypermodel`): a value
            fixes one, a list makes it an `hp.Choice`, a `keras_tuner`
            hyperparameter is used as is.

    Returns:
        A `TuningResult`.

    Example:

    ```python
    from keras_attention import tuning

    result = tuning.tune(
        "listops", tuner="random", max_trials=3, epochs=1, steps=20,
        directory="/tmp/search",
        options={"train_size": 640, "max_length": 64},
        attention=["multi_head", "linear"],
    )
    print(result.table)
    ```

    Reference:
        - [Bergstra & Bengio, 2012, "Random Search for Hyper-Parameter
          Optimization"](https://jmlr.org/papers/v13/bergstra12a.html).
        - [Li et al., 2018, "Hyperband: A Novel Bandit-Based Approach to
          Hyperparameter Optimization"](https://arxiv.org/abs/1603.06560).
        - [Snoek et al., 2012, "Practical Bayesian Optimization of Machine
          Learning Algorithms"](https://arxiv.org/abs/1206.2944).
        - [O'Malley et al., 2019, KerasTuner](
          https://github.com/keras-team/keras-tuner).
    """
    import keras

    from keras_attention.tasks import get_task
    from keras_attention.tuning.hypermodel import hypermodel as make_hypermodel

    log = log or (lambda *a, **k: None)
    if isinstance(task, str):
        task = get_task(task)
    if tuner not in TUNERS:
        raise argument_error("tune", "tuner", f"must be one of {list(TUNERS)}", f"tuner={tuner!r}")
    for name, value in (("max_trials", max_trials), ("epochs", epochs), ("steps", steps)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise argument_error("tune", name, "must be a positive int or None", f"{name}={value!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise argument_error("tune", "max_seconds", "must be positive or None", f"max_seconds={max_seconds!r}")
    start = time.time()
    options = dict(options or {})
    if epochs is not None:
        options["epochs"] = epochs
    if steps is not None:
        options["steps"] = steps
    options = task.options(options)
    dataset = dataset or task.default_dataset
    project_name = project_name or task.name
    project_dir = os.path.join(str(directory), project_name)

    keras.utils.set_random_seed(seed)
    log(f"[keras-attention] tune {task.name!r} on {dataset!r}: loading data")
    data = task.load(dataset, data_dir, options)
    hm = make_hypermodel(task, data, tunable=tunable, options=options, **arguments)
    validation = data.validation if data.validation is not None else data.test
    objective = f"val_{task.monitor}"
    search = make_tuner(
        hm,
        tuner=tuner,
        objective=objective,
        max_trials=max_trials,
        max_epochs=options["epochs"],
        directory=directory,
        project_name=project_name,
        seed=seed,
        overwrite=overwrite,
    )
    callbacks = task.callbacks(data, validation)
    if max_seconds is not None:
        search.deadline = start + max_seconds
        callbacks.append(_deadline_callback(search))
    done = sum(1 for t in search.oracle.trials.values() if t.status == "COMPLETED")
    log(
        f"[keras-attention] {tuner} search in {project_dir}"
        + (f" (resuming: {done} trial(s) done)" if done else "")
        + f"; ranking by {objective}"
    )
    with warnings.catch_warnings():
        # tf.data pipelines are shuffled already; Keras warns about its own
        # `shuffle=True` default on every fit.
        warnings.filterwarnings("ignore", message=r".*`shuffle=True` was passed.*")
        search.search(
            data.train.repeat() if options["steps"] else data.train,
            validation_data=validation,
            epochs=options["epochs"],
            steps_per_epoch=options["steps"],
            callbacks=callbacks,
            verbose=verbose,
        )

    rows = results_rows(search, hm)
    if not any(row["status"] == "COMPLETED" for row in rows):
        raise RuntimeError(
            f"`tune`: no trial completed in {project_dir}; see the trial "
            "messages in results.md"
        )
    table = markdown_table(rows, objective)
    write_results(rows, table, project_dir, objective)

    best_trial = search.oracle.get_best_trials(1)[0]
    best_hp = best_trial.hyperparameters
    config = hm.configuration(best_hp.copy())
    with warnings.catch_warnings():
        # The trial checkpoints hold the model's weights, not the optimizer's.
        warnings.filterwarnings("ignore", message=".*Skipping variable loading for optimizer.*")
        model = search.load_model(best_trial)
    test = task.evaluate(model, data.test, data)
    model_path, export_path = save_best(
        model, task, data, config, os.path.join(project_dir, "best"), export=export,
        dataset=dataset, data_dir=data_dir, test=test, score=best_trial.score,
    )
    log(
        f"[keras-attention] best trial {best_trial.trial_id}: {objective} "
        f"{best_trial.score:.4f}, test {task.monitor} "
        f"{test.get(task.monitor, float('nan')):.4f}; {config.summary()}"
    )
    return TuningResult(
        best_configuration=config,
        best_hyperparameters=dict(best_hp.values),
        best_score=float(best_trial.score),
        test={k: float(v) for k, v in test.items()},
        rows=rows,
        table=table,
        project_dir=project_dir,
        model_path=model_path,
        export_path=export_path,
        tuner=search,
    )


def save_best(model, task, data, config, folder, export=True, dataset=None,
              data_dir=None, test=None, score=None):
    """Saves a trained model as `fit` does: `model.keras`, `export/`,
    `metrics.json` (and `vocabulary.txt`); returns `(model_path,
    export_path)`.

    The files are written aside and checked, then put in place of the
    previous best together (`RunFolder`): `folder` holds the old best model
    or the new one, never a mixture, whenever the search is killed.
    """
    from keras_attention.tasks import run_output
    from keras_attention.tasks.run_folder import RunFolder

    best = RunFolder(folder, "tune")
    best.check_links()
    best.recover()
    staging = best.stage()
    if model.optimizer is not None and not model.optimizer.built:
        # The weights come from a checkpoint, not from training here: give
        # the optimizer its (fresh) slots so the file loads without warnings.
        model.optimizer.build(model.trainable_variables)
    model_path, export_path = run_output.save_model_files(model, task, data, staging, export=export)
    run_output.verify(model_path)
    model_path = os.path.join(folder, os.path.basename(model_path))
    export_path = export_path and os.path.join(folder, os.path.basename(export_path))
    run_output.write_metrics(
        os.path.join(staging, "metrics.json"),
        task=task,
        data=data,
        dataset=dataset,
        data_dir=data_dir,
        attention=config.attention,
        attention_kwargs=config.attention_kwargs,
        options=config.options,
        test=test,
        model=model,
        model_path=model_path,
        export_path=export_path,
        score=None if score is None else float(score),
    )
    best.commit(remove_backup=False)
    return model_path, export_path


def results_rows(tuner, hypermodel=None):
    """One dict per trial, best first: `trial`, `status`, `hyperparameters`
    (the resolved configuration when `hypermodel` is given, else the `hp`
    values), `epochs`, `score`, `seconds`, `message`."""
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        values = dict(trial.hyperparameters.values)
        epochs = values.get("tuner/epochs")
        if epochs is None and hypermodel is not None:
            epochs = hypermodel.options.get("epochs")
        if hypermodel is not None and values:
            try:
                described = hypermodel.configuration(trial.hyperparameters.copy()).summary()
            except Exception:  # an invalid trial: show its raw values
                described = _describe(values)
        else:
            described = _describe(values)
        seconds, cut = None, False
        path = os.path.join(tuner.project_dir, f"trial_{trial_id}", "seconds.json")
        if os.path.exists(path):
            with open(path) as f:
                timing = json.load(f)
            seconds, cut = timing.get("seconds"), timing.get("cut_by_time_budget", False)
        message = (trial.message or "").strip().splitlines()[-1:] or ([CUT_MESSAGE] if cut else None)
        rows.append(
            {
                "trial": trial_id,
                "status": trial.status,
                "hyperparameters": described,
                "epochs": epochs,
                "score": None if trial.score is None else float(trial.score),
                "seconds": seconds,
                "message": message,
            }
        )
    rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0.0), r["trial"]))
    for row in rows:
        row["message"] = row["message"][0] if row["message"] else None
    return rows


def _describe(values):
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted(values.items())
        if not k.startswith("tuner/")
    )


def markdown_table(rows, objective="score"):
    """The trial rows as a markdown table."""
    lines = [
        f"| trial | status | hyperparameters | epochs | {objective} | seconds |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in rows:
        score = "" if row["score"] is None else f"{row['score']:.4f}"
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.0f}"
        epochs = "" if row["epochs"] is None else str(row["epochs"])
        status = row["status"].lower()
        if row["message"]:
            status += f" ({row['message'][:60]})"
        lines.append(
            f"| {row['trial']} | {status} | {row['hyperparameters']} | {epochs} | {score} | {seconds} |"
        )
    return "\n".join(lines)


def write_results(rows, table, folder, objective="score"):
    """Writes `results.md`, `results.csv` and `results.json` into `folder`."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.md"), "w") as f:
        f.write(table + "\n")
    fields = ["trial", "status", "hyperparameters", "epochs", "score", "seconds", "message"]
    with open(os.path.join(folder, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"objective": objective, "rows": rows}, f, indent=2)
