"""What a task is: data + a builder + how to read its inputs and outputs.

The command line (`keras-attention fit --task NAME`) and the tuner look
tasks up by name here, so a task is written once and used by both.
"""

import dataclasses

_TASKS = {}


@dataclasses.dataclass
class TaskData:
    """A task's prepared data.

    Attributes:
        train: `tf.data.Dataset` of `(inputs, targets)` batches, static
            shapes, repeated as `fit` needs it (not repeated by default).
        validation: like `train`, or `None`.
        test: like `train`; the split the final metrics come from.
        info: dict of facts the builder and reports need (e.g.
            `num_classes`, `vocabulary_size`, `sequence_length`,
            `majority_accuracy`).
        vocabulary: optional list of token strings (id -> string), used to
            label attention maps and to parse `predict` inputs.
        preprocessor: optional layer mapping raw inputs (e.g. strings) to
            the model's inputs; `fit` then saves and exports the model with
            it in front, so the saved model takes raw inputs.
        raw_test: with a `preprocessor`, the test split as raw inputs (what
            the saved model is evaluated on).
        train_split, validation_split, test_split: the tfds split names
            behind `train`, `validation` and `test` (printed beside every
            metric, so a validation split used as the test set says so).
    """

    train: object
    validation: object
    test: object
    info: dict
    vocabulary: list = None
    preprocessor: object = None
    raw_test: object = None
    train_split: str = "train"
    validation_split: str = None
    test_split: str = "test"


class Task:
    """Base class of tasks. Subclasses set the class attributes and
    override the methods.

    Attributes:
        name: str, the task's name (`--task NAME`).
        description: one line, shown by `keras-attention list`.
        default_dataset: the dataset used when none is given.
        monitor: the `evaluate` metric that `compare`/`tune` rank by.
        defaults: dict of option defaults (model sizes, `epochs`,
            `batch_size`, `learning_rate`, data options); the caller's
            options override them (`options()`).
    """

    name = None
    description = ""
    default_dataset = None
    monitor = "accuracy"
    defaults = {}

    def options(self, given):
        """The task's defaults updated with the `given` options."""
        return {**self.defaults, **(given or {})}

    def check_options(self, given):
        """Checks options a user gives (names and values) before any work.

        Raises `ValueError` naming the task, the option, what was expected
        and what was received: an unknown name (with the closest known
        one), a size, count or rate out of range, or a value whose type
        does not match the default's.
        """
        import difflib

        for name, value in (given or {}).items():
            if name not in self.defaults:
                close = difflib.get_close_matches(name, self.defaults, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"task {self.name!r}: unknown option {name!r}.{hint} "
                    f"Options: {', '.join(sorted(self.defaults))}"
                )
            problem = _option_problem(name, value, self.defaults[name])
            if problem:
                raise ValueError(
                    f"task {self.name!r}: option {name!r} {problem}. "
                    f"Received: {name}={value!r}"
                )

    def load(self, dataset, data_dir, options):
        """Returns a `TaskData`; `options` as returned by `options()`."""
        raise NotImplementedError

    def build(self, data, attention, attention_kwargs, options):
        """Returns the compiled (`jit_compile=True`) model."""
        raise NotImplementedError

    def probe_info(self, options):
        """`TaskData.info` as the data would give it, from `options` alone
        (placeholders where only the data knows), for `check_build`; `None`
        when the task cannot say."""
        return None

    def check_build(self, attention, attention_kwargs, options):
        """Builds the model once on `probe_info`, before any data is read,
        so that a bad size, attention or attention argument fails at once.

        Raises what the builder raises (`ValueError`, `TypeError`).
        """
        info = self.probe_info(options)
        if info is None:
            return
        import keras

        self.build(TaskData(None, None, None, info), attention, attention_kwargs, options)
        keras.backend.clear_session()

    def loss(self):
        """The training loss (for models compiled outside `build`)."""
        import keras

        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def metrics(self):
        """The metrics (for models compiled outside `build`)."""
        import keras

        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def baselines(self, data):
        """Trivial baselines as a dict (e.g. majority-class accuracy)."""
        return {}

    def callbacks(self, data, validation):
        """Callbacks `fit` and `tune` add to training (before their own),
        e.g. one that writes a metric Keras cannot compile into the logs;
        `validation` is the split they validate on, or `None`."""
        return []

    def evaluate(self, model, dataset, data):
        """The test metrics of `model` on `dataset`, a dict (by default
        `model.evaluate`'s; tasks add metrics computed outside the graph)."""
        return dict(model.evaluate(dataset, return_dict=True, verbose=0))

    def encode(self, texts, options, vocabulary):
        """Model inputs for `predict` from command-line strings.

        `vocabulary` is the run's `TaskData.vocabulary` (or `None`); raise
        `ValueError` with a clear message for inputs that cannot be read.
        """
        raise NotImplementedError(
            f"Task {self.name!r} does not take inputs on the command line."
        )

    def decode(self, outputs, options, vocabulary):
        """Readable predictions (list of str) from model outputs."""
        raise NotImplementedError

    def token_labels(self, inputs, data):
        """Labels of an example's positions for attention maps, or `None`."""
        return None


