"""`fit --task image / audio` on the prepared data (skipped when absent):
a few steps, then the saved model evaluates to the same accuracy."""

import json
import os

import pytest

from cli_runner import run_cli
from helpers import shared_tfds

SMALL = ["--epochs", "1", "--steps", "3", "--hidden-dim", "16", "--heads", "2", "--layers", "1", "--maps", "1"]


@pytest.mark.parametrize(
    "task,dataset,options",
    [
        ("image", "mnist", ["--batch-size", "16"]),
        ("audio", "spoken_digit", ["--option", "target=speaker", "--option", "num_samples=4000"]),
    ],
)
def test_fit_and_evaluate(task, dataset, options, tmp_path):
    data_dir = shared_tfds(dataset)
    output = str(tmp_path / "run")
    result = run_cli("fit", "--task", task, "--data-dir", data_dir, "--output", output, *SMALL, *options)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(output, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["dataset"] == dataset and 0 <= metrics["test"]["accuracy"] <= 1
    assert os.path.exists(os.path.join(output, "export", "saved_model.pb"))
    maps = os.listdir(os.path.join(output, "attention"))
    assert maps and all(m.startswith("example0_") for m in maps)
    evaluated = run_cli("evaluate", "--model", output)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads(evaluated.stdout[evaluated.stdout.index("{"):])
    assert abs(report["test"]["accuracy"] - metrics["test"]["accuracy"]) < 1e-6
