"""benchmarks/distributed_memory.py --quick: memory per device falls as
DistributedAttention's devices are added, and the results stay exact."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "distributed_memory.py")


def test_quick_run_spreads_memory_over_devices(tmp_path):
    output = tmp_path / "distributed"
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    # Logical CPUs even on a machine with a GPU: the trace numbers are checked.
    result = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--platform", "cpu", "--output", str(output)],
        capture_output=True, text=True, timeout=180, env=env, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

    payload = json.loads(output.with_suffix(".json").read_text())
    length = payload["config"]["length"]
    rows = payload["rows"]
    assert {(row["mode"], row["devices"]) for row in rows} == {
        ("fwd", 1), ("fwd", 2), ("fwd+bwd", 1), ("fwd+bwd", 2)
    }  # fmt: skip
    for row in rows:
        assert row["status"] == "ok", row
        assert row["kind"] == "cpu"
        assert row["shards"] == row["devices"]
        assert len(row["device_names"]) == row["devices"]
        # Every device ran part of the work: it has traced nodes and memory.
        assert all(n > 0 for n in row["traced_nodes"])
        assert all(p > 0 for p in row["trace_peak_bytes"])
        # Exact against the single-device exact attention (and gradients).
        assert max(row["max_abs_diff"].values()) < 1e-4, row["max_abs_diff"]
        # The largest buffer on a device is one shard's score block,
        # (batch=1, heads=4, Tq, Tk / devices) float32, and a device's peak
        # is at least that block.
        block = 4 * length * (length // row["devices"]) * 4
        assert row["score_block_bytes"] == block
        assert max(row["largest_bytes"]) == block
        assert min(row["trace_peak_bytes"]) >= block

    by_key = {(row["mode"], row["devices"]): row for row in rows}
    for mode in ("fwd", "fwd+bwd"):
        one = max(by_key[(mode, 1)]["trace_peak_bytes"])
        two = max(by_key[(mode, 2)]["trace_peak_bytes"])
        assert two < 0.75 * one, (mode, one, two)

    table = result.stdout
    assert "| mode | devices | shards | peak MiB / device (max) |" in table
    assert "| fwd | 2 | 2 |" in table
    assert "| fwd+bwd | 2 | 2 |" in table
    assert output.with_suffix(".md").read_text().strip() == table.strip()
