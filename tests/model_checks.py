"""The checks every model builder's tests run (see tests/models/)."""

import keras
import numpy as np

from helpers import as_list
from helpers import assert_export_roundtrip
from helpers import assert_keras_roundtrip


def train_one_step(model, inputs, targets, loss=None, **compile_kwargs):
    """Compiles with `jit_compile=True` (unless given), runs one step.

    Returns the loss, asserted finite.
    """
    if loss is not None:
        compile_kwargs.setdefault("optimizer", "adam")
        compile_kwargs.setdefault("jit_compile", True)
        model.compile(loss=loss, **compile_kwargs)
    assert model.jit_compile is True
    logs = model.train_on_batch(inputs, targets, return_dict=True)
    assert np.isfinite(logs["loss"]), logs
    return logs["loss"]


def check_builder_model(model, inputs, targets, tmp_path, loss=None, export=True, atol=1e-5, **compile_kwargs):
    """One XLA training step, predict, `.keras` and SavedModel round trips.

    Args:
        model: the built model (compiled already unless `loss` is given).
        inputs, targets: one small batch.
        tmp_path: pytest's tmp_path.
        loss: if given, the model is compiled here with it.
        export: whether to check `model.export` served in a fresh process.
        atol: tolerance of the round trips.
    """
    train_one_step(model, inputs, targets, loss=loss, **compile_kwargs)
    predicted = as_list(model.predict(inputs, verbose=0))
    for p in predicted:
        assert np.all(np.isfinite(p))
    assert_keras_roundtrip(model, inputs, tmp_path, atol=atol)
    if export:
        assert_export_roundtrip(model, inputs, tmp_path, atol=atol)
    return predicted
