"""Benchmark dot-product attention: keras_attention against Keras, side by side.

Every implementation runs on the same inputs (batch 1, 4 heads x 64 head_dim,
float32 by default) across sequence lengths, in two modes:

* ``fwd``      the attention output only;
* ``fwd+bwd``  the output plus the gradient of ``sum(output * cotangent)`` with
  respect to q, k and v (and, for layer rows, the layer inputs and weights),
  taken with ``tf.GradientTape`` inside the compiled function.

Each step is compiled with ``tf.function(jit_compile=True)`` (XLA) unless
``--no-xla`` is given. Every (implementation, mode, length) is measured in a
fresh worker subprocess, so peak resident memory is per configuration; the
worker is killed when its resident memory goes over ``--max-memory-gib`` or it
runs longer than ``--timeout`` seconds, and the longer lengths of that series
are then skipped. A plain float32 matmul, measured once in the same run, gives
the roofline that each row's achieved GFLOP/s is compared with.

Implementations (select with ``--only``):

  ka.exact        keras_attention.ops.dot_product_attention(implementation="exact")
  ka.chunked      keras_attention.ops.dot_product_attention(implementation="chunked")
  keras.dpa       keras.ops.dot_product_attention
  keras.mha_core  keras.layers.MultiHeadAttention._compute_attention on projected
                  (B, T, H, D) tensors, explicit einsum -> softmax -> einsum path
  keras.mha_layer keras.layers.MultiHeadAttention(num_heads, key_dim) on (B, T, E)
  ka.mha_layer    keras_attention.layers.MultiHeadAttention, same signature

The two layer rows are added with ``--layers`` (or named in ``--only``).

Usage (from the repository root)::

    python benchmarks/attention.py --quick            # CI-sized: T = 256, 512
    python benchmarks/attention.py                    # T = 256 ... 16384
    python benchmarks/attention.py --lengths 1024 4096 --modes fwd --causal
    python benchmarks/attention.py --layers --output benchmarks/results/cpu
    python benchmarks/attention.py --only keras.dpa,ka.chunked --no-xla

``--output PATH`` writes ``PATH.md`` (the tables) and ``PATH.json`` (every
measurement). Progress goes to stderr, the tables to stdout. See
benchmarks/README.md for the meaning of each column.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

MODES = {"fwd": "forward", "fwd+bwd": "forward+backward"}

# Attention FLOPs: forward is two (Tq x D) @ (D x Tk)-sized matmuls per head at
# 2 FLOPs per multiply-add, 4*B*H*Tq*Tk*D. forward+backward is credited with
# FWD_BWD_MULTIPLIER times that (the project's convention). For reference: the
# backward of exact attention has four matmuls of that size (dV, dP, dQ, dK),
# so fwd+bwd is 3x in plain matmul FLOPs, and FlashAttention's benchmarks
# credit 3.5x (backward 2.5x, with the recomputed Q K^T). The footer of every
# table states the multiplier in use.
FWD_BWD_MULTIPLIER = 2.5


@dataclasses.dataclass(frozen=True)
class Implementation:
    name: str
    description: str
    kind: str  # "op": (B, T, H, D) tensors in; "layer": (B, T, E) tensors in.
    reference: str  # the row this one is divided by in the "vs ref" column.


IMPLEMENTATIONS = {
    impl.name: impl
    for impl in [
        Implementation(
            "ka.exact",
            'keras_attention.ops.dot_product_attention(implementation="exact")',
            "op",
            "keras.dpa",
        ),
        Implementation(
            "ka.chunked",
            'keras_attention.ops.dot_product_attention(implementation="chunked")',
            "op",
            "keras.dpa",
        ),
        Implementation(
            "keras.dpa", "keras.ops.dot_product_attention", "op", "keras.dpa"
        ),
        Implementation(
            "keras.mha_core",
            "keras.layers.MultiHeadAttention._compute_attention "
            "(einsum -> softmax -> einsum)",
            "op",
            "keras.dpa",
        ),
        Implementation(
            "keras.mha_layer",
            "keras.layers.MultiHeadAttention",
            "layer",
            "keras.mha_layer",
        ),
        Implementation(
            "ka.mha_layer",
            "keras_attention.layers.MultiHeadAttention",
            "layer",
            "keras.mha_layer",
        ),
        Implementation(
            "keras.encoder_block",
            "post-norm encoder block from keras.layers.MultiHeadAttention, "
            "LayerNormalization and Dense (what keras_hub's TransformerEncoder "
            "computes), feed-forward 4E",
            "layer",
            "keras.encoder_block",
        ),
        Implementation(
            "ka.encoder_block",
            "keras_attention.layers.TransformerEncoder(intermediate_dim=4E)",
            "layer",
            "keras.encoder_block",
        ),
    ]
}
OP_ROWS = [name for name, impl in IMPLEMENTATIONS.items() if impl.kind == "op"]
LAYER_ROWS = [n for n, impl in IMPLEMENTATIONS.items() if impl.kind == "layer"]

DEFAULT_LENGTHS = [256, 512, 1024, 2048, 4096, 8192, 16384]
QUICK_LENGTHS = [256, 512]
GIB = 1024**3
MIB = 1024**2


# --------------------------------------------------------------------------
# FLOP counts
# --------------------------------------------------------------------------


def attention_flops(cfg, length, mode, kind):
    """FLOPs credited to one step; see `flop_formula` for the text."""
    b, h, d, t = cfg.batch, cfg.heads, cfg.head_dim, length
    flops = 4 * b * h * t * t * d
    if cfg.causal:
        flops //= 2
    if kind == "layer":
        # q, k, v and output projections between E and H * D features.
        flops += 4 * 2 * b * t * cfg.model_dim * h * d
    if mode == "fwd+bwd":
        flops = int(flops * FWD_BWD_MULTIPLIER)
    return flops


def flop_formula(cfg):
    causal = " / 2 (causal: only the lower triangle is counted)" if cfg.causal else ""
    return (
        f"FLOPs: forward = 4·B·H·Tq·Tk·D{causal}; forward+backward = "
        f"{FWD_BWD_MULTIPLIER}× forward. Layer rows add the q/k/v/output "
        "projections, 4·2·B·T·E·H·D, with the same multiplier."
    )


# --------------------------------------------------------------------------
# Worker: runs in its own process, prints one JSON line on stdout.
# --------------------------------------------------------------------------


def _status_bytes(field, pid="self"):
    """A size field ("VmRSS", "VmSize") of /proc/PID/status, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # Reported in kB.
    except (OSError, ValueError):
        pass
    return None


