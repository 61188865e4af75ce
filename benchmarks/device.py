"""The device a benchmark worker computes on, how its memory is measured, and
how to wait for a call's outputs: shared by benchmarks/attention.py and
benchmarks/variants.py.

TensorFlow places every op on the first GPU it sees, and on the CPU when it
sees none; so do these benchmarks:

* `describe(tf)` names that device: ``{"kind": "gpu" or "cpu", "name": ...}``.
  The parent scripts never import TensorFlow: `probe()` runs this file in a
  subprocess (``python benchmarks/device.py`` prints the description as one
  JSON line).
* `MemoryMeter` takes the peak memory of a worker's measured calls. On CPU:
  the worker's peak resident set (``ru_maxrss``) and its resident size just
  before the first call, as these benchmarks always measured it. On GPU:
  TensorFlow's allocator statistics for ``GPU:0``
  (``tf.config.experimental.reset_memory_stats`` once the step is compiled
  and warm, ``get_memory_info(...)["peak"]`` after the timed calls), i.e. the
  bytes TensorFlow had in use on the device, not what it reserved there.
* `sync(outputs)` returns once a call's outputs are computed.

``CUDA_VISIBLE_DEVICES=-1`` benchmarks the CPU of a machine with a GPU.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

GIB = 1024**3
MIB = 1024**2
GPU = "GPU:0"  # The device TensorFlow places ops on when it sees a GPU.

# What the memory columns of a table hold, per device kind: the result fields
# (peak, delta) they read, their headers, and the sentence of the footer.
MEMORY = {
    "cpu": {
        "fields": ("peak_rss_mib", "delta_rss_mib"),
        "columns": ("peak RSS MiB", "Δ RSS MiB"),
        "measure": "resident memory of the worker process (ru_maxrss)",
    },
    "gpu": {
        "fields": ("peak_gpu_mib", "delta_gpu_mib"),
        "columns": ("peak GPU MiB", "Δ GPU MiB"),
        "measure": "TensorFlow's GPU allocator, bytes in use on GPU:0 "
        "(get_memory_info peak over the timed calls)",
    },
}


# --------------------------------------------------------------------------
# The host: processor and resident memory
# --------------------------------------------------------------------------


def status_bytes(field, pid="self"):
    """A size field ("VmRSS", "VmSize") of /proc/PID/status, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # Reported in kB.
    except (OSError, ValueError):
        pass
    return None


def peak_rss_bytes():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # KiB on Linux


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------
# The device
# --------------------------------------------------------------------------


def describe(tf):
    """The device TensorFlow computes on: a JSON-ready dict.

    Keys: kind ("gpu" or "cpu"), name (the GPU's model, or the CPU's from
    /proc/cpuinfo), gpus (how many TensorFlow sees); on GPU also
    compute_capability ("9.0", where known) and tf32 (whether float32
    matmuls and convolutions may run in TensorFloat-32, TensorFlow's default).
    """
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return {"kind": "cpu", "name": cpu_model(), "gpus": 0}
    try:
        details = tf.config.experimental.get_device_details(gpus[0])
    except Exception:  # Details are best effort; the device is still a GPU.
        details = {}
    capability = details.get("compute_capability")
    return {
        "kind": "gpu",
        "name": details.get("device_name") or gpus[0].name,
        "gpus": len(gpus),
        "compute_capability": ".".join(map(str, capability)) if capability else None,
        "tf32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
    }


def probe(timeout=300):
    """`describe` as seen by a fresh Python running this file.

    The benchmarks' parent processes call this once, so that they choose
    their defaults (dtypes, lengths) for the device without importing
    TensorFlow. When the probe fails the device is taken to be the CPU, and
    the reason is kept under "probe_error".
    """
    env = dict(os.environ)
    env.setdefault("KERAS_BACKEND", "tensorflow")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve())],
            capture_output=True, text=True, timeout=timeout, env=env,
        )  # fmt: skip
        for line in reversed(done.stdout.splitlines()):
            try:
                found = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(found, dict) and found.get("kind") in MEMORY:
                return found
        error = f"exit code {done.returncode}: {done.stderr.strip()[-300:]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {"kind": "cpu", "name": cpu_model(), "gpus": 0, "probe_error": error}


def summary(info):
    """One line naming the device, for a table's header."""
    if info["kind"] == "gpu":
        extras = []
        if info.get("compute_capability"):
            extras.append(f"compute capability {info['compute_capability']}")
        if info.get("tf32") is not None:
            extras.append(
                "TensorFloat-32 " + ("on" if info["tf32"] else "off") + " for float32"
            )
        count = f", 1 of {info['gpus']} GPUs" if info.get("gpus", 1) > 1 else ""
        text = f"GPU {info['name']}{count}"
        if extras:
            text += f" ({', '.join(extras)})"
    else:
        text = f"CPU {info['name']}"
        if info.get("probe_error"):
            text += f" (device probe failed: {info['probe_error'][:200]})"
    return f"{text}; memory columns: {MEMORY[info['kind']]['measure']}"


