"""`LearnedQueries`: a fixed set of learned query vectors, one set per example."""

import keras
from keras import ops

from keras_attention.arguments import check_int


@keras.saving.register_keras_serializable(package="keras_attention")
class LearnedQueries(keras.layers.Layer):
    """A learned `(num_queries, dim)` table, repeated for every example.

    The object queries of DETR: the decoder starts from these vectors and
    each one learns to ask for a different object (region, size, class) of
    the encoded image. Called on any `(batch, ..., dim)` tensor (only its
    batch size and last axis are read), it returns `(batch, num_queries,
    dim)`.

    Args:
        num_queries: positive int, the number of queries.
        initializer: initializer of the table. Defaults to
            `RandomNormal(stddev=1.0)` (distinct unit-scale vectors, as an
            embedding table starts).
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, ..., dim)`, e.g. the encoder's output.

    Returns:
        `(batch, num_queries, dim)` in the layer's compute dtype.

    Example:

    >>> tuple(LearnedQueries(10)(keras.ops.ones((2, 64, 32))).shape)
    (2, 10, 32)

    Reference:
        - [Carion et al., 2020, "End-to-End Object Detection with
          Transformers"](https://arxiv.org/abs/2005.12872), section 3.2.
    """

    def __init__(self, num_queries, initializer=None, **kwargs):
        super().__init__(**kwargs)
        check_int(self, "num_queries", num_queries, 1)
        self.num_queries = int(num_queries)
        self.initializer = keras.initializers.get(
            initializer or keras.initializers.RandomNormal(stddev=1.0)
        )

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__}: `inputs` must be (batch, ..., dim) with a "
                f"known dim. Received: inputs.shape={tuple(input_shape)}"
            )
        self.queries = self.add_weight(
            name="queries", shape=(self.num_queries, input_shape[-1]), initializer=self.initializer
        )

    def call(self, inputs):
        queries = ops.cast(self.queries, self.compute_dtype)
        return ops.broadcast_to(queries[None], (ops.shape(inputs)[0],) + tuple(queries.shape))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_queries, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            num_queries=self.num_queries,
            initializer=keras.initializers.serialize(self.initializer),
        )
        return config
