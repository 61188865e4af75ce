"""`keras-attention fit / evaluate / predict / export / compare` end to end,
on a tiny generated ListOps config, each in a subprocess."""

import csv
import json
import os
import signal
import subprocess
import time

import pytest

from cli_runner import run_cli
from cli_runner import script

TINY = [
    "--option", "min_length=8", "--option", "max_length=32",
    "--option", "train_size=256", "--option", "validation_size=32",
    "--option", "test_size=32",
    "--hidden-dim", "16", "--heads", "2", "--layers", "1", "--batch-size", "16",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, data_dir):
    output = str(tmp_path_factory.mktemp("run"))
    result = run_cli("fit", "--data-dir", data_dir, "--epochs", "2", "--output", output, *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


def test_fit_writes_everything(fitted):
    output, result = fitted
    for name in ("model.keras", "metrics.json", "history.csv", "vocabulary.txt", "export/saved_model.pb"):
        assert os.path.exists(os.path.join(output, name)), name
    assert not os.path.exists(os.path.join(output, "backup"))  # removed when done
    maps = os.listdir(os.path.join(output, "attention"))
    assert len(maps) == 2 and all(m.endswith(".png") for m in maps)
    with open(os.path.join(output, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["task"] == "listops" and metrics["attention"] == "multi_head"
    assert 0 <= metrics["test"]["accuracy"] <= 1
    assert 0 < metrics["baselines"]["majority_class_accuracy"] < 1
    assert metrics["parameters"] > 0 and metrics["peak_memory_mib"] > 0
    with open(os.path.join(output, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert "val_accuracy" in rows[0]
    assert "[keras-attention] evaluated on the 'test' split: accuracy" in result.stdout


def test_evaluate_reports_the_same_test_accuracy(fitted):
    output, _ = fitted
    result = run_cli("evaluate", "--model", output)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{"):])
    with open(os.path.join(output, "metrics.json")) as f:
        metrics = json.load(f)
    assert abs(report["test"]["accuracy"] - metrics["test"]["accuracy"]) < 1e-6


def test_predict_from_arguments_and_file(fitted, tmp_path):
    output, _ = fitted
    result = run_cli("predict", "--model", output, "[MAX 2 9 [MIN 4 7 ] 0 ]", "[SM 1 2 ]", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["input"] for line in lines] == ["[MAX 2 9 [MIN 4 7 ] 0 ]", "[SM 1 2 ]"]
    assert all(line["prediction"] in list("0123456789") for line in lines)
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("[MIN 3 4 ]\n\n[MED 1 2 3 ]\n")
    result = run_cli("predict", "--model", os.path.join(output, "model.keras"), "--file", str(inputs))
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(result.stdout.strip().splitlines()) == 2
    bad = run_cli("predict", "--model", output, "[MAX 2 x ]")
    assert bad.returncode == 2 and "unknown token" in bad.stderr


def test_export_saved_model_and_tflite_message(fitted, tmp_path):
    output, _ = fitted
    target = str(tmp_path / "exported")
    result = run_cli("export", "--model", output, "--output", target, "--tflite")
    assert os.path.exists(os.path.join(target, "saved_model.pb"))
    assert "SavedModel written" in result.stdout
    if result.returncode == 0:
        assert os.path.getsize(target + ".tflite") > 0
    else:
        assert result.returncode == 1 and "TFLite" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow  # about 45 s; resuming after a kill stays in the default run (test_cli_run_safety)
def test_interrupt_then_resume(data_dir, tmp_path):
    output = str(tmp_path / "run")
    command = script() + ["fit", "--data-dir", data_dir, "--epochs", "30", "--output", output, "--maps", "0", "--no-export", *TINY]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    backup = os.path.join(output, "backup")
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if os.path.isdir(backup) and os.listdir(backup):
            break
        time.sleep(0.5)
    time.sleep(2)  # a few more epochs
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "re-run the same command to resume" in stderr
    assert os.path.isdir(backup)
    # While unfinished, the history lives with the checkpoint; the run's own
    # history.csv is written with the finished run.
    assert not os.path.exists(os.path.join(output, "history.csv"))
    with open(os.path.join(backup, "history.csv")) as f:
        done = len(list(csv.DictReader(f)))
    assert 1 <= done < 30

    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from the checkpoint" in result.stdout
    with open(os.path.join(output, "history.csv")) as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    # Every epoch appears, the interrupted one at most twice.
    assert sorted(set(epochs)) == list(range(30))
    assert len(epochs) <= 31
    with open(os.path.join(output, "metrics.json")) as f:
        assert json.load(f)["resumed"] is True


def test_compare_prints_and_saves_a_table(data_dir, tmp_path):
    output = str(tmp_path / "compare")
    result = run_cli("compare", "--data-dir", data_dir, "--attention", "multi_head", "linear",
                     "--epochs", "1", "--maps", "0", "--output", output, *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("comparison.md", "comparison.json", "comparison.png"):
        assert os.path.exists(os.path.join(output, name)), name
    with open(os.path.join(output, "comparison.json")) as f:
        table = json.load(f)
    assert [row["attention"] for row in table["rows"]] == ["multi_head", "linear"]
    for row in table["rows"]:
        assert 0 <= row["accuracy"] <= 1 and row["parameters"] > 0 and row["peak_memory_mib"] > 0
    assert "| multi_head |" in result.stdout and "majority class accuracy" in result.stdout
