"""`keras-attention tune`: help, usage errors, a search, resume after kill."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import SMALL
from conftest import TINY
from conftest import cli_environment


def _command(directory, data_dir, *extra, max_trials=2, epochs=1, steps=2):
    command = [sys.executable, "-m", "keras_attention.cli", "tune", "--task", "listops"]
    command += ["--data-dir", data_dir, "--directory", directory, "--tuner", "random"]
    command += ["--max-trials", str(max_trials), "--epochs", str(epochs), "--steps", str(steps)]
    for key, value in TINY.items():
        if key == "batch_size":
            command += ["--batch-size", str(value)]
        else:
            command += ["--option", f"{key}={value}"]
    for key, value in SMALL.items():
        command += ["--hp", f"{key}={value}"]
    return command + list(extra)


def _run(command, timeout=300):
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=cli_environment()
    )


def test_help_lists_tune(capsys):
    from keras_attention.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "tune" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["tune", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: keras-attention tune" in out
    for flag in ("--tuner", "--max-trials", "--directory", "--hp", "--max-seconds"):
        assert flag in out


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--hp", "novalue"], "--hp takes KEY=VALUE"),
        (["--hp", "attention=nope"], "unknown attention 'nope'"),
        (["--max-trials", "0"], "--max-trials must be positive"),
        (["--hp", "colour=3"], "`colour` is not an argument of the search space"),
    ],
)
def test_bad_usage_exits_2_with_a_clear_message(extra, message, tmp_path, data_dir, capsys):
    from keras_attention.cli import main

    code = main(_command(str(tmp_path), data_dir, *extra)[3:])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "keras-attention tune: error: " + message in err or message in err
    assert "Traceback" not in err


def _completed(project):
    done = set()
    if not os.path.isdir(project):
        return done
    for name in os.listdir(project):
        path = os.path.join(project, name, "trial.json")
        if name.startswith("trial_") and os.path.exists(path):
            try:
                with open(path) as f:
                    trial = json.load(f)
            except (OSError, ValueError):  # being written
                continue
            if trial.get("status") == "COMPLETED":
                done.add(trial["trial_id"])
    return done


@pytest.mark.slow
def test_a_killed_search_resumes_without_redoing_finished_trials(tmp_path, data_dir):
    directory = str(tmp_path / "search")
    project = os.path.join(directory, "listops")
    command = _command(directory, data_dir, "--no-export", max_trials=3, epochs=2, steps=4)
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_environment()
    )
    try:
        deadline = time.time() + 300
        while not _completed(project):
            assert process.poll() is None, "the search ended before a trial finished"
            assert time.time() < deadline, "no trial finished in time"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)  # no chance to clean up
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    finished = _completed(project)
    assert finished and len(finished) < 3, finished
    stamps = {
        t: os.path.getmtime(os.path.join(project, f"trial_{t}", "trial.json")) for t in finished
    }
    scores = {}
    for t in finished:
        with open(os.path.join(project, f"trial_{t}", "trial.json")) as f:
            scores[t] = json.load(f)["score"]

    result = _run(command, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming: {len(finished)} trial(s) done" in result.stdout
    assert _completed(project) == {"0", "1", "2"}
    for t in finished:  # not redone
        path = os.path.join(project, f"trial_{t}", "trial.json")
        assert os.path.getmtime(path) == stamps[t]
        with open(path) as f:
            assert json.load(f)["score"] == scores[t]
    with open(os.path.join(project, "results.json")) as f:
        rows = json.load(f)["rows"]
    assert len(rows) == 3 and all(r["status"] == "COMPLETED" for r in rows)
    assert os.path.exists(os.path.join(project, "best", "model.keras"))


def test_cli_search_writes_the_table_and_best_model(tmp_path, data_dir):
    # A 1-second budget: the first trial runs (and is cut short), no other
    # starts.
    command = _command(str(tmp_path), data_dir, "--no-export", "--max-seconds", "1", max_trials=5)
    result = _run(command)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| trial | status | hyperparameters |" in result.stdout
    project = tmp_path / "listops"
    assert (project / "results.md").exists() and (project / "results.csv").exists()
    table = (project / "results.md").read_text().strip().splitlines()
    assert len(table) == 3  # 1 trial
    assert "| completed (stopped by the time budget) |" in table[2]
    assert (project / "best" / "model.keras").exists()
    assert not (project / "best" / "export").exists()