def _peak_rss_bytes():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # KiB on Linux


def _system_busy_seconds():
    """CPU-seconds all processes have spent busy since boot (None off Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _emit(result):
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def _import_tensorflow():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"This benchmark needs the TensorFlow backend, "
            f"got KERAS_BACKEND={keras.backend.backend()!r}."
        )
    return tf, keras


def _sync(outputs):
    """Waits for `outputs` (a no-op copy on CPU, a device sync elsewhere)."""
    import tensorflow as tf

    for tensor in tf.nest.flatten(outputs):
        if tensor is not None:  # e.g. the gradient of an unused key/value
            tensor.numpy()


def _make_attend(impl, cfg, keras):
    """Returns `(attend, layer)`: `attend(*inputs)` and the layer, if any.

    Raises ImportError (or anything else) when the implementation is missing.
    """
    causal = cfg.causal
    if impl.name in ("ka.exact", "ka.chunked"):
        from keras_attention.ops import dot_product_attention

        kwargs = {
            "implementation": impl.name.split(".")[1],
            "is_causal": causal,
        }
        if cfg.block_size and impl.name == "ka.chunked":
            kwargs["block_size"] = cfg.block_size
        return (lambda q, k, v: dot_product_attention(q, k, v, **kwargs)), None

    if impl.name == "keras.dpa":
        return (
            lambda q, k, v: keras.ops.dot_product_attention(
                q, k, v, is_causal=causal
            )
        ), None

    if impl.name == "keras.mha_core":
        layer = keras.layers.MultiHeadAttention(
            num_heads=cfg.heads, key_dim=cfg.head_dim
        )
        layer.build((cfg.batch, 8, cfg.model_dim), (cfg.batch, 8, cfg.model_dim))

        def attend(q, k, v):
            # return_attention_scores=True selects the layer's explicit
            # einsum -> masked softmax -> einsum path (the one it takes with
            # dropout or when scores are requested); without it the layer
            # defers to keras.ops.dot_product_attention, i.e. the keras.dpa
            # row. The unused scores output is dropped by the compiler.
            out, _ = layer._compute_attention(
                q, k, v, return_attention_scores=True, use_causal_mask=causal
            )
            return out

        return attend, None

    if impl.name.endswith("encoder_block"):
        return _encoder_block(impl.name, cfg, keras)

    if impl.kind == "layer":
        if impl.name == "ka.mha_layer":
            from keras_attention.layers import MultiHeadAttention
        else:
            MultiHeadAttention = keras.layers.MultiHeadAttention
        layer = MultiHeadAttention(num_heads=cfg.heads, key_dim=cfg.head_dim)
        # Build the weights eagerly on a short input; they do not depend on T.
        tiny = keras.ops.zeros((cfg.batch, 8, cfg.model_dim))
        layer(tiny, tiny, key=tiny, use_causal_mask=causal)

        def attend(q, k, v):
            return layer(q, v, key=k, use_causal_mask=causal)

        return attend, layer

    raise ValueError(f"Unknown implementation {impl.name!r}")


def _encoder_block(name, cfg, keras):
    """`(attend, layer)` for a self-attention encoder block (post-norm, ReLU
    feed-forward of 4E); `attend(q, k, v)` uses `q` only."""
    dim, hidden = cfg.model_dim, 4 * cfg.model_dim
    if name == "ka.encoder_block":
        from keras_attention.layers import TransformerEncoder

        block = TransformerEncoder(hidden, cfg.heads)
        block(keras.ops.zeros((cfg.batch, 8, dim)), use_causal_mask=cfg.causal)
        return (lambda q, k, v: block(q, use_causal_mask=cfg.causal)), block
    x = keras.Input((None, dim), batch_size=cfg.batch)
    a = keras.layers.MultiHeadAttention(cfg.heads, dim // cfg.heads)(
        x, x, use_causal_mask=cfg.causal
    )
    h = keras.layers.LayerNormalization(epsilon=1e-5)(x + a)
    f = keras.layers.Dense(hidden, activation="relu")(h)
    out = keras.layers.LayerNormalization(epsilon=1e-5)(
        h + keras.layers.Dense(dim)(f)
    )
    model = keras.Model(x, out)
    return (lambda q, k, v: model(q)), model


def _make_step(tf, attend, layer, mode, jit_compile):
    variables = list(layer.trainable_variables) if layer is not None else []

    if mode == "fwd":

        def step(q, k, v, cotangent):
            del cotangent
            return attend(q, k, v)

    else:

        def step(q, k, v, cotangent):
            with tf.GradientTape() as tape:
                tape.watch([q, k, v])
                out = attend(q, k, v)
                loss = tf.reduce_sum(out * cotangent)
            grads = tape.gradient(loss, [q, k, v] + variables)
            return out, grads

    return tf.function(step, jit_compile=jit_compile)


def _call_timed(fn, inputs):
    start = time.perf_counter()
    _sync(fn(*inputs))
    return time.perf_counter() - start


def _timed_calls(fn, inputs, min_calls, min_time, deadline, last):
    """Times at least `min_calls` calls and `min_time` seconds (at most 1000).

    Stops early rather than cross `deadline`, given that a call takes about
    `last` seconds, but always times one call. Returns the times and the CPU
    time other processes used meanwhile, as a percentage of all CPUs (a
    contention indicator; None where /proc/stat is missing).
    """
    times = []
    busy_start, cpu_start = _system_busy_seconds(), time.process_time()
    wall_start = time.perf_counter()
    while len(times) < min_calls or (sum(times) < min_time and len(times) < 1000):
        if times and time.perf_counter() + last > deadline:
            break
        last = _call_timed(fn, inputs)
        times.append(last)
    other_cpu = None
    if busy_start is not None:
        wall = time.perf_counter() - wall_start
        own = time.process_time() - cpu_start
        other = _system_busy_seconds() - busy_start - own
        other_cpu = max(other, 0.0) / (wall * os.cpu_count()) * 100
    return times, other_cpu


def _time_step(fn, inputs, cfg, deadline):
    """First call (trace + compile + run), warm-up, then timed calls."""
    first = last = _call_timed(fn, inputs)
    for _ in range(cfg.warmup):
        if time.perf_counter() + last > deadline:
            break
        last = _call_timed(fn, inputs)
    times, other_cpu = _timed_calls(
        fn, inputs, cfg.repeats, cfg.min_time, deadline, last
    )
    return first, times, other_cpu


def _worker_bench(cfg):
    started = time.perf_counter()
    deadline = started + 0.8 * cfg.timeout
    impl = IMPLEMENTATIONS[cfg.impl]
    tf, keras = _import_tensorflow()
    import numpy as np

    try:
        attend, layer = _make_attend(impl, cfg, keras)
    except Exception as exc:  # Missing module, class or argument.
        _emit({"status": "unavailable", "message": f"{type(exc).__name__}: {exc}"})
        return

    rng = np.random.default_rng(cfg.seed)
    t = cfg.length
    if impl.kind == "op":
        shape = (cfg.batch, t, cfg.heads, cfg.head_dim)
    else:
        shape = (cfg.batch, t, cfg.model_dim)
    dtype = cfg.dtype if impl.kind == "op" else "float32"
    q, k, v, cotangent = (
        tf.cast(tf.constant(rng.standard_normal(shape, dtype=np.float32)), dtype)
        for _ in range(4)
    )
    fn = _make_step(tf, attend, layer, cfg.mode, cfg.xla)

    baseline = _baseline_and_cap(cfg.max_memory_gib)
    _time_and_emit(tf, fn, (q, k, v, cotangent), cfg, deadline, baseline, started)


def _baseline_and_cap(max_memory_gib):
    """Records the baseline resident size and caps the address space.

    Returns the baseline in bytes. Call it after imports, building and input
    creation, just before the first call of the step.
    """
    baseline = _status_bytes("VmRSS") or _peak_rss_bytes()
    vm_size = _status_bytes("VmSize")
    if max_memory_gib and vm_size is not None:
        # Backstop for allocations too fast for the parent's RSS watch: cap the
        # address space at what is mapped now plus the budget plus 1 GiB slack
        # (TensorFlow maps far more virtual memory than it touches, so a plain
        # RLIMIT_AS of the budget itself would fail at import).
        limit = vm_size + int((max_memory_gib + 1) * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        # Tells the parent how to read a crash: some allocation failures
        # under this cap end in SIGSEGV or SIGABRT, not in an exception.
        _emit({"rlimit_as_bytes": limit})
    return baseline


def _time_and_emit(tf, fn, inputs, cfg, deadline, baseline, started, extra=None):
    """Times `fn(*inputs)` (see `_time_step`) and emits the worker's result."""
    try:
        first, times, other_cpu = _time_step(fn, inputs, cfg, deadline)
    except (tf.errors.ResourceExhaustedError, MemoryError) as exc:
        _emit({"status": "oom", "message": f"{type(exc).__name__}: {exc}"[:500]})
        return
    median = statistics.median(times)
    peak = _peak_rss_bytes()
    _emit(
        {
            "status": "ok",
            "median_s": median,
            "min_s": min(times),
            "times_s": times,
            "first_call_s": first,
            "compile_s": max(first - median, 0.0),
            "peak_rss_mib": peak / MIB,
            "baseline_rss_mib": baseline / MIB,
            "delta_rss_mib": (peak - baseline) / MIB,
            "other_cpu_pct": other_cpu,
            "worker_s": time.perf_counter() - started,
            **(extra or {}),
        }
    )


