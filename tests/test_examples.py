"""The scripts in examples/ run (shortened) and do what they say."""

import importlib.util
import os

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # trains the example to its stated accuracy (about 50 s); the other examples stay in the default run
def test_custom_model_learns_the_task():
    accuracy = _load("custom_model").main([])
    assert accuracy > 0.9  # chance is 0.125


def test_fit_tfds_on_embedded_listops(tmp_path):
    results = _load("fit_tfds").main(
        ["--attention", "regional", "--data-dir", str(tmp_path), "--epochs", "1", "--train-size", "256"]
    )
    assert 0.0 <= results["accuracy"] <= 1.0 and results["loss"] > 0


def test_save_and_serve(tmp_path):
    served = _load("save_and_serve").main(["--output", str(tmp_path)])
    assert served.shape == (2, 3)
    assert os.path.exists(tmp_path / "model.keras") and os.path.exists(tmp_path / "export" / "saved_model.pb")
    # model.keras was reloaded in a fresh process (`import keras,
    # keras_attention`, `keras.models.load_model`) and predicted the same.
    reloaded = np.load(tmp_path / "reloaded.npy")
    assert reloaded.shape == (2, 3)
    np.testing.assert_allclose(reloaded, served, atol=1e-4)


@pytest.mark.parametrize("name", ["custom_model", "fit_tfds", "save_and_serve"])
def test_every_example_has_a_docstring_and_main(name):
    module = _load(name)
    assert module.__doc__ and callable(module.main)
