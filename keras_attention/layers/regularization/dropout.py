"""`Dropout`: `keras.layers.Dropout`, fast under XLA on CPU."""

import keras

from keras_attention.ops.dropout import dropout


@keras.saving.register_keras_serializable(package="keras_attention")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` drawing its mask with the Philox generator.

    Same arguments, config and behaviour as `keras.layers.Dropout`; only
    the random generator differs (see `keras_attention.ops.dropout`): under
    `jit_compile=True` on a CPU, Keras' own dropout spent about 100 ms per
    262,144 activations drawing random numbers, more than the layers it
    regularised (a one-block text classifier trained 4x slower than the
    same model without dropout). Every builder and block of this package
    uses it.

    Args:
        rate: float in `[0, 1)`, the fraction of inputs to drop.
        noise_shape: optional 1-D shape of the binary mask (see Keras).
        seed: optional int.
        **kwargs: base layer arguments.

    Call arguments:
        inputs: tensor.
        training: bool, drop only when `True`.

    Returns:
        A tensor like `inputs`.

    Example:

    >>> layer = Dropout(0.5, seed=0)
    >>> x = keras.ops.ones((2, 4))
    >>> bool(keras.ops.all(layer(x, training=False) == x))
    True
    """

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            return dropout(inputs, self.rate, noise_shape=self.noise_shape, seed=self.seed_generator)
        return inputs