def _worker_matmul(cfg):
    tf, keras = _import_tensorflow()
    import numpy as np

    n = cfg.matmul_size
    rng = np.random.default_rng(cfg.seed)
    a, b = (
        tf.constant(rng.standard_normal((n, n), dtype=np.float32))
        for _ in range(2)
    )
    matmul = tf.function(tf.matmul, jit_compile=True)
    last = _call_timed(matmul, (a, b))
    deadline = time.perf_counter() + 0.5 * cfg.timeout
    times, other_cpu = _timed_calls(matmul, (a, b), 10, 2.0, deadline, last)
    median = statistics.median(times)
    _emit(
        {
            "status": "ok",
            "size": n,
            "median_s": median,
            "gflops": 2 * n**3 / median / 1e9,
            "runs": len(times),
            "other_cpu_pct": other_cpu,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        }
    )


# --------------------------------------------------------------------------
# Parent: launches workers, watches them, collects and prints the tables.
# --------------------------------------------------------------------------

_OOM_MARKERS = (
    "ResourceExhausted",
    "MemoryError",
    "bad_alloc",
    "Cannot allocate memory",
    "out of memory",
    "OOM",
)


def _process_rss_bytes(pid):
    rss = _status_bytes("VmRSS", pid)
    if rss is not None:
        return rss
    try:  # Not Linux: fall back to psutil when it is installed.
        import psutil

        return psutil.Process(pid).memory_info().rss
    except Exception:
        return None


