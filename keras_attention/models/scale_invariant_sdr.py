"""Scale-invariant signal-to-distortion ratio: the measure, a loss, a metric."""

import keras
from keras import ops


def scale_invariant_sdr(reference, estimate, epsilon=1e-8):
    """SI-SDR in decibels of each `estimate` against its `reference`.

    Both signals lose their mean; the reference is scaled to best match the
    estimate (`alpha = <estimate, reference> / ||reference||^2`), and

    ```
    SI-SDR = 10 log10(||alpha reference||^2 / ||estimate - alpha reference||^2)
    ```

    so a louder or quieter copy of the reference scores as well as the
    reference itself. Computed in float32 over the last axis.

    Args:
        reference: clean signals `(..., samples)`.
        estimate: signals of the same shape.
        epsilon: added to both energies (a silent reference or a perfect
            estimate gives a finite value).

    Returns:
        float32 tensor `(...)`, in dB.

    Example:

    >>> import numpy as np
    >>> clean = np.sin(np.arange(800) / 10.0)
    >>> noisy = clean + 0.1 * np.cos(np.arange(800) * 1.7)
    >>> round(float(scale_invariant_sdr(clean, noisy)), 1)
    20.0

    Reference:
        - [Le Roux et al., 2019, "SDR - half-baked or well done?"](
          https://arxiv.org/abs/1811.02508).
    """
    reference = ops.cast(reference, "float32")
    estimate = ops.cast(estimate, "float32")
    reference = reference - ops.mean(reference, axis=-1, keepdims=True)
    estimate = estimate - ops.mean(estimate, axis=-1, keepdims=True)
    alpha = ops.sum(estimate * reference, axis=-1, keepdims=True) / (
        ops.sum(reference * reference, axis=-1, keepdims=True) + epsilon
    )
    target = alpha * reference
    residual = estimate - target
    ratio = (ops.sum(target * target, axis=-1) + epsilon) / (ops.sum(residual * residual, axis=-1) + epsilon)
    return 10.0 * ops.log(ratio) / ops.log(10.0)


@keras.saving.register_keras_serializable(package="keras_attention")
class NegativeScaleInvariantSDR(keras.losses.Loss):
    """The negative SI-SDR of waveforms, a loss to minimise.

    Args:
        epsilon: see `scale_invariant_sdr`.
        reduction: Keras loss reduction, default `"sum_over_batch_size"`.
        name: the loss name.
        dtype: the loss computation dtype.

    Call arguments:
        y_true: clean waveforms `(batch, samples)`.
        y_pred: estimated waveforms `(batch, samples)`.

    Returns:
        The reduced loss: minus the mean SI-SDR in dB with the default
        reduction.

    Example:

    >>> import numpy as np
    >>> clean = np.sin(np.arange(1600) / 10.0).reshape(2, 800)
    >>> loss = NegativeScaleInvariantSDR()
    >>> float(loss(clean, 3.0 * clean)) < -70.0
    True

    Reference:
        - [Le Roux et al., 2019, "SDR - half-baked or well done?"](
          https://arxiv.org/abs/1811.02508).
    """

    def __init__(self, epsilon=1e-8, reduction="sum_over_batch_size", name="negative_si_sdr", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        return -scale_invariant_sdr(y_true, y_pred, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="keras_attention")
class ScaleInvariantSDR(keras.metrics.Mean):
    """Mean SI-SDR (dB) of estimated waveforms against clean ones.

    Args:
        epsilon: see `scale_invariant_sdr`.
        name: the metric name.
        dtype: the metric's dtype.

    Call arguments (`update_state`):
        y_true: clean waveforms `(batch, samples)`.
        y_pred: estimated waveforms `(batch, samples)`.
        sample_weight: optional `(batch,)` weights.

    Returns:
        `result()`: the mean SI-SDR in dB over every example seen.

    Example:

    >>> import numpy as np
    >>> clean = np.sin(np.arange(800) / 10.0)[None]
    >>> metric = ScaleInvariantSDR()
    >>> metric.update_state(clean, clean + 0.1 * np.cos(np.arange(800) * 1.7)[None])
    >>> round(float(metric.result()), 1)
    20.0
    """

    def __init__(self, epsilon=1e-8, name="si_sdr", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.epsilon = float(epsilon)

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = scale_invariant_sdr(y_true, y_pred, self.epsilon)
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