def memory_cells(info, result):
    """The (peak, delta) memory values of `result` for a table, or None each."""
    return tuple(result.get(field) for field in MEMORY[info["kind"]]["fields"])


# --------------------------------------------------------------------------
# Measuring a worker's calls
# --------------------------------------------------------------------------


class MemoryMeter:
    """The peak memory of a worker's measured calls.

    `start()` just before the first call (after imports, building and input
    creation), `before_timing()` once the step is compiled and warm, and
    `result()` after the timed calls; result() has the resident-memory fields
    (peak_rss_mib, baseline_rss_mib, delta_rss_mib) always and, on GPU, the
    allocator's (peak_gpu_mib, baseline_gpu_mib, delta_gpu_mib).
    """

    def __init__(self, tf, kind):
        self.tf = tf
        self.kind = kind
        self.baseline_rss = None
        self.baseline_gpu = None

    def start(self, max_memory_gib):
        """Records the baseline resident size; on CPU also caps the address
        space at the mapped size plus `max_memory_gib` plus 1 GiB.

        Returns that cap in bytes, or None when none was set. (On GPU there is
        no cap: the CUDA driver maps far more address space than a process
        touches, and TensorFlow reports a full device as
        ResourceExhaustedError by itself.)
        """
        self.baseline_rss = status_bytes("VmRSS") or peak_rss_bytes()
        vm_size = status_bytes("VmSize")
        if self.kind != "cpu" or not max_memory_gib or vm_size is None:
            return None
        # Backstop for allocations too fast for the parent's RSS watch: cap the
        # address space at what is mapped now plus the budget plus 1 GiB slack
        # (TensorFlow maps far more virtual memory than it touches, so a plain
        # RLIMIT_AS of the budget itself would fail at import).
        limit = vm_size + int((max_memory_gib + 1) * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        return limit

    def before_timing(self):
        """On GPU: restarts the allocator's peak at what is in use now (the
        inputs and weights), so the peak is that of the timed calls, without
        what compilation and autotuning held for a while."""
        if self.kind == "gpu":
            self.tf.config.experimental.reset_memory_stats(GPU)
            self.baseline_gpu = self.tf.config.experimental.get_memory_info(GPU)[
                "current"
            ]

    def result(self):
        peak = peak_rss_bytes()
        fields = {
            "peak_rss_mib": peak / MIB,
            "baseline_rss_mib": self.baseline_rss / MIB,
            "delta_rss_mib": (peak - self.baseline_rss) / MIB,
        }
        if self.kind == "gpu":
            gpu_peak = self.tf.config.experimental.get_memory_info(GPU)["peak"]
            baseline = self.baseline_gpu or 0
            fields.update(
                peak_gpu_mib=gpu_peak / MIB,
                baseline_gpu_mib=baseline / MIB,
                delta_gpu_mib=(gpu_peak - baseline) / MIB,
            )
        return fields


def place(tf, info, tensors):
    """`tensors` (a list) on the measured device: copied to GPU:0 on GPU, so
    that no timed call copies its inputs from the host; unchanged on CPU."""
    if info["kind"] != "gpu":
        return list(tensors)
    with tf.device(GPU):
        return [tf.identity(t) for t in tensors]


def sync(outputs):
    """Waits for `outputs` (nested tensors): on GPU for every pending op
    (`tf.test.experimental.sync_devices`, no copy to the host), on CPU by
    reading each output (a no-op copy)."""
    import tensorflow as tf

    tensors = [t for t in tf.nest.flatten(outputs) if t is not None]
    # None: e.g. the gradient of an unused key/value.
    if any("GPU" in (getattr(t, "device", "") or "") for t in tensors):
        tf.test.experimental.sync_devices()
        return
    for tensor in tensors:
        tensor.numpy()


def layer_policy(dtype):
    """The Keras dtype policy a layer row runs under for input `dtype`:
    mixed precision (float32 weights, computation in `dtype`) for float16
    and bfloat16, the plain dtype otherwise."""
    return f"mixed_{dtype}" if dtype in ("float16", "bfloat16") else dtype


def default_dtypes(info):
    """float32 on CPU (where half precision is emulated and slow), float32,
    float16 and bfloat16 on GPU."""
    return ["float32", "float16", "bfloat16"] if info["kind"] == "gpu" else ["float32"]


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow

    print(json.dumps(describe(tensorflow)), flush=True)
