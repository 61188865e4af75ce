"""`AxialTransformerEncoder`: a transformer encoder block along one axis of a grid."""

import keras
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.layers.transformer.transformer_encoder import TransformerEncoder


@keras.saving.register_keras_serializable(package="keras_attention")
class AxialTransformerEncoder(keras.layers.Layer):
    """A `TransformerEncoder` block applied along one axis of a
    `(batch, rows, columns, dim)` grid.

    With `axis=2` every row is a sequence over the columns (for a
    spectrogram of frames x frequency bins: attention across the
    frequencies of each frame); with `axis=1` every column is a sequence
    over the rows. The other axis is folded into the batch, so all rows
    (or columns) go through the same block at once, with the same weights.

    Args:
        axis: `1` or `2`, the grid axis attention runs along.
        intermediate_dim: int, the width of the feed-forward network
            (as in `TransformerEncoder`).
        num_heads: int, the number of attention heads.
        **kwargs: the other arguments of `TransformerEncoder`
            (`attention` as a registered name or config dict,
            `attention_kwargs`, `dropout`, `activation`, `norm_first`,
            ...) and the base `keras.layers.Layer` arguments (`name`,
            `dtype`).

    Call arguments:
        inputs: `(batch, rows, columns, dim)` with static `rows`, `columns`
            and `dim`.
        training: bool, dropout.

    Returns:
        A tensor of the shape of `inputs`.

    Example:

    >>> layer = AxialTransformerEncoder(2, intermediate_dim=16, num_heads=2)
    >>> tuple(layer(keras.ops.ones((2, 5, 7, 8))).shape)
    (2, 5, 7, 8)

    Reference:
        - [Ho et al., 2019, "Axial Attention in Multidimensional
          Transformers"](https://arxiv.org/abs/1912.12180).
    """

    _BASE = ("name", "trainable", "dtype", "autocast", "input_dim_order")

    def __init__(self, axis, intermediate_dim, num_heads, **kwargs):
        base = {k: kwargs.pop(k) for k in list(kwargs) if k in self._BASE}
        super().__init__(**base)
        if axis not in (1, 2) or isinstance(axis, bool):
            raise argument_error(self, "axis", "must be 1 or 2 (the grid axis attention runs along)", f"axis={axis!r}")
        self.axis = int(axis)
        self.encoder_kwargs = dict(intermediate_dim=intermediate_dim, num_heads=num_heads, **kwargs)
        self.encoder = TransformerEncoder(**self.encoder_kwargs, dtype=self.dtype_policy, name="encoder")

    def _check(self, shape):
        if len(shape) != 4 or any(d is None for d in shape[1:]):
            raise ValueError(
                f"{type(self).__name__} '{self.name}': `inputs` must be (batch, rows, columns, dim) "
                f"with static rows, columns and dim. Received: inputs.shape={tuple(shape)}"
            )
        return tuple(shape)

    def build(self, inputs_shape):
        _, rows, columns, dim = self._check(inputs_shape)
        self.encoder.build((None, columns if self.axis == 2 else rows, dim))
        self.built = True

    def call(self, inputs, training=None):
        _, rows, columns, dim = self._check(inputs.shape)
        x = inputs if self.axis == 2 else ops.transpose(inputs, (0, 2, 1, 3))
        outer, length = (rows, columns) if self.axis == 2 else (columns, rows)
        x = self.encoder(ops.reshape(x, (-1, length, dim)), training=training)
        x = ops.reshape(x, (-1, outer, length, dim))
        return x if self.axis == 2 else ops.transpose(x, (0, 2, 1, 3))

    def compute_output_shape(self, inputs_shape):
        return self._check(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, **self.encoder_kwargs)
        return config
