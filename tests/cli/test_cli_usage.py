"""Command-line usage: help, list, exit codes and clear errors."""

import os

import pytest

from cli_runner import run_cli
from keras_attention import cli

SUBCOMMANDS = ["fit", "compare", "tune", "evaluate", "predict", "export", "list", "demo"]


def test_help_lists_every_subcommand():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name):
    result = run_cli(name, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: keras-attention " + name in result.stdout


def test_no_command_prints_help_and_exits_2():
    result = run_cli()
    assert result.returncode == 2
    assert "COMMAND" in result.stdout


def test_list_shows_variants_and_tasks():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in ["multi_head", "linear", "low_rank", "regional", "sparse"]:
        assert any(line.split()[0] == name for line in lines if line.startswith("  "))
    assert any(line.strip().startswith("listops") for line in lines)


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["fit", "--attention", "nope"], "unknown attention 'nope'. Expected one of: additive"),
        (["fit", "--task", "nope"], "invalid choice"),
        (["fit", "--epochs", "0"], "--epochs must be positive"),
        (["fit", "--dropout", "1.5"], "--dropout must be in [0, 1)"),
        (["fit", "--attention-kwargs", "{bad"], "--attention-kwargs must be a JSON object"),
        (["fit", "--option", "novalue"], "--option takes KEY=VALUE"),
        (["compare", "--attention", "multi_head", "nope"], "unknown attention 'nope'"),
        (["evaluate", "--model", "/nonexistent/run"], "no model at"),
        (["predict", "--model", "/nonexistent/run", "x"], "no model at"),
        (["export", "--model", "/nonexistent/m.keras", "--output", "x"], "no model at"),
        # Task options: names and values are checked before any work.
        (["fit", "--option", "epoch=3"], "unknown option 'epoch'. Did you mean 'epochs'? Options: batch_size,"),
        (["fit", "--option", "epochs=-1"], "option 'epochs' must be a positive integer. Received: epochs=-1"),
        (["fit", "--option", "batch_size=0"], "option 'batch_size' must be a positive integer"),
        (["fit", "--option", "dropout=2"], "option 'dropout' must be a number in [0, 1)"),
        (["fit", "--option", "pooling=3"], "option 'pooling' must be a string"),
        (["compare", "--attention", "linear", "--option", "max_lenght=64"], "Did you mean 'max_length'?"),
        (["tune", "--option", "learning_rat=0.1"], "Did you mean 'learning_rate'?"),
        # Model construction errors, found before the data is read.
        (["fit", "--heads", "3", "--hidden-dim", "16"], "`num_heads` must divide hidden_dim=16"),
        (["fit", "--attention-kwargs", '{"nonsense": 1}'], "Unrecognized keyword arguments passed to MultiHeadAttention"),
        (["fit", "--option", "pooling=nope"], "pooling"),
        # Data folders: nothing is downloaded, nothing created.
        (["fit", "--task", "image", "--data-dir", "missing"], "`data_dir` 'missing' does not exist"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(arguments, message, tmp_path, monkeypatch, capsys):
    # In-process (`main` is what the console script runs): an exception
    # escaping it would fail the test with its traceback.
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main([str(a) for a in arguments])
    except SystemExit as exit:  # argparse's own usage errors
        code = exit.code
    captured = capsys.readouterr()
    assert code == 2, (captured.out, captured.err)
    assert message in captured.err
    assert os.listdir(tmp_path) == []  # no output folder, no data folder


def test_a_usage_error_from_the_console_script(tmp_path):
    result = run_cli("fit", "--option", "epoch=3", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "unknown option 'epoch'. Did you mean 'epochs'?" in result.stderr
    assert "Traceback" not in result.stderr and os.listdir(tmp_path) == []


def test_a_data_dir_without_the_dataset_is_a_usage_error(tmp_path):
    empty = tmp_path / "tfds"
    empty.mkdir()
    result = run_cli("fit", "--task", "text", "--data-dir", empty, "--output", tmp_path / "run", timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "dataset 'glue/sst2' is not prepared in" in result.stderr and str(empty) in result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(empty) == [] and not os.path.exists(tmp_path / "run")
