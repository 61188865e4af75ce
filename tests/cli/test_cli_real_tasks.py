"""`fit --task image / audio / enhance / detect` on the prepared data
(skipped when absent): a few steps, then the saved model evaluates to the
same numbers."""

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
        # The audio task's command-line path is the image one's; its run is
        # slow-marked to keep the default suite in its budget.
        pytest.param(
            "audio", "spoken_digit", ["--option", "target=speaker", "--option", "num_samples=4000"],
            marks=pytest.mark.slow,
        ),
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


@pytest.mark.slow  # three command-line runs on the real recordings (about 35 s); the usage test below stays in the default run
def test_enhance_fits_evaluates_and_reports_the_noisy_baseline(tmp_path):
    data_dir = shared_tfds("spoken_digit")
    output = str(tmp_path / "run")
    result = run_cli(
        "fit", "--task", "enhance", "--data-dir", data_dir, "--output", output, *SMALL,
        "--option", "num_samples=2000", "--option", "mixtures_per_clip=1", "--option", "noise_kinds=white,pink",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "input_si_sdr" in result.stdout and "si_sdr" in result.stdout
    with open(os.path.join(output, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["task"] == "enhance" and metrics["dataset"] == "spoken_digit"
    # Two noise kinds at 0 dB over each clip's samples; the window's zero
    # padding puts the noisy input's SI-SDR at or below 0 dB.
    assert -15.0 < metrics["baselines"]["input_si_sdr"] <= 0.5
    assert abs(metrics["test"]["si_sdr"] + metrics["test"]["loss"]) < 1e-3
    assert os.path.exists(os.path.join(output, "export", "saved_model.pb"))
    evaluated = run_cli("evaluate", "--model", output)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads(evaluated.stdout[evaluated.stdout.index("{"):])
    assert abs(report["test"]["si_sdr"] - metrics["test"]["si_sdr"]) < 1e-4
    # Waveforms are not typed on a command line: a one-line usage error.
    predicted = run_cli("predict", "--model", output, "hello")
    assert predicted.returncode == 2
    assert "Task 'enhance' does not take inputs on the command line" in predicted.stderr
    assert "Traceback" not in predicted.stderr


def test_enhance_bad_options_are_usage_errors(tmp_path):
    # One command-line run shows the path (rc 2, nothing created); the
    # task's loader says the same for every bad option, in process.
    import re

    from keras_attention.tasks import get_task

    data_dir = shared_tfds("spoken_digit")
    output = tmp_path / "run"
    result = run_cli(
        "fit", "--task", "enhance", "--data-dir", data_dir, "--output", output, *SMALL,
        "--option", "noise_kinds=white,wind",
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert re.search(r"speech_enhancement_data.*noise_kinds.*wind", result.stderr), result.stderr[-2000:]
    assert not output.exists()
    task = get_task("enhance")
    for option, message in [
        ({"test_speakers": "nobody"}, r"speech_enhancement_data.*test_speakers.*nobody"),
        ({"train_snr_low": 20.0}, r"speech_enhancement_data.*train_snr_db"),
        ({"noise_kinds": ""}, r"speech_enhancement_data.*noise_kinds"),
    ]:
        with pytest.raises(ValueError, match=message):
            task.load("spoken_digit", data_dir, task.options(option))
    with pytest.raises(ValueError, match=r"Task 'enhance'.*'spoken_digit'.*dataset='mnist'"):
        task.load("mnist", data_dir, task.options({}))


# About 90 s (the canvases are drawn from MNIST first). In the default run,
# the detect task trains and scores through the same task code on a mock
# VOC layout (tests/data/test_detection_data.py), the command-line path is
# the other tasks', and the detect options' errors are checked below.
@pytest.mark.slow
def test_detect_fits_validates_and_evaluates_map(tmp_path):
    data_dir = shared_tfds("mnist")
    output = str(tmp_path / "run")
    result = run_cli(
        "fit", "--task", "detect", "--data-dir", data_dir, "--output", output, *SMALL,
        "--option", "config=small", "--option", "validation_fraction=0.25", "--batch-size", "8",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "validating on 'mnist_detection/small train[48:]'" in result.stdout
    with open(os.path.join(output, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["task"] == "detect" and metrics["test_split"] == "mnist_detection/small test"
    assert 0 <= metrics["test"]["map_50_95"] <= metrics["test"]["map_50"] <= 1
    with open(os.path.join(output, "history.csv")) as f:
        assert "val_map_50" in f.readline()
    assert os.path.exists(os.path.join(output, "export", "saved_model.pb"))
    evaluated = run_cli("evaluate", "--model", output)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads(evaluated.stdout[evaluated.stdout.index("{"):])
    for key in ("loss", "map_50", "map_50_95"):
        assert abs(report["test"][key] - metrics["test"][key]) < 1e-4, key


def test_detect_bad_options_are_clear_errors(tmp_path):
    from keras_attention.tasks import get_task

    data_dir = shared_tfds("mnist")
    task = get_task("detect")
    for option, message in [
        ({"config": "huge"}, r"Task 'detect'.*'config'.*\['default', 'small'\].*config='huge'"),
        ({"config": "small", "validation_fraction": 1.5}, r"mnist_detection_data.*validation_fraction.*\[0, 1\)"),
        ({"config": "small", "validation_fraction": 0.9}, r"mnist_detection_data.*validation_fraction.*at least one training batch"),
    ]:
        with pytest.raises(ValueError, match=message):
            task.load("mnist_detection", data_dir, task.options(option))
    with pytest.raises(ValueError, match=r"detection_data.*tensorflow-datasets has no dataset 'vocx'"):
        task.load("vocx", data_dir, task.options({}))
    with pytest.raises(ValueError, match=r"Task 'detect'.*'num_queries'.*at least.*\(4\).*num_queries=2"):
        task.check_build("multi_head", None, task.options({"num_queries": 2}))
