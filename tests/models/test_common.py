"""models.common: compile_model's schedule and weight averaging."""

import keras
import numpy as np
import pytest

from keras_attention.models import compile_model


def _model():
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))


def test_ema_weights_end_the_fit():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    plain, averaged = _model(), _model()
    averaged.set_weights(plain.get_weights())
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    compile_model(plain, loss, learning_rate=0.1)
    compile_model(averaged, loss, learning_rate=0.1, ema_momentum=0.9)
    assert averaged.optimizer.use_ema and averaged.optimizer.ema_momentum == 0.9
    assert not plain.optimizer.use_ema
    plain.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    averaged.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    # Same steps; the averaged model ends on the moving average, which lags.
    assert not np.allclose(plain.get_weights()[0], averaged.get_weights()[0])


def test_warmup_then_cosine_schedule():
    model = compile_model(_model(), "mse", learning_rate=1.0, warmup_steps=10, decay_steps=100)
    schedule = model.optimizer.learning_rate if callable(model.optimizer.learning_rate) else model.optimizer._learning_rate
    values = [float(schedule(step)) for step in (0, 5, 10, 60, 110)]
    np.testing.assert_allclose(values, [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)


@pytest.mark.parametrize("value", [1.0, 0, -0.5, "0.9"])
def test_bad_ema_momentum(value):
    with pytest.raises(ValueError, match="ema_momentum"):
        compile_model(_model(), "mse", ema_momentum=value)
