import keras
import numpy as np
import pytest

from helpers import assert_keras_roundtrip
from keras_attention.layers import MaskedAveragePooling


def test_matches_numpy_and_fully_masked_rows_are_zero():
    x = np.random.default_rng(0).normal(size=(3, 5, 4)).astype("float32")
    mask = np.array([[1, 1, 0, 1, 0], [0] * 5, [1] * 5], bool)
    got = keras.ops.convert_to_numpy(MaskedAveragePooling()(x, mask=mask))
    expected = np.stack([x[0, mask[0]].mean(0), np.zeros(4), x[2].mean(0)])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision(dtype):
    x = np.ones((2, 4, 3), "float32")
    mask = np.array([[1, 0, 0, 0], [0, 0, 0, 0]], bool)
    got = MaskedAveragePooling(dtype=dtype)(keras.ops.cast(x, dtype), mask=mask)
    got = keras.ops.convert_to_numpy(keras.ops.cast(got, "float32"))
    np.testing.assert_allclose(got, [[1, 1, 1], [0, 0, 0]])


def test_keras_mask_and_roundtrip(tmp_path):
    tokens = keras.Input((4,), dtype="int32")
    x = keras.layers.Embedding(10, 3, mask_zero=True)(tokens)
    model = keras.Model(tokens, MaskedAveragePooling()(x))
    ids = np.array([[1, 2, 0, 0], [0, 0, 0, 0]], "int32")
    out = model.predict(ids, verbose=0)
    emb = keras.ops.convert_to_numpy(model.layers[1].embeddings)
    np.testing.assert_allclose(out[0], emb[[1, 2]].mean(0), rtol=1e-6)
    np.testing.assert_allclose(out[1], 0)
    assert_keras_roundtrip(model, ids, tmp_path)


def test_rank_error():
    with pytest.raises(ValueError, match="MaskedAveragePooling.*rank 3"):
        MaskedAveragePooling().compute_output_shape((2, 3))
