"""`fit`, `export` and the run folder under kills, reruns and careless use.

Each `fit` runs in a subprocess (a real SIGKILL where a fault is injected,
see `faulty_fit.py`) on a tiny generated ListOps config, with a hard
timeout.
"""

import csv
import hashlib
import json
import os
import subprocess
import sys

import pytest

from cli_runner import run_cli

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = [
    "--option", "min_length=8", "--option", "max_length=32",
    "--option", "train_size=128", "--option", "validation_size=32",
    "--option", "test_size=32",
    "--hidden-dim", "16", "--heads", "2", "--layers", "1", "--batch-size", "32",
    "--maps", "0",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def fit(data_dir, output, *extra, fault="none", epochs=3):
    command = [sys.executable, os.path.join(HERE, "faulty_fit.py"), fault, "--"]
    command += ["fit", "--data-dir", data_dir, "--epochs", str(epochs), "--output", str(output)]
    command += TINY + list(extra)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def digest(folder):
    """`{relative path: sha256}` of every file under `folder`."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return found


def history_epochs(folder):
    with open(os.path.join(folder, "history.csv")) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def metrics(folder):
    with open(os.path.join(folder, "metrics.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def finished(data_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("finished") / "run"
    result = fit(data_dir, output, epochs=2)
    assert result.returncode == 0, result.stderr[-3000:]
    return output


def test_a_finished_run_is_refused_then_replaced_whole_with_overwrite(data_dir, finished, tmp_path):
    output = tmp_path / "run"
    subprocess.run(["cp", "-r", str(finished), str(output)], check=True)
    before = digest(output)
    refused = fit(data_dir, output, "--attention", "linear", epochs=1)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "already holds a finished run" in refused.stderr and "--overwrite" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert digest(output) == before  # nothing touched
    # --overwrite, killed while the new model.keras is written: the old run
    # stays whole (every file as it was, no half-written new one in place).
    killed = fit(data_dir, output, "--attention", "linear", "--overwrite", "--no-export",
                 fault="kill-writing=model.keras", epochs=1)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert {k: v for k, v in digest(output).items() if not k.startswith(("backup", ".pending"))} == before
    # The same command again: training is not redone (the checkpoint of the
    # finished epoch is used), and the new run replaces the old one whole:
    # --no-export removes the old export/.
    again = fit(data_dir, output, "--attention", "linear", "--overwrite", "--no-export", epochs=1)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stdout and "Epoch 1/1" not in again.stdout
    assert metrics(output)["attention"] == "linear"
    assert sorted(os.listdir(output)) == ["history.csv", "metrics.json", "model.keras", "vocabulary.txt"]
    assert history_epochs(output) == [0]


def test_kill_while_writing_a_checkpoint_resumes_from_the_previous_one(data_dir, tmp_path):
    output = tmp_path / "run"
    killed = fit(data_dir, output, "--no-export", fault="kill-writing-weights=2")
    assert killed.returncode == -9, killed.stderr[-3000:]
    with open(output / "backup" / "state.json") as f:
        assert json.load(f)["epoch"] == 1  # epoch 2's checkpoint never counted
    resumed = fit(data_dir, output, "--no-export")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the checkpoint" in resumed.stdout and "(epoch 1 done)" in resumed.stdout
    assert history_epochs(output) == [0, 1, 2]
    assert not os.path.exists(output / "backup")


@pytest.mark.slow  # about 45 s; resuming from a checkpoint stays in the default run
def test_a_damaged_checkpoint_is_reported_and_the_one_before_used(data_dir, tmp_path):
    output = tmp_path / "run"
    killed = fit(data_dir, output, "--no-export", fault="kill-after-epoch=2")
    assert killed.returncode == -9, killed.stderr[-3000:]
    latest = output / "backup" / "epoch-0002.weights.h5"
    with open(latest, "r+b") as f:
        f.truncate(96)  # e.g. a disk that lost the end of the file
    resumed = fit(data_dir, output, "--no-export")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    lines = [line for line in resumed.stdout.splitlines() if "unreadable" in line]
    assert len(lines) == 1 and "epoch-0002.weights.h5" in lines[0], resumed.stdout
    assert "(epoch 1 done)" in resumed.stdout
    assert history_epochs(output) == [0, 1, 2]


@pytest.mark.slow  # about 30 s; killing while writing a checkpoint stays in the default run
def test_kill_while_exporting_keeps_the_training(data_dir, tmp_path):
    output = tmp_path / "run"
    killed = fit(data_dir, output, fault="kill-writing=export", epochs=2)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not os.path.exists(output / "metrics.json")  # no half-written run
    assert os.path.exists(output / "backup" / "state.json")  # training kept
    again = fit(data_dir, output, epochs=2)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(epoch 2 done)" in again.stdout
    assert os.path.exists(output / "export" / "saved_model.pb")
    assert not os.path.exists(output / ".pending") and not os.path.exists(output / "backup")


@pytest.mark.slow  # three command-line runs (about 55 s); refusing a finished run stays in the default run
def test_resume_with_other_settings_is_refused_naming_them(data_dir, tmp_path):
    output = tmp_path / "run"
    killed = fit(data_dir, output, "--no-export", fault="kill-after-epoch=1")
    assert killed.returncode == -9, killed.stderr[-3000:]
    for extra, named in (
        (["--attention", "linear"], 'attention: "multi_head" -> "linear"'),
        (["--hidden-dim", "32"], "options.hidden_dim: 16 -> 32"),
        (["--epochs", "1"], "options.epochs: 3 -> 1"),
    ):
        result = fit(data_dir, output, "--no-export", *extra)
        assert result.returncode == 2, result.stderr[-3000:]
        assert named in result.stderr and "--overwrite" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    with open(output / "backup" / "state.json") as f:
        assert json.load(f)["epoch"] == 1  # the checkpoint is untouched
    fresh = fit(data_dir, output, "--no-export", "--attention", "linear", "--overwrite", epochs=1)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert "discarding the unfinished run" in fresh.stdout
    assert metrics(output)["attention"] == "linear" and metrics(output)["resumed"] is False


@pytest.mark.parametrize("name", ["model.keras", "history.csv", "backup"])
def test_links_in_the_run_folder_are_refused(data_dir, tmp_path, name):
    outside = tmp_path / "outside"
    outside.write_text("precious")
    output = tmp_path / "run"
    output.mkdir()
    os.symlink(outside, output / name)
    result = fit(data_dir, output, epochs=1)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "symbolic link" in result.stderr and "Traceback" not in result.stderr
    assert outside.read_text() == "precious"
    assert sorted(os.listdir(output)) == [name]


@pytest.mark.slow  # two full command-line runs, about 50 s
def test_same_command_same_numbers_whether_data_is_generated_or_cached(tmp_path):
    data_dir = str(tmp_path / "tfds")
    os.makedirs(data_dir)
    first = fit(data_dir, tmp_path / "a", "--no-export", epochs=1)  # generates
    second = fit(data_dir, tmp_path / "b", "--no-export", epochs=1)  # reads the cache
    assert first.returncode == 0 and second.returncode == 0, second.stderr[-3000:]
    assert metrics(tmp_path / "a")["test"] == metrics(tmp_path / "b")["test"]


def test_export_refuses_an_existing_output_and_replaces_it_whole(finished, tmp_path):
    target = tmp_path / "served"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    result = run_cli("export", "--model", finished, "--output", target)
    assert result.returncode == 2 and "already exists" in result.stderr, result.stderr[-3000:]
    assert os.listdir(target) == ["notes.txt"]
    result = run_cli("export", "--model", finished, "--output", target, "--overwrite")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "notes.txt" not in os.listdir(target)  # replaced, not merged into
    assert os.path.exists(target / "saved_model.pb")
    single = tmp_path / "file"
    single.write_text("x")
    result = run_cli("export", "--model", finished, "--output", single)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_says_where_the_data_comes_from(finished, tmp_path):
    copy = tmp_path / "copied"
    subprocess.run(["cp", "-r", str(finished), str(copy)], check=True)
    result = run_cli("evaluate", "--model", copy)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the data folder recorded in the run's metrics.json" in result.stderr
    settings = metrics(copy)
    settings["data_dir"] = str(tmp_path / "elsewhere")
    with open(copy / "metrics.json", "w") as f:
        json.dump(settings, f)
    result = run_cli("evaluate", "--model", copy)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "does not exist here" in result.stderr and "--data-dir" in result.stderr
    assert not os.path.exists(tmp_path / "elsewhere")


def test_fit_output_is_quiet_and_names_its_splits(finished, data_dir, tmp_path):
    result = run_cli("fit", "--data-dir", data_dir, "--epochs", "1", "--output", tmp_path / "run",
                     "--no-export", *TINY, env={"TF_CPP_MIN_LOG_LEVEL": None})
    assert result.returncode == 0, result.stderr[-3000:]
    for noise in ("cuInit", "oneDNN", "cache_dataset_ops", "ran out of data", "I0000", "E0000", "W0000"):
        assert noise not in result.stderr, result.stderr[-3000:]
    assert "on the 'train' split, validating on 'validation'" in result.stdout
    assert "evaluated on the 'test' split: accuracy" in result.stdout
