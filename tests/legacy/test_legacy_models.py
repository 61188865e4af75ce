"""Models saved with an earlier layout of the package still load.

`layout_2026_12/` holds `.keras` files (and their outputs on fixed inputs)
written by `make_models.py` when every layer module sat directly under
`keras_attention/layers/`. Moving modules must keep every registered
serialization name, so these files load without `custom_objects` and
compute the same outputs.
"""

import glob
import os

import keras
import numpy as np
import pytest

import keras_attention  # noqa: F401  (registers the package's classes)

from make_models import inputs

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layout_2026_12")
NAMES = sorted(os.path.basename(p)[: -len(".keras")] for p in glob.glob(os.path.join(HERE, "*.keras")))


def test_the_saved_files_are_there():
    assert len(NAMES) == 12, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_a_model_saved_with_the_old_layout_loads_and_computes_the_same(name):
    model = keras.models.load_model(os.path.join(HERE, f"{name}.keras"))
    outputs = model.predict(inputs(name), verbose=0)
    flat = outputs if isinstance(outputs, dict) else {"output": outputs}
    want = np.load(os.path.join(HERE, f"{name}.npz"))
    assert sorted(flat) == sorted(want.files)
    for key in want.files:
        np.testing.assert_allclose(np.asarray(flat[key]), want[key], rtol=1e-5, atol=1e-5)
