"""Memory per device of DistributedAttention as devices are added.

A fixed long sequence (default: batch 1, T = 4096, 4 heads x 32 head_dim,
float32, non-causal) is attended with
``keras_attention.layers.DistributedAttention(devices=...)`` on 1, 2 and 4
devices, one key/value shard per device (``--shards-per-device`` for more).
The attention core of the layer, ``DistributedAttention.attend`` on already
projected ``(B, T, H, D)`` tensors, is what runs: it is the layer's own
placement code (shard ``s`` on ``devices[s * len(devices) // num_shards]``,
the merge on the current device, here device 0), without the projections,
which do not depend on the number of devices. Each device count is measured
in its own worker subprocess (the script runs itself again with a hidden
``--worker-devices`` flag), because the devices have to be configured before
TensorFlow initializes them.

The computation is built in a ``tf.compat.v1`` graph and run in a
``tf.compat.v1.Session``, in two modes:

* ``fwd``      the attention output;
* ``fwd+bwd``  the output plus the gradients of ``sum(output * cotangent)``
  with respect to q, k and v (``tf.compat.v1.gradients`` with
  ``colocate_gradients_with_ops=True``, so each shard's backward runs on that
  shard's device).

What is measured:

* **On CPU** (no GPU, or ``--platform cpu``) the devices are logical CPUs
  (``tf.config.set_logical_device_configuration``). They share one allocator,
  so ``tf.config.experimental.get_memory_info`` has nothing per device (it
  returns zeros on CPU anyway). The memory figures come from TensorFlow's
  execution trace instead: one extra call runs with
  ``RunOptions(trace_level=FULL_TRACE)``, under which TensorFlow wraps the
  allocator of every kernel in a tracking allocator and records, per node,
  each allocation and each free with its time and size
  (``run_metadata.step_stats.dev_stats[d].node_stats[i].memory[j]
  .allocation_records``). The *peak* of a device is the maximum over time of
  the bytes allocated by that device's nodes and not yet freed (allocations
  are counted before frees that carry the same microsecond); the *largest
  buffer* is its largest single allocation. These are trace-derived
  live-buffer bytes, not an allocator's high-water mark: they count the
  tensors and scratch buffers the step's kernels allocate (in-place outputs
  that reuse an input's buffer are not counted twice), but not the fed
  inputs (which the client owns), and no copies of tensors that cross devices
  (logical CPUs share memory, so TensorFlow passes them without copying; on
  separate devices the query and the shard's keys/values, each ``B*T*H*D``
  floats at most, would be copied in).
* **On GPUs** the devices are the first N physical GPUs, and the peak is the
  allocator's: ``tf.config.experimental.get_memory_info(gpu)['peak']`` after
  ``reset_memory_stats``, around one untraced call (it includes the copies of
  the inputs). With ``--split-gpu-mib M``, a machine with fewer GPUs than N
  splits GPU 0 into N logical GPUs of M MiB each, each with its own
  allocator. The trace figures are reported next to it.

A device's largest buffer should be one shard's score block, ``B * H * Tq *
(Tk / shards) * 4`` bytes (the ``score block`` column): that is the quantity
sequence parallelism divides. Every call is also checked against the exact
single-device attention,
``keras_attention.ops.dot_product_attention(..., implementation="exact")``
(and its gradients), computed in the same worker on device 0: ``max |diff|``
is the largest absolute difference over the output (and the three gradients).
Times are the median wall time of untraced calls; logical CPUs share the
machine's cores, so on CPU adding devices does not make a call faster.

Usage (from the repository root)::

    python benchmarks/distributed_memory.py --quick     # CI-sized: T = 1024, 1 and 2 devices
    python benchmarks/distributed_memory.py             # T = 4096, 1, 2 and 4 devices
    python benchmarks/distributed_memory.py --length 8192 --devices 1,2,4,8 --modes fwd
    python benchmarks/distributed_memory.py --output benchmarks/results/distributed

``--output PATH`` writes ``PATH.md`` (the table) and ``PATH.json`` (every
measurement). Progress goes to stderr, the table to stdout. See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import device  # noqa: E402  (benchmarks/device.py: machine facts shared by the benchmarks)

REPO_ROOT = Path(__file__).resolve().parent.parent

MODES = ("fwd", "fwd+bwd")
DEFAULT_DEVICES = [1, 2, 4]
QUICK_DEVICES = [1, 2]
DEFAULT_LENGTH = 4096
QUICK_LENGTH = 1024
MIB = 1024**2
FLOAT32_BYTES = 4


def _progress(message):
    print(f"[distributed_memory] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Worker: one device count, in its own process; prints one JSON line.
# --------------------------------------------------------------------------


def configure_devices(tf, cfg, count):
    """Sets up `count` devices before TensorFlow initializes them.

    Returns `(kind, names)`: `"cpu"` or `"gpu"`, and `count` device names
    (`"/device:CPU:0"`, ...).
    """
    gpus = tf.config.list_physical_devices("GPU")
    use_gpu = cfg.platform == "gpu" or (cfg.platform == "auto" and gpus)
    if use_gpu:
        if not gpus:
            raise RuntimeError("--platform gpu, but TensorFlow sees no GPU")
        if len(gpus) < count:
            if not cfg.split_gpu_mib:
                raise RuntimeError(
                    f"{count} devices asked for, {len(gpus)} GPU(s) present; "
                    "--split-gpu-mib M splits GPU 0 into logical GPUs"
                )
            tf.config.set_logical_device_configuration(
                gpus[0],
                [
                    tf.config.LogicalDeviceConfiguration(
                        memory_limit=cfg.split_gpu_mib
                    )
                ]
                * count,
            )
        names = [d.name for d in tf.config.list_logical_devices("GPU")]
        return "gpu", names[:count]
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * count
    )
    names = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(names) != count:
        raise RuntimeError(f"asked for {count} logical CPUs, got {names}")
    return "cpu", names


def trace_memory(step_stats, devices, kind):
    """Per device: peak live bytes, largest allocation, traced node count.

    Uses the allocation records (allocations and frees, with times) of every
    node the trace lists for the device. On GPUs only the device's own
    allocators count (not pinned host memory).
    """
    found = {name: {"events": [], "nodes": 0} for name in devices}
    for dev_stats in step_stats.dev_stats:
        name = next((d for d in devices if dev_stats.device.endswith(d)), None)
        if name is None:  # Another device, or a GPU stream's timeline.
            continue
        entry = found[name]
        for node in dev_stats.node_stats:
            entry["nodes"] += 1
            for memory in node.memory:
                if kind == "gpu" and not memory.allocator_name.startswith("GPU"):
                    continue
                entry["events"].extend(
                    (record.alloc_micros, record.alloc_bytes)
                    for record in memory.allocation_records
                )
    result = {}
    for name, entry in found.items():
        # Allocations before frees at the same microsecond: an upper bound.
        events = sorted(entry["events"], key=lambda e: (e[0], e[1] < 0))
        live = peak = largest = 0
        for _, size in events:
            live += size
            peak = max(peak, live)
            largest = max(largest, size)
        result[name] = {
            "peak_bytes": peak,
            "largest_bytes": largest,
            "allocations": sum(1 for _, size in events if size > 0),
            "nodes": entry["nodes"],
        }
    return result


def _build_graph(tf, cfg, devices):
    """The graph: placeholders, the layer's sharded core and the exact one."""
    from keras_attention.layers import DistributedAttention
    from keras_attention.ops import dot_product_attention

    shape = (cfg.batch, cfg.length, cfg.heads, cfg.head_dim)
    num_shards = len(devices) * cfg.shards_per_device
    graph = tf.Graph()
    with graph.as_default(), tf.device(devices[0]):
        q, k, v, cotangent = (
            tf.compat.v1.placeholder(tf.float32, shape, name=name)
            for name in ("query", "key", "value", "cotangent")
        )
        layer = DistributedAttention(
            num_heads=cfg.heads,
            key_dim=cfg.head_dim,
            num_shards=num_shards,
            devices=list(devices),
        )
        if layer.shard_plan() != (num_shards, tuple(devices)):
            raise RuntimeError(f"unexpected shard plan {layer.shard_plan()}")
        out, _ = layer.attend(q, k, v, use_causal_mask=cfg.causal)
        exact = dot_product_attention(
            q, k, v, is_causal=cfg.causal, implementation="exact"
        )
        fetches = {"fwd": [out]}
        references = {"fwd": [exact]}
        if "fwd+bwd" in cfg.modes:
            grads = tf.compat.v1.gradients(
                out, [q, k, v], grad_ys=cotangent,
                colocate_gradients_with_ops=True,
            )  # fmt: skip
            exact_grads = tf.compat.v1.gradients(
                exact, [q, k, v], grad_ys=cotangent
            )
            fetches["fwd+bwd"] = [out, *grads]
            references["fwd+bwd"] = [exact, *exact_grads]
        init = tf.compat.v1.global_variables_initializer()
    return graph, (q, k, v, cotangent), fetches, references, init, num_shards