# Options every task shares, with the values they take.
_POSITIVE = ("epochs", "batch_size", "hidden_dim", "num_layers", "num_heads", "intermediate_dim")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _option_problem(name, value, default):
    """What is wrong with an option value (a phrase), or `None`."""
    if name in _POSITIVE:
        return None if _is_int(value) and value > 0 else "must be a positive integer"
    if name == "steps":
        ok = value is None or (_is_int(value) and value > 0)
        return None if ok else "must be a positive integer or null (the whole split)"
    if name == "warmup_steps":
        return None if _is_int(value) and value >= 0 else "must be an integer >= 0"
    if name in ("dropout", "embedding_dropout"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1
        return None if ok else "must be a number in [0, 1)"
    if name == "learning_rate":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        return None if ok else "must be a positive number"
    if value is None or default is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if _is_int(default):
        return None if _is_int(value) else "must be an integer"
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "must be a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "must be a string"
    return None


class ScheduledTask(Task):
    """A task trained with the shared compile step: the task's `loss()` and
    `metrics()`, AdamW with warm-up and cosine decay over the whole run, XLA.

    `TaskData.info` must hold `train_batches`; the options `epochs`,
    `steps`, `learning_rate`, `warmup_steps` and the encoder sizes
    (`hidden_dim`, `num_layers`, `num_heads`, `intermediate_dim`,
    `dropout`).
    """

    def encoder_options(self, options):
        """The encoder-size keyword arguments every builder takes."""
        keys = ("hidden_dim", "num_layers", "num_heads", "intermediate_dim", "dropout")
        return {key: options[key] for key in keys}

    def compile(self, model, data, options):
        """Compiles `model` with the task's `loss()` and `metrics()` for the
        run's schedule (AdamW, warm-up then cosine decay, XLA); returns it."""
        from keras_attention.models import compile_model

        return compile_model(
            model,
            loss=self.loss(),
            metrics=self.metrics(),
            learning_rate=options["learning_rate"],
            warmup_steps=options["warmup_steps"],
            decay_steps=self.decay_steps(data, options),
        )

    def decay_steps(self, data, options):
        """Steps of the cosine decay after the warm-up: the whole run."""
        steps = options["steps"] or data.info["train_batches"]
        if steps < 1:
            raise ValueError(
                f"task {self.name!r}: the training split's number of batches is "
                "unknown, so the learning-rate schedule cannot be set; give "
                "`steps` (steps per epoch)"
            )
        return max(1, steps * options["epochs"] - options["warmup_steps"])


class ClassificationTask(ScheduledTask):
    """A `ScheduledTask` whose model returns class logits: the
    majority-class baseline (`TaskData.info["majority_accuracy"]`) and
    argmax decoding."""

    def baselines(self, data):
        return {"majority_class_accuracy": data.info["majority_accuracy"]}

    def decode(self, outputs, options, vocabulary):
        import numpy as np

        return [str(int(i)) for i in np.argmax(outputs, axis=-1)]


def register_task(cls):
    """Class decorator: makes a `Task` subclass reachable by its name."""
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a task needs a `name`.")
    _TASKS[cls.name] = cls
    return cls


def get_task(name):
    """The task registered under `name` (an instance)."""
    if name not in _TASKS:
        raise ValueError(
            f"Unknown task {name!r}. Expected one of {available_tasks()}."
        )
    return _TASKS[name]()


def available_tasks():
    """Sorted names of the registered tasks."""
    return sorted(_TASKS)
