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
    """

    train: object
    validation: object
    test: object
    info: dict
    vocabulary: list = None
    preprocessor: object = None
    raw_test: object = None


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

    def load(self, dataset, data_dir, options):
        """Returns a `TaskData`; `options` as returned by `options()`."""
        raise NotImplementedError

    def build(self, data, attention, attention_kwargs, options):
        """Returns the compiled (`jit_compile=True`) model."""
        raise NotImplementedError

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


class ClassificationTask(Task):
    """A task whose model returns class logits: the shared compile step
    (AdamW with warm-up and cosine decay over the whole run, XLA), the
    majority-class baseline and argmax decoding.

    `TaskData.info` must hold `majority_accuracy` and `train_batches`; the
    options `epochs`, `steps`, `learning_rate`, `warmup_steps` and the
    encoder sizes (`hidden_dim`, `num_layers`, `num_heads`,
    `intermediate_dim`, `dropout`).
    """

    def encoder_options(self, options):
        """The encoder-size keyword arguments every builder takes."""
        keys = ("hidden_dim", "num_layers", "num_heads", "intermediate_dim", "dropout")
        return {key: options[key] for key in keys}

    def compile(self, model, data, options):
        """Compiles `model` for the run's schedule; returns it."""
        from keras_attention.models import compile_classifier

        steps = options["steps"] or data.info["train_batches"]
        if steps < 1:  # unknown cardinality
            steps = 1000
        return compile_classifier(
            model,
            learning_rate=options["learning_rate"],
            warmup_steps=options["warmup_steps"],
            decay_steps=max(1, steps * options["epochs"] - options["warmup_steps"]),
        )

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