def _tail(text, lines=5):
    return "\n".join(text.strip().splitlines()[-lines:])


def run_worker(worker_args, timeout, max_rss_bytes, poll=0.02, script=None):
    """Runs this script with `--worker ...`; returns the worker's result dict.

    `script` runs another script's worker instead (benchmarks/variants.py).
    The result always has a "status": ok, oom, timeout, unavailable or error.
    """
    env = dict(os.environ)
    env.setdefault("KERAS_BACKEND", "tensorflow")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    script = Path(script or __file__).resolve()
    cmd = [sys.executable, str(script), "--worker", *worker_args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=err, env=env, start_new_session=True
        )
        start = time.monotonic()
        killed_for = None
        peak_seen = 0
        try:
            while proc.poll() is None:
                rss = _process_rss_bytes(proc.pid)
                if rss is not None:
                    peak_seen = max(peak_seen, rss)
                    if max_rss_bytes and rss > max_rss_bytes:
                        killed_for = "oom"
                if time.monotonic() - start > timeout:
                    killed_for = "timeout"
                if killed_for:
                    break
                time.sleep(poll)
        finally:
            # Also on Ctrl-C: the worker is in its own session, so it did not
            # get the SIGINT; stop its process group (ours alone) here.
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        elapsed = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()

    if killed_for == "oom":
        return {
            "status": "oom",
            "message": f"killed at {peak_seen / GIB:.1f} GiB resident "
            f"(cap {max_rss_bytes / GIB:.1f} GiB)",
        }
    if killed_for == "timeout":
        return {"status": "timeout", "message": f"killed after {elapsed:.0f} s"}
    messages = []
    for line in stdout.splitlines():
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(message, dict):
            messages.append(message)
    for message in reversed(messages):
        if "status" in message:
            return message
    # No result: the worker died. A SIGKILL we did not send is most likely the
    # kernel's OOM killer; an allocation refused under the worker's RLIMIT_AS
    # raises (caught above), aborts with a message, or crashes on a signal.
    if proc.returncode == -signal.SIGKILL or any(m in stderr for m in _OOM_MARKERS):
        return {"status": "oom", "message": _tail(stderr) or "killed (SIGKILL)"}
    capped = [m["rlimit_as_bytes"] for m in messages if "rlimit_as_bytes" in m]
    if capped and proc.returncode < 0:
        return {
            "status": "oom",
            "message": f"crashed with {signal.Signals(-proc.returncode).name} "
            f"while its address space was capped at {capped[-1] / GIB:.1f} GiB "
            f"(resident peak seen {peak_seen / GIB:.1f} GiB): most likely an "
            "allocation the cap refused",
        }
    return {
        "status": "error",
        "message": f"exit code {proc.returncode}: {_tail(stderr)}",
    }


