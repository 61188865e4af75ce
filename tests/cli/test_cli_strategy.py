"""`keras-attention fit --strategy mirrored|multiworker|tpu`: usage errors
before any work, the strategy in the resume check and in metrics.json, and
one real run under `MirroredStrategy` on two logical CPUs."""

import json
import os

import pytest

from cli_runner import run_cli
from keras_attention import cli
from keras_attention.cli import checkpoint
from keras_attention.cli import fit
from keras_attention.cli.options import model_options
from keras_attention.tasks import get_task

# The evaluation splits hold one whole batch (ListOps evaluates in batches
# of 64): Keras 3.15 builds the model under a strategy from the first
# evaluation batch averaged over replicas, which fails when that batch is
# smaller than the global batch and a replica's share of it is empty.
TINY = [
    "--option", "min_length=8", "--option", "max_length=32",
    "--option", "train_size=128", "--option", "validation_size=64",
    "--option", "test_size=64",
    "--hidden-dim", "16", "--heads", "2", "--layers", "1", "--batch-size", "16",
]  # fmt: skip


def _main(arguments, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main([str(a) for a in arguments])
    except SystemExit as exit:  # argparse's own usage errors
        code = exit.code
    return code, capsys.readouterr()


@pytest.mark.parametrize(
    "arguments,environment,message",
    [
        (
            ["--strategy", "gpus"], {},
            "--strategy must be one of mirrored, multiworker, tpu (or left out: one device). Received: --strategy 'gpus'",
        ),
        (
            ["--devices", "2"], {},
            "--devices is only used with --strategy mirrored (multiworker reads its cluster from TF_CONFIG, "
            "tpu uses every TPU core). Received: --devices 2 with --strategy None",
        ),
        (
            ["--strategy", "tpu", "--devices", "2"], {},
            "--devices is only used with --strategy mirrored",
        ),
        (["--strategy", "mirrored", "--devices", "0"], {}, "--devices must be a positive integer. Received: --devices 0"),
        (
            ["--strategy", "multiworker"], {"TF_CONFIG": None},
            "--strategy multiworker: `get_strategy`: `TF_CONFIG` must describe the cluster for the multiworker "
            "strategy, e.g. {\"cluster\": {\"worker\": [\"host1:12345\", \"host2:12345\"]}, \"task\": "
            "{\"type\": \"worker\", \"index\": 0}}. Received: no TF_CONFIG environment variable",
        ),
        (
            ["--strategy", "multiworker"], {"TF_CONFIG": "{not json"},
            "--strategy multiworker: `get_strategy`: `TF_CONFIG` must be JSON with cluster.worker",
        ),
        (
            ["--strategy", "tpu"], {"TPU_NAME": None},
            "--strategy tpu: `get_strategy`: `name` 'tpu' needs a reachable TPU (a TPU VM, or `devices` naming "
            "the TPU / its grpc:// address). Received: no TPU found",
        ),
        # The strategy is checked before the other options' values are used.
        (["--strategy", "nope", "--epochs", "0"], {}, "--strategy must be one of"),
    ],
)  # fmt: skip
def test_bad_strategy_values_exit_2_before_any_work(arguments, environment, message, tmp_path, monkeypatch, capsys):
    for key, value in environment.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    code, captured = _main(["fit", *arguments], tmp_path, monkeypatch, capsys)
    assert code == 2, (captured.out, captured.err)
    assert message in captured.err, captured.err
    assert "Traceback" not in captured.err
    assert "loading data" not in captured.out
    assert os.listdir(tmp_path) == []  # no output folder, no data folder


def test_tpu_without_a_tpu_from_the_console_script(tmp_path):
    result = run_cli("fit", "--strategy", "tpu", cwd=tmp_path, env={"TPU_NAME": None}, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "keras-attention fit: error: --strategy tpu: `get_strategy`: `name` 'tpu' needs a reachable TPU" in result.stderr
    assert "Traceback" not in result.stderr and os.listdir(tmp_path) == []


def test_the_strategy_is_part_of_the_run_configuration(tmp_path, monkeypatch, capsys):
    # An unfinished run trained under `mirrored` is not resumed without it.
    output = tmp_path / "run"
    args = cli.build_parser().parse_args(["fit", "--output", str(output), "--strategy", "mirrored"])
    task = get_task(args.task)
    config = fit._configuration(args, task, "listops", None, task.options(model_options(args)))
    assert config["strategy"] == "mirrored"
    (output / "backup").mkdir(parents=True)
    (output / "backup" / checkpoint.STATE).write_text(json.dumps({"epoch": 1, "config": config, "weights": None}))
    code, captured = _main(["fit", "--output", output], tmp_path, monkeypatch, capsys)
    assert code == 2, (captured.out, captured.err)
    assert "holds an unfinished run with other settings" in captured.err
    assert 'strategy: "mirrored" -> null' in captured.err
    # Without a strategy the configuration says so (`null`), so runs
    # checkpointed before the option existed resume as they did.
    args = cli.build_parser().parse_args(["fit"])
    assert fit._configuration(args, task, "listops", None, {})["strategy"] is None


def test_fit_under_mirrored_strategy_on_two_logical_cpus(tmp_path):
    output = tmp_path / "run"
    result = run_cli(
        "fit", "--strategy", "mirrored", "--devices", "2", "--data-dir", tmp_path / "tfds",
        "--epochs", "1", "--steps", "3", "--output", output, "--maps", "0", "--no-export", *TINY,
        cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": ""}, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    assert "without XLA under --strategy mirrored (2 replica(s))" in result.stdout
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["strategy"] == "mirrored"
    assert metrics["replicas"] == 2
    # Keras cannot compile the cross-replica step of two CPU replicas with
    # XLA: `compile_model` turned it off (and said so).
    assert metrics["jit_compile"] is False
    assert 0 <= metrics["test"]["accuracy"] <= 1 and metrics["test"]["loss"] > 0
    assert (output / "model.keras").is_file() and not (output / "backup").exists()
    history = (output / "history.csv").read_text().splitlines()
    assert len(history) == 2 and "loss" in history[0]


@pytest.mark.slow
def test_fit_under_multi_worker_strategy_with_two_workers(tmp_path):
    # Two `keras-attention fit --strategy multiworker` processes on
    # 127.0.0.1 (free ports), under a hard deadline: the chief writes
    # --output, the other worker trains with it and leaves nothing behind.
    from cli_runner import script
    from processes import free_ports
    from processes import run_processes

    output = tmp_path / "run"
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    arguments = [
        "fit", "--strategy", "multiworker", "--data-dir", str(tmp_path / "tfds"), "--epochs", "1",
        "--steps", "3", "--output", str(output), "--maps", "0", "--no-export", *TINY,
    ]  # fmt: skip
    commands = {
        f"worker{index}": (
            script() + arguments,
            {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})},
        )
        for index in range(2)
    }
    # Both workers generate the data: the first run prepares it alone.
    prepared = run_cli("fit", "--data-dir", tmp_path / "tfds", "--epochs", "1", "--steps", "1", "--output",
                       tmp_path / "single", "--maps", "0", "--no-export", *TINY, timeout=300)  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    failures = run_processes(commands, str(tmp_path), deadline=300)
    assert failures == [], "\n".join(failures)
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["strategy"] == "multiworker" and metrics["replicas"] == 2
    assert metrics["jit_compile"] is False
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert f"wrote {output / 'model.keras'}" in logs[0]
    assert "trained as a non-chief worker; the chief wrote the run folder" in logs[1]
    # The same training on both workers: the same final line of metrics.
    epoch_lines = [next(line for line in log.splitlines() if line.startswith("3/3 ")) for log in logs]
    assert epoch_lines[0].split(" - ")[2:] == epoch_lines[1].split(" - ")[2:]
