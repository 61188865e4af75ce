"""`TaskHyperModel`: a `keras_tuner.HyperModel` over a task's builder."""

import keras
import keras_tuner

from keras_attention.tuning.search_space import SearchSpace


class TaskHyperModel(keras_tuner.HyperModel):
    """A task's model with its architecture and training as hyperparameters.

    `build(hp)` draws a configuration from the `SearchSpace` (the attention
    variant and its own arguments, depth, width, heads, key/value heads,
    dropout, learning rate and schedule) and builds it with the task's
    builder (`Task.build`: the same model `keras-attention fit` trains),
    compiled with `jit_compile=True`. `fit` trains it on the task's
    `tf.data` pipelines.

    Use `hypermodel(task, data, **arguments)` to make one.

    Args:
        task: a `keras_attention.tasks.Task`.
        data: the task's `TaskData` (`task.load(...)`); its `info` sizes the
            model and bounds the length-dependent arguments.
        arguments: dict, the caller's arguments (see `SearchSpace`).
        tunable: bool; `False` freezes every argument left out at the task's
            default (a search then has one configuration).
        options: dict, the task options the data was loaded with (e.g.
            `epochs`, `steps`, `max_length`); defaults to the task's.
        name: the hypermodel's name.

    Example:

    >>> import keras_tuner
    >>> from keras_attention import tasks
    >>> data = tasks.TaskData(   # what `task.load(...)` returns, sizes only
    ...     train=None, validation=None, test=None,
    ...     info={"num_classes": 10, "vocabulary_size": 20,
    ...           "sequence_length": 32, "train_batches": 10})
    >>> hm = TaskHyperModel(tasks.get_task("listops"), data,
    ...                     {"attention": ["multi_head", "linear"],
    ...                      "hidden_dim": 32, "num_layers": 1})
    >>> hm.build(keras_tuner.HyperParameters()).output_shape
    (None, 10)

    With the task's data (generated on the spot for ListOps):

    ```python
    import keras_tuner
    from keras_attention import tasks, tuning

    task = tasks.get_task("listops")
    options = task.options({"train_size": 64, "max_length": 32})
    data = task.load("listops", None, options)
    hypermodel = tuning.hypermodel(
        task, data, options=options, attention=["multi_head", "linear"],
        hidden_dim=32,
    )
    model = hypermodel.build(keras_tuner.HyperParameters())
    ```

    Reference:
        - [O'Malley et al., 2019, KerasTuner](
          https://github.com/keras-team/keras-tuner) (`HyperModel`,
          conditional hyperparameters).
    """

    def __init__(self, task, data, arguments=None, tunable=True, options=None, name=None):
        # `tunable` is handled by the space (given choices stay tuned).
        super().__init__(name=name or f"{task.name}_hypermodel")
        self.task = task
        self.data = data
        self.options = task.options(options)
        self.space = SearchSpace(
            self.options,
            sequence_length=attention_length(task, data, self.options),
            arguments=arguments,
            tunable=tunable,
        )
        # Set by the tuner while it only explores the space (no model
        # needed then).
        self.exploring = False

    def configuration(self, hp):
        """The `Configuration` that `hp`'s values stand for."""
        return self.space.sample(hp)

    def build(self, hp):
        config = self.configuration(hp)
        if self.exploring:
            return None
        return build_configuration(self.task, self.data, config)

    def fit(self, hp, model, *args, **kwargs):
        """Trains `model` (`Model.fit`); XLA as compiled by `build`."""
        return model.fit(*args, **kwargs)


def build_configuration(task, data, config):
    """Builds and compiles the model of one `Configuration`.

    `schedule="cosine"` keeps the task's own compile step (warm-up, cosine
    decay over the run); `"constant"` recompiles with a constant learning
    rate. Both use `jit_compile=True`.

    Returns:
        The compiled `keras.Model`.
    """
    from keras_attention.models import compile_model

    options = config.options
    model = task.build(data, config.attention, dict(config.attention_kwargs), options)
    if options.get("schedule", "cosine") == "constant":
        compile_model(
            model,
            loss=task.loss(),
            metrics=task.metrics(),
            learning_rate=options["learning_rate"],
            jit_compile=True,
        )
    return model


def attention_length(task, data, options):
    """The sequence length the task's attention layers see, or `None`.

    `data.info["sequence_length"]` when the task records it; else the
    length of the first transformer block's input in the task's default
    model.
    """
    length = data.info.get("sequence_length")
    if length:
        return int(length)
    from keras_attention.layers.transformer.transformer_encoder import TransformerEncoder

    model = task.build(data, "multi_head", None, options)
    found = None
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, TransformerEncoder):
            try:
                found = layer.input.shape[1]
            except (AttributeError, ValueError):
                continue
            break
    keras.backend.clear_session()
    return int(found) if found else None


def hypermodel(task, data, tunable=True, options=None, **arguments):
    """A `keras_tuner.HyperModel` for a task's builder.

    Args:
        task: a task name (`"listops"`, `"text"`, `"image"`, `"audio"`) or
            a `keras_attention.tasks.Task`.
        data: the task's `TaskData` (`task.load(dataset, data_dir,
            options)`).
        tunable: bool; `False` freezes every argument left out at its
            default.
        options: dict of task options the data was loaded with.
        **arguments: each search-space argument (`attention`, `num_layers`,
            `hidden_dim`, `num_heads`, `num_key_value_heads`,
            `intermediate_dim`, `dropout`, `learning_rate`, `schedule`), a
            variant argument (`window_size`, `rank`, `share_kv_projection`,
            `feature_map`, `pattern`, `block_size`, `num_window_blocks`,
            `top_k`, `position_encoding`, `talking_heads`) or a task option,
            as a value (fixed), a list (`hp.Choice`) or a `keras_tuner`
            hyperparameter.

    Returns:
        A `TaskHyperModel`.

    Example:

    >>> import keras_tuner
    >>> from keras_attention.tasks import TaskData
    >>> data = TaskData(train=None, validation=None, test=None,
    ...                 info={"num_classes": 10, "vocabulary_size": 20,
    ...                       "sequence_length": 32, "train_batches": 10})
    >>> hm = hypermodel("listops", data, attention="regional",
    ...                 window_size=[16, 32], hidden_dim=32, num_layers=1)
    >>> model = hm.build(keras_tuner.HyperParameters())
    >>> model.output_shape
    (None, 10)
    """
    if isinstance(task, str):
        from keras_attention.tasks import get_task

        task = get_task(task)
    return TaskHyperModel(task, data, arguments, tunable=tunable, options=options)
