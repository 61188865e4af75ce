"""`text_classifier`: token ids -> class logits with any attention variant."""

import keras

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.arguments import check_choice
from keras_attention.arguments import check_heads
from keras_attention.models import common
from keras_attention.models.raw_input_model import RawInputModel

POOLINGS = ("attention", "mean", "first")
BUILDER = "text_classifier"


def text_classifier(
    vocabulary_size,
    num_classes,
    sequence_length,
    hidden_dim=128,
    num_layers=2,
    num_heads=4,
    intermediate_dim=None,
    dropout=0.1,
    embedding_dropout=None,
    attention="multi_head",
    attention_kwargs=None,
    pooling="attention",
    position="learned",
    norm_first=True,
    name=BUILDER,
):
    """A transformer text classifier: token ids in, class logits out.

    Token + position embedding (id 0 is padding and is masked everywhere),
    `num_layers` transformer encoder blocks with the chosen attention
    variant, mask-aware pooling (padding never contributes) and a linear
    classification head.

    Args:
        vocabulary_size: int, number of token ids (id 0 = padding).
        num_classes: int >= 2, number of classes (the model returns logits).
        sequence_length: int, the fixed input length (XLA wants static
            shapes; pad or crop to it, e.g. with `TextVectorization`'s
            `output_sequence_length`).
        hidden_dim: int, model width.
        num_layers: int, number of encoder blocks.
        num_heads: int, attention heads (must divide `hidden_dim`).
        intermediate_dim: int, feed-forward width. Defaults to
            `4 * hidden_dim`.
        dropout: float in `[0, 1)`, in the blocks and before the head.
        embedding_dropout: float in `[0, 1)` or `None`, dropout on the
            summed token + position embeddings. Defaults to `dropout`.
        attention: a registered attention variant name (see
            `keras_attention.layers.available()`), class, config or layer.
        attention_kwargs: dict, extra constructor arguments of the variant;
            length-dependent ones (`max_length` for `"low_rank"`,
            `window_size` for `"regional"`) default from `sequence_length`.
        pooling: `"attention"` (learned-query attention pooling),
            `"mean"` (masked average) or `"first"` (the first token, for
            inputs that start with a class token).
        position: `"learned"` or `"sinusoidal"` position embedding.
        norm_first: bool, pre-norm blocks.
        name: model name.

    Returns:
        An uncompiled functional `keras.Model` mapping int `(batch,
        sequence_length)` token ids to `(batch, num_classes)` logits.

    Example:

    >>> model = text_classifier(
    ...     vocabulary_size=1000, num_classes=2, sequence_length=32,
    ...     hidden_dim=32, num_layers=1, num_heads=2, attention="linear",
    ... )
    >>> model = compile_classifier(model)
    >>> tuple(model(np.ones((4, 32), "int32")).shape)
    (4, 2)
    """
    check_positive_int(BUILDER, "vocabulary_size", vocabulary_size)
    check_positive_int(BUILDER, "sequence_length", sequence_length)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise argument_error(
            BUILDER, "num_classes", "must be an int >= 2", f"num_classes={num_classes!r}"
        )
    check_heads(BUILDER, hidden_dim, num_heads)
    check_choice(BUILDER, "pooling", pooling, POOLINGS)
    if embedding_dropout is None:
        embedding_dropout = dropout
    check_rate(BUILDER, "embedding_dropout", embedding_dropout)
    intermediate_dim = intermediate_dim or 4 * hidden_dim

    tokens = keras.Input((sequence_length,), dtype="int32", name="tokens")
    x = common.embed_tokens(
        tokens,
        vocabulary_size=vocabulary_size,
        sequence_length=sequence_length,
        hidden_dim=hidden_dim,
        dropout=embedding_dropout,
        position=position,
    )
    x = common.encoder_stack(
        x,
        builder=BUILDER,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        attention=attention,
        attention_kwargs=attention_kwargs,
        dropout=dropout,
        sequence_length=sequence_length,
        norm_first=norm_first,
    )
    logits = common.classification_head(
        x, pooling=pooling, num_heads=num_heads, dropout=dropout, num_classes=num_classes
    )
    return keras.Model(tokens, logits, name=name)


def compile_classifier(model, learning_rate=1e-3, **kwargs):
    """Compiles a logits classifier: sparse cross-entropy, accuracy, XLA.

    Args:
        model: a model returning class logits.
        learning_rate: peak learning rate.
        **kwargs: passed to `keras_attention.models.compile_model`.

    Returns:
        The compiled model.
    """
    return common.compile_model(
        model,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        learning_rate=learning_rate,
        **kwargs,
    )


def with_preprocessing(model, preprocessor, input_shape=(), input_dtype="string", name=None):
    """Prepends a preprocessing layer (e.g. an adapted `TextVectorization`).

    The result takes raw inputs (strings by default), saves as one `.keras`
    file and exports as a SavedModel that serves raw strings.

    String inputs can be given as a Python list or tuple of `str`/`bytes`,
    a numpy unicode (`np.array(["a good film"])`), bytes or object array,
    or a `tf.string` tensor or `tf.data` dataset, to `model(...)`,
    `predict`, `evaluate`, `fit` and `*_on_batch`, with the same results
    (see `RawInputModel`); the reloaded `.keras` model too.

    Args:
        model: the trained model on preprocessed inputs.
        preprocessor: a layer mapping raw inputs to the model's inputs.
        input_shape: shape of one raw input (default scalar: one string
            per example).
        input_dtype: dtype of the raw input.
        name: the new model's name. Defaults to `model.name + "_raw"`.

    Returns:
        A `RawInputModel` (a functional `keras.Model`) mapping a batch of
        raw inputs to `model`'s outputs.

    Example:

    >>> vectorizer = keras.layers.TextVectorization(
    ...     max_tokens=1000, output_sequence_length=32
    ... )
    >>> vectorizer.adapt(["a good film", "a bad film", "not good at all"])
    >>> model = text_classifier(
    ...     vectorizer.vocabulary_size(), num_classes=2, sequence_length=32,
    ...     hidden_dim=32, num_layers=1, num_heads=2,
    ... )
    >>> raw = with_preprocessing(model, vectorizer)
    >>> tuple(raw(["a good film", "bad"]).shape)
    (2, 2)
    >>> # raw.save("classifier.keras")  # reload: import keras_attention first
    >>> # raw.export("served")  # tf.saved_model.load("served").serve(tf.constant([...]))
    """
    raw = keras.Input(input_shape, dtype=input_dtype, name="raw")
    outputs = model(preprocessor(raw))
    return RawInputModel(raw, outputs, name=name or f"{model.name}_raw")
