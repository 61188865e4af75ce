"""The position-wise feed-forward network of a transformer block."""

import keras

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.layers.initializers import clone_initializer
from keras_attention.layers.regularization.dropout import Dropout


def get_activation(layer, activation):
    """`keras.activations.get` with a ValueError naming `layer`."""
    try:
        return keras.activations.get(activation)
    except (ValueError, TypeError) as error:
        raise argument_error(
            layer,
            "activation",
            "must be the name of a Keras activation, a serialized "
            "activation or a callable",
            f"activation={activation!r}",
        ) from error


@keras.saving.register_keras_serializable(package="keras_attention")
class FeedForward(keras.layers.Layer):
    """Position-wise feed-forward network: `Dense -> activation -> Dense`.

    Maps every position of a `(batch, seq, dim)` input independently:
    `dense_2(dropout(activation(dense_1(x))))`, where `dense_1` widens the
    features to `intermediate_dim` and `dense_2` projects them back to
    `output_dim` (by default the input's feature size). It is the second
    sub-layer of every block in `TransformerEncoder` and
    `TransformerDecoder`.

    Args:
        intermediate_dim: positive int, the hidden width (often `4 * dim`).
        output_dim: positive int or `None`, the output width. Defaults to the
            input's last dimension.
        activation: activation of the hidden layer (name, serialized
            activation or callable). Defaults to `"relu"`.
        dropout: float in `[0, 1)`, dropout on the hidden activations.
        use_bias: bool, whether both dense layers have biases.
        kernel_initializer: initializer of both kernels (each gets its own
            copy). Defaults to `"glorot_uniform"`.
        bias_initializer: initializer of both biases. Defaults to `"zeros"`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor `(batch, ..., dim)`.
        training: bool, whether dropout is active.

    Returns:
        A tensor `(batch, ..., output_dim)`. A Keras mask on `inputs` is
        carried over unchanged (the map is position-wise).

    Example:

    >>> ffn = FeedForward(intermediate_dim=64)
    >>> tuple(ffn(keras.random.normal((2, 5, 16))).shape)
    (2, 5, 16)

    Reference:
        - Vaswani et al., 2017, "Attention Is All You Need", section 3.3.
    """

    def __init__(
        self,
        intermediate_dim,
        output_dim=None,
        activation="relu",
        dropout=0.0,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int(self, "intermediate_dim", intermediate_dim)
        check_positive_int(self, "output_dim", output_dim, allow_none=True)
        check_rate(self, "dropout", dropout)
        self.intermediate_dim = intermediate_dim
        self.output_dim = output_dim
        self.activation = get_activation(self, activation)
        self.dropout = dropout
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        self.intermediate_dense = self._dense(
            intermediate_dim, self.activation, "intermediate_dense", 0
        )
        self.dropout_layer = Dropout(
            dropout, dtype=self.dtype_policy, name="intermediate_dropout"
        )
        self.output_dense = None

    def _dense(self, units, activation, name, seed_offset):
        return keras.layers.Dense(
            units,
            activation=activation,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(
                self.kernel_initializer, seed_offset
            ),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def _check(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise argument_error(
                self,
                "inputs",
                "must have rank >= 2 and a known last (feature) dimension",
                f"inputs.shape={tuple(input_shape)}",
            )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._check(input_shape)
        self.output_dense = self._dense(
            self.output_dim or input_shape[-1], None, "output_dense", 1
        )
        self.intermediate_dense.build(input_shape)
        self.output_dense.build(input_shape[:-1] + (self.intermediate_dim,))
        self.built = True

    def call(self, inputs, training=None):
        hidden = self.intermediate_dense(inputs)
        hidden = self.dropout_layer(hidden, training=training)
        return self.output_dense(hidden)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        self._check(input_shape)
        return input_shape[:-1] + (self.output_dim or input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "output_dim": self.output_dim,
                "activation": keras.activations.serialize(self.activation),
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config
