"""`tune` end to end on a tiny ListOps: results, best model, resume."""

import csv
import json
import os

import keras
import numpy as np
import pytest

from helpers import assert_export_roundtrip
from keras_attention import tuning

from conftest import SMALL
from conftest import TINY


def _small_search(directory, data_dir):
    """Two one-step trials (multi_head or linear) of a tiny ListOps model."""
    return tuning.tune(
        "listops",
        tuner="random",
        max_trials=2,
        epochs=1,
        steps=2,
        directory=directory,
        data_dir=data_dir,
        options=TINY,
        verbose=0,
        log=None,
        attention=["multi_head", "linear"],
        **SMALL,
    )


@pytest.fixture(scope="module")
def search(tmp_path_factory, data_dir):
    directory = str(tmp_path_factory.mktemp("search"))
    result = _small_search(directory, data_dir)
    return result, directory


def test_search_writes_results_and_best_model(search):
    result, directory = search
    project = os.path.join(directory, "listops")
    assert result.project_dir == project
    assert len(result.rows) == 2
    assert all(row["status"] == "COMPLETED" for row in result.rows)
    assert all(row["message"] is None for row in result.rows)  # no time budget, nothing cut
    assert result.rows[0]["score"] == max(row["score"] for row in result.rows)
    assert result.best_score == result.rows[0]["score"]
    for row in result.rows:
        assert row["seconds"] > 0
        assert "attention=" in row["hyperparameters"]
    assert result.table.startswith("| trial | status | hyperparameters | epochs | val_accuracy | seconds |")
    with open(os.path.join(project, "results.csv")) as f:
        assert len(list(csv.DictReader(f))) == 2
    with open(os.path.join(project, "results.md")) as f:
        assert f.read().strip() == result.table
    with open(os.path.join(project, "best", "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["task"] == "listops"
    assert metrics["attention"] == result.best_configuration.attention
    assert metrics["attention"] in ("multi_head", "linear")
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert metrics["options"]["hidden_dim"] == SMALL["hidden_dim"]


# keras-tuner's own `load_model` (the reference) loads weights only.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_best_model_loads_without_custom_objects_and_exports(search, tmp_path):
    result, _ = search
    assert result.model_path.endswith(os.path.join("best", "model.keras"))
    model = keras.models.load_model(result.model_path)
    tokens = np.random.default_rng(0).integers(1, 16, size=(4, TINY["max_length"])).astype("int32")
    # The loaded model equals the best trial's checkpoint.
    trial = result.tuner.oracle.get_best_trials(1)[0]
    reference = result.tuner.load_model(trial)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(tokens)),
        keras.ops.convert_to_numpy(reference(tokens)),
        atol=1e-5,
    )
    # The SavedModel written by `tune` serves what the model computes.
    import tensorflow as tf

    loaded = tf.saved_model.load(result.export_path)  # keep: owns the variables
    served = loaded.serve(tf.constant(tokens))
    np.testing.assert_allclose(
        np.asarray(served), keras.ops.convert_to_numpy(model(tokens)), atol=1e-5
    )
    # ... and needs only TensorFlow (a fresh process without keras_attention).
    assert_export_roundtrip(model, tokens, tmp_path)


def test_rerunning_a_finished_search_redoes_nothing(search, data_dir):
    result, directory = search
    trial_files = {
        row["trial"]: os.path.join(result.project_dir, f"trial_{row['trial']}", "trial.json")
        for row in result.rows
    }
    before = {k: os.path.getmtime(v) for k, v in trial_files.items()}
    again = _small_search(directory, data_dir)
    assert {k: os.path.getmtime(v) for k, v in trial_files.items()} == before
    assert [r["trial"] for r in again.rows] == [r["trial"] for r in result.rows]
    assert again.best_score == result.best_score


def test_bad_arguments_name_tune(data_dir, tmp_path):
    with pytest.raises(ValueError, match="`tune`: `tuner` must be one of"):
        tuning.tune("listops", tuner="grid", directory=str(tmp_path))
    with pytest.raises(ValueError, match="`tune`: `max_trials` must be a positive int"):
        tuning.tune("listops", max_trials=0, directory=str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("tuner", ["hyperband", "bayesian"])
def test_other_tuners(tuner, data_dir, tmp_path):
    result = tuning.tune(
        "listops",
        tuner=tuner,
        max_trials=3,
        epochs=2,
        steps=2,
        directory=str(tmp_path),
        data_dir=data_dir,
        options=TINY,
        verbose=0,
        log=None,
        attention=["multi_head", "regional"],
        **SMALL,
    )
    # Hyperband's brackets may hold fewer trials than `max_trials`.
    assert 2 <= len(result.rows) <= 3
    assert any(row["status"] == "COMPLETED" for row in result.rows)
    assert all(1 <= row["epochs"] <= 2 for row in result.rows)
    assert os.path.exists(result.model_path)


@pytest.mark.slow  # the command-line test covers `--max-seconds` in the lean run
def test_time_budget_stops_the_search(data_dir, tmp_path):
    result = tuning.tune(
        "listops",
        tuner="random",
        max_trials=50,
        epochs=1,
        steps=2,
        max_seconds=1,
        directory=str(tmp_path),
        data_dir=data_dir,
        options=TINY,
        verbose=0,
        log=None,
        export=False,
        attention="multi_head",
        **SMALL,
    )
    assert len(result.rows) == 1
    assert result.export_path is None