def _measure_mode(tf, sess, cfg, kind, devices, fetch, reference, feed):
    import numpy as np

    expected = sess.run(reference, feed)
    got = sess.run(fetch, feed)  # Also the warm-up call.
    names = ["output", "grad_query", "grad_key", "grad_value"][: len(fetch)]
    diffs = {
        name: float(np.max(np.abs(a - b))) for name, a, b in zip(names, got, expected)
    }
    times = []
    for _ in range(cfg.repeats):
        start = time.perf_counter()
        sess.run(fetch, feed)
        times.append(time.perf_counter() - start)

    allocator_peaks = None
    if kind == "gpu":
        short = [name.replace("/device:", "") for name in devices]
        for name in short:
            tf.config.experimental.reset_memory_stats(name)
        sess.run(fetch, feed)
        allocator_peaks = [
            tf.config.experimental.get_memory_info(name)["peak"] for name in short
        ]

    metadata = tf.compat.v1.RunMetadata()
    options = tf.compat.v1.RunOptions(
        trace_level=tf.compat.v1.RunOptions.FULL_TRACE
    )
    sess.run(fetch, feed, options=options, run_metadata=metadata)
    per_device = trace_memory(metadata.step_stats, devices, kind)
    idle = [name for name, stats in per_device.items() if not stats["allocations"]]
    if idle:
        raise RuntimeError(
            f"the trace shows no allocation on {idle}: the shards were not "
            "placed on every device"
        )
    return {
        "trace_peak_bytes": [per_device[d]["peak_bytes"] for d in devices],
        "largest_bytes": [per_device[d]["largest_bytes"] for d in devices],
        "traced_nodes": [per_device[d]["nodes"] for d in devices],
        "allocator_peak_bytes": allocator_peaks,
        "times_s": times,
        "median_s": statistics.median(times),
        "max_abs_diff": diffs,
    }