def _worker_config_args(cfg):
    args = [
        "--batch", str(cfg.batch),
        "--heads", str(cfg.heads),
        "--head-dim", str(cfg.head_dim),
        "--model-dim", str(cfg.model_dim),
        "--dtype", cfg.dtype,
        "--repeats", str(cfg.repeats),
        "--warmup", str(cfg.warmup),
        "--min-time", str(cfg.min_time),
        "--timeout", str(cfg.timeout),
        "--max-memory-gib", str(cfg.max_memory_gib),
        "--seed", str(cfg.seed),
    ]  # fmt: skip
    if cfg.block_size:
        args += ["--block-size", str(cfg.block_size)]
    if cfg.causal:
        args.append("--causal")
    if not cfg.xla:
        args.append("--no-xla")
    return args


def machine_info(matmul):
    info = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_gib": _total_memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for key in ("tensorflow", "keras", "backend", "intra_op_threads"):
        info[key] = matmul.get(key)
    return info


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _total_memory_gib():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError, AttributeError):
        return None


def header_markdown(cfg, info, matmuls):
    compiler = "XLA (tf.function(jit_compile=True))" if cfg.xla else "tf.function"
    mem = f"{info['memory_gib']:.1f} GiB RAM" if info["memory_gib"] else ""
    matmul = best_matmul(matmuls)
    if matmul["status"] == "ok":
        each = ", ".join(
            f"{m['when']} {m['gflops']:.1f}" if m["status"] == "ok" else
            f"{m['when']} {m['status']}"
            for m in matmuls
        )
        roofline = (
            f"{matmul['gflops']:.1f} GFLOP/s ({matmul['size']}x{matmul['size']} "
            f"float32 matmul under XLA, median of {matmul['runs']} calls, "
            f"other CPU {_fmt(matmul.get('other_cpu_pct'), '.0f')}%; best of "
            f"the measurements at {each} GFLOP/s)"
        )
    else:
        roofline = f"not measured ({matmul['status']}: {matmul.get('message')})"
    return "\n".join(
        [
            "# Attention benchmark",
            "",
            f"- Machine: {info['cpu']}, {info['cpu_count']} CPUs "
            f"({info['usable_cpus']} usable), {mem}, {info['platform']}",
            f"- Software: Python {info['python']}, TensorFlow {info['tensorflow']}, "
            f"Keras {info['keras']} (backend {info['backend']})",
            f"- Config: batch {cfg.batch}, {cfg.heads} heads x {cfg.head_dim} "
            f"head_dim (layers: model dim {cfg.model_dim}), {cfg.dtype}, "
            f"{'causal' if cfg.causal else 'non-causal'}, {compiler}",
            f"- Timing: median of at least {cfg.repeats} calls and "
            f"{cfg.min_time:g} s after compile and {cfg.warmup} warm-up "
            "call(s); one subprocess per cell; "
            f"caps {cfg.max_memory_gib:g} GiB resident, {cfg.timeout:g} s",
            f"- Matmul roofline: {roofline}",
        ]
    )


