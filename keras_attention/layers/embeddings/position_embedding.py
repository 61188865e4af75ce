"""Learned absolute position embeddings."""

import keras
from keras import ops

from keras_attention.arguments import check_int
from keras_attention.arguments import is_int


@keras.saving.register_keras_serializable(package="keras_attention")
class PositionEmbedding(keras.layers.Layer):
    """A learned table of position embeddings (as in BERT and GPT-2).

    The layer owns a `(sequence_length, features)` weight, where `features` is
    the last axis of the input seen at build time. Called on an input of shape
    `(batch, seq, features)` (more generally `(..., seq, features)`), it
    returns rows `start_index ... start_index + seq - 1` of the table,
    broadcast to the input's shape. Like KerasHub's `PositionEmbedding`, it
    does *not* add them to its input; add them yourself (`x + layer(x)`).

    Inputs longer than `sequence_length` have no embedding: when the length
    (and `start_index`) are static this raises a `ValueError` at build or call
    time; with dynamic shapes the slice fails at run time.

    Args:
        sequence_length: positive int, the largest number of positions.
        initializer: initializer of the table, a name or a
            `keras.initializers.Initializer`. Defaults to `"glorot_uniform"`.
        **kwargs: other keyword arguments of `keras.layers.Layer`, such as
            `name` and `dtype`.

    Call arguments:
        inputs: tensor of shape `(..., seq, features)`. Only its shape is
            used.
        start_index: int or scalar int tensor, the position of the first
            element of the sequence axis, for decoding with a cache.
            Defaults to `0`.

    Returns:
        A tensor with the shape of `inputs` and the layer's compute dtype.

    Example:

    >>> tokens = keras.Input(shape=(128,), dtype="int32")
    >>> x = keras.layers.Embedding(1000, 64)(tokens)
    >>> x = x + PositionEmbedding(sequence_length=128)(x)
    >>> x.shape
    (None, 128, 64)

    Reference:
        - [Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional
          Transformers for Language Understanding"](
          https://arxiv.org/abs/1810.04805)
    """

    def __init__(self, sequence_length, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        check_int(self, "sequence_length", sequence_length, 1)
        self.sequence_length = int(sequence_length)
        self.initializer = keras.initializers.get(initializer)
        # The embeddings do not depend on which positions are padding, so any
        # incoming Keras mask is passed through unchanged.
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                "`PositionEmbedding` expects inputs of shape "
                "(batch, seq, features) with a static `features` axis. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self._check_length(input_shape[-2], 0)
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.sequence_length, input_shape[-1]),
            initializer=self.initializer,
            trainable=True,
        )
        self.built = True

    def _check_length(self, length, start_index):
        if not (is_int(length) and is_int(start_index)):
            return
        if start_index < 0 or start_index + length > self.sequence_length:
            raise ValueError(
                "`PositionEmbedding` has embeddings for positions "
                f"0 ... {self.sequence_length - 1} "
                f"(sequence_length={self.sequence_length}), but the input "
                f"needs positions {start_index} ... "
                f"{start_index + length - 1}. Received: sequence length "
                f"{length}, start_index={start_index}"
            )

    def call(self, inputs, start_index=0):
        shape = ops.shape(inputs)
        length = shape[-2]
        self._check_length(length, start_index)
        features = self.embeddings.shape[-1]
        table = ops.slice(self.embeddings, (start_index, 0), (length, features))
        return ops.broadcast_to(ops.cast(table, self.compute_dtype), shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
