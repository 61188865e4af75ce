"""`ElementwiseMeanSquaredError`: MSE that averages over every element."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_attention")
class ElementwiseMeanSquaredError(keras.losses.Loss):
    """Mean squared error for targets of any rank, `(batch,)` included.

    `keras.losses.MeanSquaredError` averages over the last axis first. For
    `(batch,)` targets that axis *is* the batch, so each replica of a
    `tf.distribute` strategy gets back one scalar that Keras 3 does not
    rescale for the number of replicas: on `n` replicas the loss and its
    gradient come out `n` times too large. This loss returns the squared
    error per element and lets the reduction average it, which is the same
    value on one device and correct under every strategy.

    Args:
        reduction: Keras loss reduction, default `"sum_over_batch_size"`.
        name: the loss name.
        dtype: the loss computation dtype.

    Call arguments:
        y_true: targets, any shape.
        y_pred: predictions, the shape of `y_true`.

    Returns:
        The reduced loss (a scalar with the default reduction).

    Example:

    >>> loss = ElementwiseMeanSquaredError()
    >>> float(loss([1.0, 3.0], [2.0, 1.0]))
    2.5
    """

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(y_true, y_pred.dtype)
        if len(y_true.shape) == len(y_pred.shape) + 1 and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, -1)
        elif len(y_pred.shape) == len(y_true.shape) + 1 and y_pred.shape[-1] == 1:
            y_pred = ops.squeeze(y_pred, -1)
        return ops.square(y_pred - y_true)

