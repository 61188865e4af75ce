import keras
import numpy as np
import pytest

from keras_attention.layers import AxialTransformerEncoder


def _grid(seed=0, shape=(2, 3, 5, 8)):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("attention", ["multi_head", "linear"])
def test_axis_2_is_the_block_on_every_row(attention):
    layer = AxialTransformerEncoder(2, intermediate_dim=16, num_heads=2, attention=attention, norm_first=True)
    x = _grid()
    out = np.asarray(layer(x))
    for b in range(x.shape[0]):
        for r in range(x.shape[1]):
            row = np.asarray(layer.encoder(x[b, r][None]))[0]
            np.testing.assert_allclose(out[b, r], row, rtol=1e-5, atol=1e-5)


def test_axis_1_is_axis_2_on_the_transposed_grid():
    rows = AxialTransformerEncoder(1, intermediate_dim=16, num_heads=2)
    x = _grid(1)
    out = np.asarray(rows(x))
    columns = AxialTransformerEncoder(2, intermediate_dim=16, num_heads=2)
    columns(np.transpose(x, (0, 2, 1, 3)))
    columns.set_weights(rows.get_weights())
    np.testing.assert_allclose(out, np.transpose(np.asarray(columns(np.transpose(x, (0, 2, 1, 3)))), (0, 2, 1, 3)), atol=1e-5)


def test_saves_and_loads_in_a_model(tmp_path):
    inputs = keras.Input((3, 5, 8))
    outputs = AxialTransformerEncoder(2, intermediate_dim=16, num_heads=2, attention="linear", dropout=0.1, name="axial")(inputs)
    model = keras.Model(inputs, outputs)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = _grid(2)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert loaded.get_layer("axial").get_config() == model.get_layer("axial").get_config()


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match=r"AxialTransformerEncoder.*`axis` must be 1 or 2.*axis=3"):
        AxialTransformerEncoder(3, intermediate_dim=16, num_heads=2)
    with pytest.raises(ValueError, match=r"AxialTransformerEncoder.*\(batch, rows, columns, dim\).*\(2, 5, 8\)"):
        AxialTransformerEncoder(2, intermediate_dim=16, num_heads=2)(np.ones((2, 5, 8), "float32"))
