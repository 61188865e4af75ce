"""SST-2 from the prepared tfds folder: a short run beats the majority class.

The training run is slow-marked (tens of seconds) and skips when the data
is absent.
"""

import importlib.util
import os

import numpy as np
import pytest

from helpers import shared_tfds

BENCHMARK = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "benchmarks",
    "text_classification.py",
)


def _benchmark():
    spec = importlib.util.spec_from_file_location("text_classification_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_short_sst2_run_beats_the_majority_class(capsys):
    data_dir = shared_tfds("glue")
    rows = _benchmark().main([
        "--data-dir", data_dir, "--variants", "multi_head", "--epochs", "1",
        "--steps", "150", "--batch-size", "128", "--warmup-steps", "30",
        "--hidden-dim", "64", "--intermediate-dim", "128", "--num-layers", "1",
    ])
    printed = capsys.readouterr().out
    assert "| multi_head |" in printed and "majority-class baseline (validation): 0.5" in printed
    (row,) = rows
    # SST-2 validation: 444 positive of 872, so always answering the
    # training majority (positive) scores 0.509.
    assert row["validation"] > 0.509 + 0.15, row
    assert row["epochs_run"] == 1 and np.isfinite(row["seconds"])


@pytest.mark.slow
def test_ensemble_scores_the_average_of_its_members(capsys):
    data_dir = shared_tfds("glue")
    rows = _benchmark().main([
        "--data-dir", data_dir, "--variants", "linear", "--epochs", "1", "--ensemble", "2",
        "--steps", "150", "--batch-size", "128", "--warmup-steps", "30",
        "--hidden-dim", "32", "--intermediate-dim", "64", "--num-layers", "1",
    ])
    printed = capsys.readouterr().out
    first, second, average = rows
    assert (first["seed"], second["seed"]) == (0, 1)
    assert "| linear, average of 2 (seeds 0, 1) |" in printed
    # Different seeds give different models.
    assert first["model"].get_weights()[0].tolist() != second["model"].get_weights()[0].tolist()
    # The average's accuracy, recomputed here from the members' outputs.
    import keras

    data = _benchmark().load(_benchmark().parse_arguments(["--data-dir", data_dir, "--batch-size", "128"]))
    labels = np.concatenate([y.numpy() for _, y in data.test])
    probabilities = sum(keras.ops.convert_to_numpy(keras.ops.softmax(row["model"].predict(data.test, verbose=0)))
                        for row in (first, second))
    assert average["validation"] == pytest.approx(np.mean(probabilities.argmax(-1) == labels), abs=1.5 / len(labels))
    assert average["validation"] > 0.509 + 0.1, average


def test_benchmark_skips_cleanly_without_data(tmp_path, capsys):
    rows = _benchmark().main(["--data-dir", str(tmp_path)])
    assert rows == []
    assert "skipped: glue/sst2 not found" in capsys.readouterr().out
