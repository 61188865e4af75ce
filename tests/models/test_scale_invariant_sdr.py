
import keras
import numpy as np
import pytest

from keras_attention.models import NegativeScaleInvariantSDR
from keras_attention.models import ScaleInvariantSDR
from keras_attention.models import scale_invariant_sdr


def _reference(reference, estimate):
    """SI-SDR in float64 NumPy, per row."""
    reference = reference - reference.mean(axis=-1, keepdims=True)
    estimate = estimate - estimate.mean(axis=-1, keepdims=True)
    alpha = (estimate * reference).sum(-1, keepdims=True) / (reference**2).sum(-1, keepdims=True)
    target = alpha * reference
    return 10 * np.log10((target**2).sum(-1) / ((estimate - target) ** 2).sum(-1))


def _signals(seed=0, batch=4, samples=1000):
    rng = np.random.default_rng(seed)
    clean = rng.normal(size=(batch, samples))
    noise = rng.normal(size=(batch, samples)) * np.array([0.05, 0.3, 1.0, 3.0])[:batch, None]
    return clean, clean + noise


def test_matches_numpy_and_the_snr_of_independent_noise():
    clean, noisy = _signals()
    got = keras.ops.convert_to_numpy(scale_invariant_sdr(clean, noisy))
    np.testing.assert_allclose(got, _reference(clean, noisy), atol=1e-3)
    # Independent noise at 20 log10(1/g) dB: SI-SDR is close to that SNR.
    np.testing.assert_allclose(got, -20 * np.log10([0.05, 0.3, 1.0, 3.0]), atol=0.5)


def test_invariant_to_scale_and_offset_not_to_distortion():
    clean, noisy = _signals(1)
    base = keras.ops.convert_to_numpy(scale_invariant_sdr(clean, noisy))
    scaled = keras.ops.convert_to_numpy(scale_invariant_sdr(clean, 0.01 * noisy + 3.0))
    np.testing.assert_allclose(scaled, base, atol=1e-3)
    assert float(scale_invariant_sdr(clean[0], clean[0])) > 60.0
    assert float(scale_invariant_sdr(clean[0], -clean[0])) > 60.0  # a sign flip is a scale
    assert float(scale_invariant_sdr(clean[0], clean[1])) < -10.0  # another signal


def test_silent_inputs_are_finite():
    zeros = np.zeros((2, 100))
    values = keras.ops.convert_to_numpy(scale_invariant_sdr(zeros, zeros + np.random.default_rng(0).normal(size=(2, 100))))
    assert np.all(np.isfinite(values))
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(scale_invariant_sdr(zeros, zeros))))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_are_measured_in_float32(dtype):
    clean, noisy = _signals(2)
    low = scale_invariant_sdr(keras.ops.cast(clean, dtype), keras.ops.cast(noisy, dtype))
    assert keras.backend.standardize_dtype(low.dtype) == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(low), _reference(clean, noisy), atol=0.1)


def test_loss_and_metric():
    clean, noisy = _signals(3)
    expected = _reference(clean, noisy)
    loss = NegativeScaleInvariantSDR()
    np.testing.assert_allclose(float(loss(clean, noisy)), -expected.mean(), atol=1e-3)
    weights = np.array([1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(float(loss(clean, noisy, sample_weight=weights)), -(expected[0] + expected[3]) / 4, atol=1e-3)
    metric = ScaleInvariantSDR()
    metric.update_state(clean[:2], noisy[:2])
    metric.update_state(clean[2:], noisy[2:])
    np.testing.assert_allclose(float(metric.result()), expected.mean(), atol=1e-3)
    clone = NegativeScaleInvariantSDR.from_config(NegativeScaleInvariantSDR(epsilon=1e-6).get_config())
    assert clone.epsilon == 1e-6
    assert ScaleInvariantSDR.from_config(ScaleInvariantSDR(epsilon=1e-5, name="x").get_config()).epsilon == 1e-5


def test_gradient_moves_an_estimate_towards_the_reference():
    import tensorflow as tf

    clean, noisy = _signals(4)
    estimate = tf.Variable(noisy.astype("float32"))
    loss = NegativeScaleInvariantSDR()
    before = float(loss(clean, estimate))
    optimizer = keras.optimizers.Adam(0.01)
    for _ in range(20):
        with tf.GradientTape() as tape:
            value = loss(clean, estimate)
        optimizer.apply_gradients([(tape.gradient(value, estimate), estimate)])
    assert float(loss(clean, estimate)) < before - 1.0