def run_worker(cfg):
    """Measures every mode for `cfg.worker_devices` devices; emits JSON."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "This benchmark needs the TensorFlow backend, got "
            f"KERAS_BACKEND={keras.backend.backend()!r}."
        )
    count = cfg.worker_devices
    kind, devices = configure_devices(tf, cfg, count)
    graph, inputs, fetches, references, init, num_shards = _build_graph(
        tf, cfg, devices
    )
    rng = np.random.default_rng(cfg.seed)
    shape = (cfg.batch, cfg.length, cfg.heads, cfg.head_dim)
    feed = {
        placeholder: rng.standard_normal(shape, dtype=np.float32)
        for placeholder in inputs
    }
    rows = []
    # No ConfigProto: the session then takes the context's configuration,
    # logical devices included (an explicit one would drop them).
    with tf.compat.v1.Session(graph=graph) as sess:
        sess.run(init)
        for mode in cfg.modes:
            _progress(f"{count} device(s), {mode}")
            result = _measure_mode(
                tf, sess, cfg, kind, devices, fetches[mode], references[mode], feed
            )
            rows.append(
                {
                    "status": "ok",
                    "mode": mode,
                    "devices": count,
                    "shards": num_shards,
                    "kind": kind,
                    "device_names": devices,
                    "tensorflow": tf.__version__,
                    "keras": keras.__version__,
                    **result,
                }
            )
    sys.stdout.write(json.dumps({"rows": rows}) + "\n")
    sys.stdout.flush()
    return rows


# --------------------------------------------------------------------------
# Parent: one worker per device count, then the table.
# --------------------------------------------------------------------------


def _worker_args(cfg, count):
    args = [
        "--worker-devices", str(count), "--length", str(cfg.length),
        "--batch", str(cfg.batch), "--heads", str(cfg.heads),
        "--head-dim", str(cfg.head_dim),
        "--shards-per-device", str(cfg.shards_per_device),
        "--modes", ",".join(cfg.modes), "--repeats", str(cfg.repeats),
        "--platform", cfg.platform, "--seed", str(cfg.seed),
    ]  # fmt: skip
    if cfg.split_gpu_mib:
        args += ["--split-gpu-mib", str(cfg.split_gpu_mib)]
    if cfg.causal:
        args.append("--causal")
    return args


def _failed_rows(cfg, count, status, message):
    return [
        {"status": status, "mode": mode, "devices": count, "message": message}
        for mode in cfg.modes
    ]


def measure(cfg, count):
    """Runs the worker for `count` devices; its rows, or failed rows."""
    command = [sys.executable, str(Path(__file__).resolve()), *_worker_args(cfg, count)]
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=cfg.timeout,
            env=env, cwd=REPO_ROOT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return _failed_rows(cfg, count, "timeout", f"over {cfg.timeout:g} s")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return _failed_rows(cfg, count, "error", tail or f"exit {done.returncode}")
    _progress(f"{count} device(s) done in {time.perf_counter() - started:.1f} s")
    return json.loads(lines[-1])["rows"]


def score_block_bytes(cfg, shards):
    """Bytes of one shard's float32 scores, `B * H * Tq * ceil(Tk / shards)`."""
    return cfg.batch * cfg.heads * cfg.length * -(-cfg.length // shards) * FLOAT32_BYTES


def primary_peak(row):
    """The per-device peaks the table leads with: the allocator's on GPUs."""
    return row["allocator_peak_bytes"] or row["trace_peak_bytes"]


def _mib(value):
    return f"{value / MIB:.1f}"


def table_markdown(cfg, rows):
    """The markdown report: header lines and one table over modes and counts."""
    ok = [row for row in rows if row["status"] == "ok"]
    kind = ok[0]["kind"] if ok else "?"
    gpu = kind == "gpu"
    versions = (
        f"TensorFlow {ok[0]['tensorflow']}, Keras {ok[0]['keras']}" if ok else "?"
    )
    source = (
        "allocator peak, `tf.config.experimental.get_memory_info(gpu)['peak']`"
        if gpu
        else "peak of live bytes allocated by the device's kernels, from the "
        "allocation records of a FULL_TRACE run (not an allocator peak: "
        "logical CPUs share one allocator)"
    )
    lines = [
        "# DistributedAttention: memory per device",
        "",
        f"- Machine: {device.cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}; "
        f"Python {platform.python_version()}, {versions}",
        f"- Problem: batch {cfg.batch}, T = {cfg.length} (Tq = Tk), "
        f"{cfg.heads} heads x {cfg.head_dim} head_dim, float32, "
        f"{'causal' if cfg.causal else 'non-causal'}; "
        f"{cfg.shards_per_device} key/value shard(s) per device",
        f"- Devices: {'GPUs' if gpu else 'logical CPUs'}; "
        "`DistributedAttention(devices=...).attend` in a tf.compat.v1 graph",
        f"- Peak per device: {source}",
        f"- Time: median of {cfg.repeats} untraced calls"
        + ("" if gpu else " (logical CPUs share the same cores)"),
        "",
    ]
    header = ["mode", "devices", "shards", "peak MiB / device (max)", "vs 1 device"]
    header += ["trace peak MiB (max)"] if gpu else []
    header += [
        "peak MiB of each device", "largest buffer MiB", "score block MiB",
        "ms / call", "max abs diff vs exact",
    ]  # fmt: skip
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    baseline = {
        row["mode"]: max(primary_peak(row)) for row in ok if row["devices"] == 1
    }
    for row in rows:
        if row["status"] != "ok":
            cells = [row["mode"], str(row["devices"]), "", row["status"]]
            cells += [""] * (len(header) - len(cells))
            lines.append("| " + " | ".join(cells) + " |")
            continue
        peaks = primary_peak(row)
        base = baseline.get(row["mode"])
        cells = [
            row["mode"],
            str(row["devices"]),
            str(row["shards"]),
            _mib(max(peaks)),
            f"{max(peaks) / base:.2f}" if base else "—",
        ]
        if gpu:
            cells.append(_mib(max(row["trace_peak_bytes"])))
        cells += [
            " / ".join(_mib(p) for p in peaks),
            _mib(max(row["largest_bytes"])),
            _mib(score_block_bytes(cfg, row["shards"])),
            f"{row['median_s'] * 1e3:.1f}",
            f"{max(row['max_abs_diff'].values()):.1e}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    failures = [row for row in rows if row["status"] != "ok"]
    if failures:
        lines.append("")
        lines += [
            f"- {row['mode']}, {row['devices']} device(s): {row['status']}: "
            f"{row['message']}"
            for row in failures
        ]
    lines += [
        "",
        "peak MiB / device (max): the largest per-device peak; vs 1 device: that "
        "peak over the same mode's peak on one device. score block: one shard's "
        "float32 scores, B·H·Tq·(Tk/shards)·4 bytes. max abs diff: against "
        '`dot_product_attention(..., implementation="exact")` on one device, '
        "over the output (and, in fwd+bwd, the gradients for q, k, v).",
    ]
    return "\n".join(lines)


def write_outputs(cfg, rows, markdown):
    base = Path(cfg.output)
    if base.suffix in (".md", ".json"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".md").write_text(markdown + "\n")
    config = {k: v for k, v in vars(cfg).items() if k not in ("worker_devices", "output")}
    payload = {"config": config, "rows": rows}
    base.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    _progress(f"wrote {base.with_suffix('.md')} and {base.with_suffix('.json')}")


def run_benchmark(cfg):
    rows = []
    for count in cfg.devices:
        _progress(f"measuring {count} device(s), T = {cfg.length}")
        rows += measure(cfg, count)
    rows.sort(key=lambda row: (cfg.modes.index(row["mode"]), row["devices"]))
    for row in rows:
        if row["status"] == "ok":
            row["score_block_bytes"] = score_block_bytes(cfg, row["shards"])
    markdown = table_markdown(cfg, rows)
    print(markdown, flush=True)
    if cfg.output:
        write_outputs(cfg, rows, markdown)
    return rows


def _int_list(text):
    try:
        values = [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"need positive integers: {text!r}")
    return sorted(set(values))


def _mode_list(text):
    modes = [m for m in text.replace(",", " ").split() if m]
    bad = sorted(set(modes) - set(MODES))
    if bad or not modes:
        raise argparse.ArgumentTypeError(
            f"unknown mode(s) {bad}; choose from {', '.join(MODES)}"
        )
    return [m for m in MODES if m in modes]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="See the module docstring and benchmarks/README.md for what "
        "is measured.",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help=f"CI-sized: T = {QUICK_LENGTH}, devices "
        f"{','.join(map(str, QUICK_DEVICES))}, 3 timed calls",
    )  # fmt: skip
    parser.add_argument(
        "--length", type=int, default=None,
        help=f"sequence length T (default: {DEFAULT_LENGTH}; --quick: {QUICK_LENGTH})",
    )  # fmt: skip
    parser.add_argument(
        "--devices", type=_int_list, default=None,
        help="device counts, e.g. 1,2,4 (default: 1,2,4; --quick: 1,2)",
    )  # fmt: skip
    parser.add_argument(
        "--modes", type=_mode_list, default=list(MODES),
        help="fwd, fwd+bwd or both, comma separated (default: both)",
    )  # fmt: skip
    parser.add_argument("--batch", type=int, default=1, help="(default: %(default)s)")
    parser.add_argument("--heads", type=int, default=4, help="(default: %(default)s)")
    parser.add_argument("--head-dim", type=int, default=32,
                        help="(default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--shards-per-device", type=int, default=1,
        help="key/value shards per device (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--causal", action="store_true", help="causal attention")
    parser.add_argument(
        "--repeats", type=int, default=None,
        help="timed calls per cell (default: 5; --quick: 3)",
    )  # fmt: skip
    parser.add_argument(
        "--platform", choices=["auto", "cpu", "gpu"], default="auto",
        help="auto: GPUs when TensorFlow sees one, else logical CPUs "
        "(default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--split-gpu-mib", type=int, default=0, metavar="M",
        help="with fewer GPUs than devices, split GPU 0 into logical GPUs "
        "of M MiB each (default: off)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=float, default=600.0,
        help="seconds per device count (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument(
        "--output", default=None, metavar="PATH",
        help="also write PATH.md and PATH.json",
    )  # fmt: skip
    # Internal: the parent runs this script again, once per device count.
    parser.add_argument("--worker-devices", type=int, help=argparse.SUPPRESS)
    cfg = parser.parse_args(argv)
    if cfg.length is None:
        cfg.length = QUICK_LENGTH if cfg.quick else DEFAULT_LENGTH
    if cfg.devices is None:
        cfg.devices = QUICK_DEVICES if cfg.quick else DEFAULT_DEVICES
    if cfg.repeats is None:
        cfg.repeats = 3 if cfg.quick else 5
    for name in ("length", "batch", "heads", "head_dim", "shards_per_device", "repeats"):
        if getattr(cfg, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return cfg


def main(argv=None):
    """Runs the benchmark (or, with the hidden flag, one worker); its rows."""
    cfg = parse_args(argv)
    if cfg.worker_devices:
        # Measure the working tree, not an installed copy.
        sys.path.insert(0, str(REPO_ROOT))
        return run_worker(cfg)
    return run_benchmark(cfg)


if __name__ == "__main__":
    sys.exit(0 if all(row["status"] == "ok" for row in main()) else 1)