def _fmt(value, spec):
    return "—" if value is None else format(value, spec)


def mode_table_markdown(cfg, mode, results, implementations, matmul):
    """One markdown table for `mode`; `results[(impl, mode, T)]` -> dict."""
    peak = matmul.get("gflops") if matmul["status"] == "ok" else None
    columns = [
        "T", "implementation", "median ms", "min ms", "vs ref", "compile s", "GFLOP/s",
        "% matmul", "peak RSS MiB", "Δ RSS MiB", "runs", "other CPU %",
    ]  # fmt: skip
    lines = [
        f"## {MODES[mode]} ({mode})",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(["---:", ":---"] + ["---:"] * (len(columns) - 2)) + "|",
    ]
    for length in cfg.lengths:
        for name in implementations:
            r = results.get((name, mode, length))
            if r is None:
                continue
            cells = [str(length), f"`{name}`"]
            if r["status"] == "ok":
                ref = results.get((IMPLEMENTATIONS[name].reference, mode, length))
                ratio = (
                    r["median_s"] / ref["median_s"]
                    if ref and ref["status"] == "ok"
                    else None
                )
                gflops = r["flops"] / r["median_s"] / 1e9
                cells += [
                    f"{r['median_s'] * 1e3:.2f}",
                    f"{r['min_s'] * 1e3:.2f}",
                    _fmt(ratio, ".2f") + ("×" if ratio is not None else ""),
                    f"{r['compile_s']:.2f}",
                    f"{gflops:.1f}",
                    _fmt(gflops / peak * 100 if peak else None, ".1f"),
                    f"{r['peak_rss_mib']:.0f}",
                    f"{r['delta_rss_mib']:.0f}",
                    str(len(r["times_s"])),
                    _fmt(r.get("other_cpu_pct"), ".0f"),
                ]
            else:
                label = {
                    "oom": "OOM",
                    "timeout": "timeout",
                    "unavailable": "n/a (not available)",
                    "skipped": "skipped",
                    "error": "error",
                }[r["status"]]
                cells += [label] + ["—"] * (len(columns) - 3)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def footer_markdown(cfg, implementations, results):
    lines = [
        "",
        flop_formula(cfg),
        "min ms = fastest timed call (less sensitive to other load). "
        "GFLOP/s = FLOPs / median time; % matmul = GFLOP/s / matmul roofline. "
        "vs ref = median time / median time of the reference row at the same T "
        "(`keras.dpa` for op rows, `keras.mha_layer` for layer rows); "
        ">1 is slower. compile s = first call (trace + compile + run) minus the "
        "median. peak RSS = ru_maxrss of the worker; Δ RSS = peak minus the "
        "resident size after imports and input creation. runs = timed calls. "
        "other CPU % = CPU time used by other processes while the cell was "
        "timed, as a share of all CPUs (high values mean the timing is "
        "contended).",
        "",
        "Implementations:",
    ]
    lines += [
        f"- `{name}`: {IMPLEMENTATIONS[name].description}" for name in implementations
    ]
    notes = sorted(
        {
            f"- `{name}` {MODES[mode]} T={length}: {r['status']}: "
            f"{r.get('message', '')}".replace("\n", " ")[:300]
            for (name, mode, length), r in results.items()
            if r["status"] in ("oom", "timeout", "error", "unavailable")
            and r.get("message")
        }
    )
    if notes:
        lines += ["", "Failures:"] + notes
    return "\n".join(lines)


def _progress(message):
    print(message, file=sys.stderr, flush=True)


