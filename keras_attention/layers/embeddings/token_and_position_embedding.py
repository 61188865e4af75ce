"""Token embeddings plus (learned or sinusoidal) position embeddings."""

import keras
from keras import ops

from keras_attention.arguments import check_int
from keras_attention.layers.embeddings.position_embedding import PositionEmbedding
from keras_attention.layers.embeddings.sinusoidal_position_encoding import (
    SinusoidalPositionEncoding,
)

_POSITIONS = ("learned", "sinusoidal")


@keras.saving.register_keras_serializable(package="keras_attention")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Sums a token embedding and a position embedding.

    Maps integer token ids of shape `(batch, seq)` to vectors of shape
    `(batch, seq, embedding_dim)`: a `keras.layers.Embedding` lookup plus
    either a learned `PositionEmbedding` (`position="learned"`) or the fixed
    `SinusoidalPositionEncoding` (`position="sinusoidal"`).

    With `mask_zero=True`, token id 0 is padding: like
    `keras.layers.Embedding`, the layer produces the Keras mask
    `inputs != 0` of shape `(batch, seq)`, which following layers (attention,
    pooling, RNNs) receive automatically.

    Args:
        vocabulary_size: positive int, the number of token ids.
        sequence_length: positive int, the largest sequence length. With
            `position="learned"` it is the size of the position table and
            longer inputs raise a `ValueError`; with `"sinusoidal"` it is not
            enforced, since the fixed encodings extrapolate.
        embedding_dim: positive int, the output size (even for
            `"sinusoidal"`).
        mask_zero: bool, whether token id 0 is padding to be masked.
            Defaults to `False`.
        position: `"learned"` or `"sinusoidal"`. Defaults to `"learned"`.
        embeddings_initializer: initializer of the token table and (for
            `"learned"`) of the position table, each with its own copy.
            Defaults to `"uniform"`, as in `keras.layers.Embedding`.
        max_wavelength: positive float, used with `position="sinusoidal"`
            only. Defaults to `10000`.
        **kwargs: other keyword arguments of `keras.layers.Layer`, such as
            `name` and `dtype`.

    Call arguments:
        inputs: integer tensor of token ids, shape `(batch, seq)`.
        start_index: int or scalar int tensor, the position of the first
            token, for decoding with a cache. Defaults to `0`.

    Returns:
        A tensor of shape `(batch, seq, embedding_dim)` in the layer's
        compute dtype.

    Example:

    >>> tokens = keras.Input(shape=(128,), dtype="int32")
    >>> x = TokenAndPositionEmbedding(
    ...     vocabulary_size=30000,
    ...     sequence_length=128,
    ...     embedding_dim=256,
    ...     mask_zero=True,
    ... )(tokens)
    >>> x = keras.layers.GlobalAveragePooling1D()(x)  # ignores padding
    >>> x.shape
    (None, 256)

    Reference:
        - [Vaswani et al., 2017, "Attention Is All You Need", section 3.4-3.5](
          https://arxiv.org/abs/1706.03762)
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        embedding_dim,
        mask_zero=False,
        position="learned",
        embeddings_initializer="uniform",
        max_wavelength=10000,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int(self, "vocabulary_size", vocabulary_size, 1)
        check_int(self, "sequence_length", sequence_length, 1)
        check_int(self, "embedding_dim", embedding_dim, 1)
        if position not in _POSITIONS:
            raise ValueError(
                f"`position` must be one of {_POSITIONS}. "
                f"Received: position={position!r}"
            )
        if position == "sinusoidal" and embedding_dim % 2:
            raise ValueError(
                "`embedding_dim` must be even with position='sinusoidal'. "
                f"Received: embedding_dim={embedding_dim}"
            )
        self.vocabulary_size = int(vocabulary_size)
        self.sequence_length = int(sequence_length)
        self.embedding_dim = int(embedding_dim)
        self.mask_zero = bool(mask_zero)
        self.position = position
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer
        )
        self.max_wavelength = max_wavelength
        self.supports_masking = self.mask_zero

        self.token_embedding = keras.layers.Embedding(
            self.vocabulary_size,
            self.embedding_dim,
            embeddings_initializer=_clone(self.embeddings_initializer),
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        if position == "learned":
            self.position_embedding = PositionEmbedding(
                self.sequence_length,
                initializer=_clone(self.embeddings_initializer),
                dtype=self.dtype_policy,
                name="position_embedding",
            )
        else:
            self.position_embedding = SinusoidalPositionEncoding(
                max_wavelength=max_wavelength,
                dtype=self.dtype_policy,
                name="position_embedding",
            )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.token_embedding.build(input_shape)
        self.position_embedding.build(input_shape + (self.embedding_dim,))
        self.built = True

    def call(self, inputs, start_index=0):
        embedded = self.token_embedding(inputs)
        positions = self.position_embedding(embedded, start_index=start_index)
        return embedded + positions

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.embedding_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "embedding_dim": self.embedding_dim,
                "mask_zero": self.mask_zero,
                "position": self.position,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
                "max_wavelength": self.max_wavelength,
            }
        )
        return config


def _clone(initializer):
    """A fresh copy of `initializer`, so two tables don't share a seed."""
    return initializer.__class__.from_config(initializer.get_config())
