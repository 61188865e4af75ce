"""Every script in benchmarks/ compiles on this Python, the real-data
checks skip cleanly without the prepared data, and the attention and variants
benchmarks run their smallest configuration on whatever device there is."""

import glob
import json
import os
import py_compile
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "*.py")))


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_script_compiles(script, tmp_path):
    py_compile.compile(script, cfile=str(tmp_path / "compiled.pyc"), doraise=True)


def test_real_data_checks_skip_without_data(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "real_data.py"), "--data-dir", str(tmp_path),
         "--checks", "mnist", "loso"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| mnist | skipped: mnist not in" in result.stdout
    assert "| loso | skipped: spoken_digit not in" in result.stdout


def _run(script, *args, timeout=240):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", script), *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _memory_columns(stdout):
    """The memory column headers the table must carry for the device named
    in its header (a CPU in CI; a GPU where TensorFlow sees one)."""
    device_lines = [line for line in stdout.splitlines() if line.startswith("- Device: ")]
    assert len(device_lines) == 1, stdout
    if device_lines[0].startswith("- Device: GPU "):
        assert "memory columns: TensorFlow's GPU allocator" in device_lines[0]
        return "peak GPU MiB", "Δ GPU MiB"
    assert device_lines[0].startswith("- Device: CPU ")
    assert "memory columns: resident memory of the worker process" in device_lines[0]
    return "peak RSS MiB", "Δ RSS MiB"


TINY = ["--lengths", "16", "--repeats", "1", "--min-time", "0", "--warmup", "0",
        "--timeout", "200", "--dtypes", "float32"]  # fmt: skip


@pytest.mark.slow
def test_attention_smallest_run_prints_the_device_table():
    stdout = _run("attention.py", "--only", "keras.dpa", "--modes", "fwd",
                  "--matmul-size", "64", *TINY)  # fmt: skip
    peak, delta = _memory_columns(stdout)
    assert f"| % matmul | {peak} | {delta} | runs |" in stdout
    assert "- Matmul roofline: " in stdout and "float32 matmul under XLA" in stdout
    row = [line for line in stdout.splitlines() if line.startswith("| 16 | `keras.dpa` |")]
    assert len(row) == 1 and "| 1.00× |" in row[0], stdout


@pytest.mark.slow
def test_variants_smallest_run_prints_the_device_table():
    stdout = _run("variants.py", "--only", "keras.mha,full", *TINY)
    peak, delta = _memory_columns(stdout)
    assert f"| median ms | {peak} | {delta} | memory vs keras |" in stdout
    assert "| 16 | `full` |" in stdout and "| `full` | 1.00× |" in stdout


def _worker(script, *args):
    stdout = _run(script, "--worker", *args, "--length", "16", "--repeats", "1",
                  "--min-time", "0", "--warmup", "0", "--timeout", "200",
                  "--max-memory-gib", "0")  # fmt: skip
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, args, dtype",
    [
        ("attention.py", ["bench", "--impl", "ka.mha_layer", "--mode", "fwd+bwd"], "bfloat16"),
        ("attention.py", ["bench", "--impl", "keras.mha_core", "--mode", "fwd"], "float16"),
        ("variants.py", ["--row", "keras.mha"], "float16"),
    ],
    ids=["attention-layer-bfloat16", "attention-keras-core-float16", "variants-keras-float16"],
)
def test_a_dtype_row_computes_in_that_dtype(script, args, dtype):
    result = _worker(script, *args, "--dtype", dtype)
    assert result["status"] == "ok", result
    assert result["output_dtype"] == dtype
    assert result["peak_rss_mib"] > 0 and result["device"] in ("cpu", "gpu")


def test_training_benchmark_counts_this_process_and_the_machine():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import training
    finally:
        sys.path.pop(0)
    busy, steal = training._machine_seconds()
    cpu = training._cpu_seconds()
    total = 0
    while training._cpu_seconds() - cpu < 0.3:  # burn 0.3 s of this process's CPU
        total += sum(range(1000))
    busy_after, steal_after = training._machine_seconds()
    assert total > 0
    # The machine's busy time includes this process's 0.3 s (clock ticks of
    # 10 ms: allow two ticks of rounding); steal never goes backwards.
    assert busy_after - busy >= 0.28
    assert steal_after >= steal >= 0.0


@pytest.mark.slow  # four fresh TensorFlow processes (about 11 s)
def test_compile_time_smallest_run_prints_its_table():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "compile_time.py"), "--lengths", "64", "--modes", "fwd"],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| 64 |")]
    assert [row[3].strip() for row in rows] == ["`keras.dpa`", "`ka.chunked`"]
    for row in rows:
        trace, xla, total = (float(row[i]) for i in (4, 5, 6))
        assert trace > 0 and xla >= 0 and abs(total - (trace + xla)) < 0.011
    assert rows[0][7].strip() == "1.00x"


def test_speech_enhancement_skips_without_data(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "speech_enhancement.py"), "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"skipped: spoken_digit not in {tmp_path}")


def test_object_detection_skips_without_data(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "object_detection.py"), "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"skipped: mnist not in {tmp_path}")