def _measure_matmul(cfg, common, max_rss, when):
    _progress(f"matmul roofline ({when}): {cfg.matmul_size}x{cfg.matmul_size} ...")
    result = run_worker(
        ["matmul", "--matmul-size", str(cfg.matmul_size), *common],
        cfg.timeout,
        max_rss,
    )
    result["when"] = when
    if result["status"] == "ok":
        _progress(
            f"    {result['gflops']:.1f} GFLOP/s "
            f"(other CPU {_fmt(result.get('other_cpu_pct'), '.0f')}%)"
        )
    else:
        _progress(f"    {result['status']}: {result.get('message', '')}")
    return result


def best_matmul(measurements):
    """The roofline: the fastest of the matmul measurements that succeeded."""
    ok = [m for m in measurements if m["status"] == "ok"]
    return max(ok, key=lambda m: m["gflops"]) if ok else measurements[0]


def _run_cells(cfg, results, common, max_rss):
    """Fills `results[(implementation, mode, length)]`, shortest T first."""
    implementations = cfg.implementations
    total = len(implementations) * len(cfg.modes) * len(cfg.lengths)
    done = 0
    for mode in cfg.modes:
        stopped = {}  # implementation -> the status that ended its series
        for length in cfg.lengths:
            for name in implementations:
                done += 1
                key = (name, mode, length)
                if name in stopped:
                    unavailable = stopped[name] == "unavailable"
                    results[key] = {"status": "unavailable" if unavailable else "skipped"}
                    continue
                _progress(f"[{done}/{total}] {name} {mode} T={length} ...")
                r = run_worker(
                    [
                        "bench",
                        "--impl", name,
                        "--mode", mode,
                        "--length", str(length),
                        *common,
                    ],  # fmt: skip
                    cfg.timeout,
                    max_rss,
                )
                r["flops"] = attention_flops(
                    cfg, length, mode, IMPLEMENTATIONS[name].kind
                )
                results[key] = r
                if r["status"] == "ok":
                    _progress(
                        f"    {r['median_s'] * 1e3:.2f} ms, "
                        f"{r['flops'] / r['median_s'] / 1e9:.1f} GFLOP/s, "
                        f"peak {r['peak_rss_mib']:.0f} MiB, other CPU "
                        f"{_fmt(r.get('other_cpu_pct'), '.0f')}%"
                    )
                else:
                    stopped[name] = r["status"]
                    _progress(f"    {r['status']}: {r.get('message', '')}")


def run_benchmark(cfg):
    common = _worker_config_args(cfg)
    max_rss = int(cfg.max_memory_gib * GIB) if cfg.max_memory_gib else None

    matmuls = [_measure_matmul(cfg, common, max_rss, "start")]
    info = machine_info(matmuls[0])
    _progress(
        f"{info['cpu']}, {info['cpu_count']} CPUs; TensorFlow {info['tensorflow']}, "
        f"Keras {info['keras']}"
    )
    results = {}
    interrupted = False
    try:
        _run_cells(cfg, results, common, max_rss)
        # Measured again at the end; the faster one is the roofline, so that
        # a busy moment at the start does not inflate every "% matmul".
        matmuls.append(_measure_matmul(cfg, common, max_rss, "end"))
    except KeyboardInterrupt:
        interrupted = True
        _progress("interrupted: reporting the cells measured so far")

    matmul = best_matmul(matmuls)
    header = header_markdown(cfg, info, matmuls)
    tables = [
        mode_table_markdown(cfg, mode, results, cfg.implementations, matmul)
        for mode in cfg.modes
    ]
    footer = footer_markdown(cfg, cfg.implementations, results)
    print("\n\n".join([header, *tables, footer]), flush=True)
    if cfg.output:
        _write_outputs(cfg, info, matmuls, results, header, tables, footer)
    return 130 if interrupted else 0


def _write_outputs(cfg, info, matmuls, results, header, tables, footer):
    base = Path(cfg.output)
    if base.suffix in (".md", ".json"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    markdown = "\n\n".join([header, *tables, footer]) + "\n"
    base.with_suffix(".md").write_text(markdown)
    payload = {
        "machine": info,
        "config": {
            k: v
            for k, v in vars(cfg).items()
            if k not in ("worker", "impl", "mode", "length", "output")
        },
        "flop_formula": flop_formula(cfg),
        "matmul_roofline": best_matmul(matmuls),
        "matmul_measurements": matmuls,
        "results": [
            {"implementation": n, "mode": m, "length": t, **r}
            for (n, m, t), r in results.items()
        ],
    }
    base.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    _progress(f"wrote {base.with_suffix('.md')} and {base.with_suffix('.json')}")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _int_list(values):
    out = []
    for value in values:
        out += [int(v) for v in str(value).split(",") if v.strip()]
    return out


def _name_list(value):
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(names) - set(IMPLEMENTATIONS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown implementation(s) {unknown}; choose from "
            f"{', '.join(IMPLEMENTATIONS)}"
        )
    return names


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--lengths", nargs="+", default=None, metavar="T",
        help="sequence lengths, space or comma separated "
        f"(default {','.join(map(str, DEFAULT_LENGTHS))})",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true",
        help=f"short CI-sized run: lengths {QUICK_LENGTHS}, 3 repeats",
    )  # fmt: skip
    parser.add_argument(
        "--modes", type=lambda s: [m for m in s.split(",") if m], default=list(MODES),
        help="comma-separated subset of: " + ", ".join(MODES) + " (default: both)",
    )  # fmt: skip
    parser.add_argument(
        "--only", type=_name_list, default=None, metavar="NAMES",
        help="comma-separated implementations to run (default: the op rows, "
        "plus the layer rows with --layers)",
    )  # fmt: skip
    parser.add_argument(
        "--layers", action="store_true",
        help="add the MultiHeadAttention layer rows (keras vs keras_attention)",
    )  # fmt: skip
    parser.add_argument("--causal", action="store_true", help="causal attention")
    parser.add_argument(
        "--no-xla", dest="xla", action="store_false",
        help="plain tf.function instead of tf.function(jit_compile=True)",
    )  # fmt: skip
    parser.add_argument("--batch", type=int, default=1, help="(default: %(default)s)")
    parser.add_argument("--heads", type=int, default=4, help="(default: %(default)s)")
    parser.add_argument(
        "--head-dim", type=int, default=64, help="(default: %(default)s)"
    )
    parser.add_argument(
        "--model-dim", type=int, default=256,
        help="feature size E of the (B, T, E) inputs of the layer rows "
        "(default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--dtype", default="float32", help="input dtype of the op rows (default: %(default)s)")
    parser.add_argument(
        "--block-size", type=int, default=None,
        help="block_size passed to the chunked implementation (default: its own)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per cell (default 5, 3 with --quick)")  # fmt: skip
    parser.add_argument(
        "--min-time", type=float, default=None,
        help="keep timing until this many seconds are measured "
        "(default 1.0, 0.3 with --quick)",
    )  # fmt: skip
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed calls after the compiling first call "
                        "(default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--timeout", type=float, default=300.0,
        help="seconds per configuration, worker start to finish "
        "(default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--max-memory-gib", type=float, default=16.0,
        help="resident-memory cap per worker; 0 disables it (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--matmul-size", type=int, default=2048,
                        help="n of the n x n float32 matmul roofline "
                        "(default: %(default)s)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument(
        "--output", default=None, metavar="PATH",
        help="also write PATH.md and PATH.json",
    )  # fmt: skip
    # Internal: the parent runs this script again as a worker.
    parser.add_argument("--worker", choices=["bench", "matmul"], help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=list(IMPLEMENTATIONS), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)

    cfg = parser.parse_args(argv)
    if cfg.lengths is not None:
        cfg.lengths = sorted(set(_int_list(cfg.lengths)))
    else:
        cfg.lengths = QUICK_LENGTHS if cfg.quick else DEFAULT_LENGTHS
    if cfg.repeats is None:
        cfg.repeats = 3 if cfg.quick else 5
    if cfg.min_time is None:
        cfg.min_time = 0.3 if cfg.quick else 1.0
    bad_modes = sorted(set(cfg.modes) - set(MODES))
    if bad_modes:
        parser.error(f"unknown mode(s) {bad_modes}; choose from {', '.join(MODES)}")
    if cfg.repeats < 1:
        parser.error("--repeats must be at least 1")
    if cfg.only is not None:
        cfg.implementations = cfg.only
    else:
        cfg.implementations = OP_ROWS + (LAYER_ROWS if cfg.layers else [])
    return cfg


def main(argv=None):
    cfg = parse_args(argv)
    if cfg.worker:
        # Benchmark the working tree, not an installed copy.
        sys.path.insert(0, str(REPO_ROOT))
        if cfg.worker == "matmul":
            _worker_matmul(cfg)
        else:
            _worker_bench(cfg)
        return 0
    return run_benchmark(cfg)


if __name__ == "__main__":
    sys.exit(main())
