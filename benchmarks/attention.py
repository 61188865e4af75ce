"""Benchmark dot-product attention: keras_attention against Keras, side by side.

Every implementation runs on the same inputs (batch 1, 4 heads x 64 head_dim)
across sequence lengths and dtypes (float32 on CPU, float32, float16 and
bfloat16 on GPU by default; ``--dtypes``), in two modes:

* ``fwd``      the attention output only;
* ``fwd+bwd``  the output plus the gradient of ``sum(output * cotangent)`` with
  respect to q, k and v (and, for layer rows, the layer inputs and weights),
  taken with ``tf.GradientTape`` inside the compiled function.

Each step is compiled with ``tf.function(jit_compile=True)`` (XLA) unless
``--no-xla`` is given. Every (implementation, mode, length) is measured in a
fresh worker subprocess, so peak resident memory is per configuration; the
worker is killed when its resident memory goes over ``--max-memory-gib`` or it
runs longer than ``--timeout`` seconds, and the longer lengths of that series
are then skipped. A plain matmul in each dtype, measured in the same run, gives
the roofline that each row's achieved GFLOP/s is compared with.

The device is TensorFlow's (benchmarks/device.py): the first GPU it sees, else
the CPU. On GPU the memory columns hold TensorFlow's GPU allocator peak instead
of the worker's resident memory, and the default lengths go on to 65536.

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
    python benchmarks/attention.py --dtypes float32,bfloat16 --layers

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
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import device  # noqa: E402  (benchmarks/device.py)

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
# A GPU gets through the longer lengths in seconds; a series still stops at
# its first OOM or timeout.
GPU_LENGTHS = DEFAULT_LENGTHS + [32768, 65536]
QUICK_LENGTHS = [256, 512]
MATMUL_SIZE = {"cpu": 2048, "gpu": 8192}  # a GPU needs more work per call
GIB = device.GIB
MIB = device.MIB


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


_status_bytes = device.status_bytes
_peak_rss_bytes = device.peak_rss_bytes


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
    """Waits for `outputs` (a no-op copy on CPU, a device sync on GPU)."""
    device.sync(outputs)


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


def _time_step(fn, inputs, cfg, deadline, before_timing=None):
    """First call (trace + compile + run), warm-up, then timed calls;
    `before_timing()`, if given, runs between the warm-up and the timing."""
    first = last = _call_timed(fn, inputs)
    for _ in range(cfg.warmup):
        if time.perf_counter() + last > deadline:
            break
        last = _call_timed(fn, inputs)
    if before_timing is not None:
        before_timing()
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

    info = device.describe(tf)
    # Layers (the layer rows, Keras' MHA core, the blocks) run under the
    # policy of the row's dtype: mixed precision for float16 and bfloat16.
    keras.config.set_dtype_policy(device.layer_policy(cfg.dtype))
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
    inputs = device.place(
        tf,
        info,
        [
            tf.cast(tf.constant(rng.standard_normal(shape, dtype=np.float32)), cfg.dtype)
            for _ in range(4)
        ],
    )
    fn = _make_step(tf, attend, layer, cfg.mode, cfg.xla)

    meter = _start_meter(tf, info, cfg.max_memory_gib)
    _time_and_emit(tf, fn, inputs, cfg, deadline, meter, started)


def _start_meter(tf, info, max_memory_gib):
    """A started `device.MemoryMeter`: records the baseline and, on CPU, caps
    the address space. Call it after imports, building and input creation,
    just before the first call of the step."""
    meter = device.MemoryMeter(tf, info["kind"])
    limit = meter.start(max_memory_gib)
    if limit is not None:
        # Tells the parent how to read a crash: some allocation failures
        # under this cap end in SIGSEGV or SIGABRT, not in an exception.
        _emit({"rlimit_as_bytes": limit})
    return meter


def _is_oom(tf, exc):
    """Whether `exc` says the device or the host ran out of memory (on GPU,
    XLA reports some failed allocations as other errors, with this text)."""
    if isinstance(exc, (tf.errors.ResourceExhaustedError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, tf.errors.OpError) and any(
        marker in text for marker in ("RESOURCE_EXHAUSTED", "Out of memory")
    )


def _output_dtype(tf, fn, inputs):
    """The dtype of the step's (first) output, from its traced signature."""
    try:
        outputs = fn.get_concrete_function(*inputs).structured_outputs
        return tf.nest.flatten(outputs)[0].dtype.name
    except Exception:  # Informational only.
        return None


def _time_and_emit(tf, fn, inputs, cfg, deadline, meter, started, extra=None):
    """Times `fn(*inputs)` (see `_time_step`) and emits the worker's result."""
    try:
        first, times, other_cpu = _time_step(
            fn, inputs, cfg, deadline, before_timing=meter.before_timing
        )
    except (tf.errors.OpError, MemoryError) as exc:
        if not _is_oom(tf, exc):
            raise
        _emit({"status": "oom", "message": f"{type(exc).__name__}: {exc}"[:500]})
        return
    median = statistics.median(times)
    _emit(
        {
            "status": "ok",
            "median_s": median,
            "min_s": min(times),
            "times_s": times,
            "first_call_s": first,
            "compile_s": max(first - median, 0.0),
            **meter.result(),
            "other_cpu_pct": other_cpu,
            "worker_s": time.perf_counter() - started,
            "device": meter.kind,
            "output_dtype": _output_dtype(tf, fn, inputs),
            **(extra or {}),
        }
    )


def _worker_matmul(cfg):
    tf, keras = _import_tensorflow()
    import numpy as np

    info = device.describe(tf)
    n = cfg.matmul_size
    rng = np.random.default_rng(cfg.seed)
    a, b = device.place(
        tf,
        info,
        [
            tf.cast(tf.constant(rng.standard_normal((n, n), dtype=np.float32)), cfg.dtype)
            for _ in range(2)
        ],
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
            "dtype": cfg.dtype,
            "median_s": median,
            "gflops": 2 * n**3 / median / 1e9,
            "runs": len(times),
            "other_cpu_pct": other_cpu,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "device": info,
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
    """The worker options every cell shares (the dtype is the cell's)."""
    args = [
        "--batch", str(cfg.batch),
        "--heads", str(cfg.heads),
        "--head-dim", str(cfg.head_dim),
        "--model-dim", str(cfg.model_dim),
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


def machine_info(versions, device_info=None):
    """The host, the software versions found in `versions` (a worker's
    result) and the measured device (`device.probe()`; the CPU if None)."""
    info = {
        "cpu": device.cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_gib": _total_memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "device": device_info
        or {"kind": "cpu", "name": device.cpu_model(), "gpus": 0},
    }
    for key in ("tensorflow", "keras", "backend", "intra_op_threads"):
        info[key] = versions.get(key)
    return info


def _cpu_model():
    return device.cpu_model()


def _total_memory_gib():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError, AttributeError):
        return None


def dtypes_text(dtypes):
    """The dtypes of a run, and the policy its layers use in each."""
    mixed = [d for d in dtypes if device.layer_policy(d) != d]
    text = ", ".join(dtypes)
    if mixed:
        text += " (layers under " + ", ".join(
            f"{device.layer_policy(d)}" for d in mixed
        ) + ")"
    return text


def _roofline_text(matmuls, dtype):
    """The header's text for the matmul roofline of `dtype`."""
    mine = [m for m in matmuls if m.get("dtype", "float32") == dtype]
    matmul = best_matmul(mine) if mine else {"status": "skipped"}
    if matmul["status"] != "ok":
        return f"not measured ({matmul['status']}: {matmul.get('message')})"
    each = ", ".join(
        f"{m['when']} {m['gflops']:.1f}" if m["status"] == "ok" else
        f"{m['when']} {m['status']}"
        for m in mine
    )
    return (
        f"{matmul['gflops']:.1f} GFLOP/s ({matmul['size']}x{matmul['size']} "
        f"{dtype} matmul under XLA, median of {matmul['runs']} calls, "
        f"other CPU {_fmt(matmul.get('other_cpu_pct'), '.0f')}%; best of "
        f"the measurements at {each} GFLOP/s)"
    )


def header_markdown(cfg, info, matmuls):
    compiler = "XLA (tf.function(jit_compile=True))" if cfg.xla else "tf.function"
    mem = f"{info['memory_gib']:.1f} GiB RAM" if info["memory_gib"] else ""
    if len(cfg.dtypes) == 1:
        rooflines = [f"- Matmul roofline: {_roofline_text(matmuls, cfg.dtypes[0])}"]
    else:
        rooflines = [
            f"- Matmul roofline, {dtype}: {_roofline_text(matmuls, dtype)}"
            for dtype in cfg.dtypes
        ]
    return "\n".join(
        [
            "# Attention benchmark",
            "",
            f"- Machine: {info['cpu']}, {info['cpu_count']} CPUs "
            f"({info['usable_cpus']} usable), {mem}, {info['platform']}",
            f"- Device: {device.summary(info['device'])}",
            f"- Software: Python {info['python']}, TensorFlow {info['tensorflow']}, "
            f"Keras {info['keras']} (backend {info['backend']})",
            f"- Config: batch {cfg.batch}, {cfg.heads} heads x {cfg.head_dim} "
            f"head_dim (layers: model dim {cfg.model_dim}), {dtypes_text(cfg.dtypes)}, "
            f"{'causal' if cfg.causal else 'non-causal'}, {compiler}",
            f"- Timing: median of at least {cfg.repeats} calls and "
            f"{cfg.min_time:g} s after compile and {cfg.warmup} warm-up "
            "call(s); one subprocess per cell; "
            f"caps {cfg.max_memory_gib:g} GiB resident, {cfg.timeout:g} s",
            *rooflines,
        ]
    )


def _fmt(value, spec):
    return "—" if value is None else format(value, spec)


def mode_table_markdown(cfg, mode, results, implementations, matmuls, info=None):
    """One markdown table for `mode`; `results[(impl, mode, T, dtype)]` -> dict.

    `matmuls` are the roofline measurements (the best of each dtype is used);
    `info` is `machine_info`'s, whose device picks the memory columns. A dtype
    column is added when the run has more than one dtype.
    """
    device_info = (info or {}).get("device") or {"kind": "cpu"}
    peaks = {}
    for dtype in cfg.dtypes:
        mine = [m for m in matmuls if m.get("dtype", "float32") == dtype]
        best = best_matmul(mine) if mine else {"status": "skipped"}
        peaks[dtype] = best.get("gflops") if best["status"] == "ok" else None
    several = len(cfg.dtypes) > 1
    columns = [
        "T", *(["dtype"] if several else []), "implementation", "median ms",
        "min ms", "vs ref", "compile s", "GFLOP/s", "% matmul",
        *device.MEMORY[device_info["kind"]]["columns"], "runs", "other CPU %",
    ]  # fmt: skip
    lefts = 2 + several  # T (right), then dtype and implementation (left)
    lines = [
        f"## {MODES[mode]} ({mode})",
        "",
        "| " + " | ".join(columns) + " |",
        "|"
        + "|".join(["---:"] + [":---"] * (lefts - 1) + ["---:"] * (len(columns) - lefts))
        + "|",
    ]
    for length in cfg.lengths:
        for dtype in cfg.dtypes:
            for name in implementations:
                r = results.get((name, mode, length, dtype))
                if r is None:
                    continue
                cells = [str(length), *([dtype] if several else []), f"`{name}`"]
                if r["status"] == "ok":
                    ref = results.get(
                        (IMPLEMENTATIONS[name].reference, mode, length, dtype)
                    )
                    ratio = (
                        r["median_s"] / ref["median_s"]
                        if ref and ref["status"] == "ok"
                        else None
                    )
                    gflops = r["flops"] / r["median_s"] / 1e9
                    peak = peaks[dtype]
                    memory_peak, memory_delta = device.memory_cells(device_info, r)
                    cells += [
                        f"{r['median_s'] * 1e3:.2f}",
                        f"{r['min_s'] * 1e3:.2f}",
                        _fmt(ratio, ".2f") + ("×" if ratio is not None else ""),
                        f"{r['compile_s']:.2f}",
                        f"{gflops:.1f}",
                        _fmt(gflops / peak * 100 if peak else None, ".1f"),
                        _fmt(memory_peak, ".0f"),
                        _fmt(memory_delta, ".0f"),
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
                    cells += [label] + ["—"] * (len(columns) - len(cells) - 1)
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


MEMORY_NOTES = {
    "cpu": "peak RSS = ru_maxrss of the worker; Δ RSS = peak minus the "
    "resident size after imports and input creation.",
    "gpu": "peak GPU = the peak of TensorFlow's GPU allocator (bytes in use "
    "on GPU:0, tf.config.experimental.get_memory_info) over the timed calls, "
    "its statistics reset after the compiling call and the warm-up; Δ GPU = "
    "that peak minus the bytes in use at the reset (inputs and weights). The "
    "worker's resident memory is in the JSON (peak_rss_mib).",
}


def footer_markdown(cfg, implementations, results, info=None):
    kind = ((info or {}).get("device") or {"kind": "cpu"})["kind"]
    lines = [
        "",
        flop_formula(cfg),
        "min ms = fastest timed call (less sensitive to other load). "
        "GFLOP/s = FLOPs / median time; % matmul = GFLOP/s / matmul roofline"
        + (" of the row's dtype" if len(cfg.dtypes) > 1 else "")
        + ". vs ref = median time / median time of the reference row at the same T"
        + (" and dtype" if len(cfg.dtypes) > 1 else "")
        + " (`keras.dpa` for op rows, `keras.mha_layer` for layer rows); "
        ">1 is slower. compile s = first call (trace + compile + run) minus the "
        f"median. {MEMORY_NOTES[kind]} runs = timed calls. "
        "other CPU % = CPU time used by other processes while the cell was "
        "timed, as a share of all CPUs (high values mean the timing is "
        "contended).",
    ]
    mixed = [d for d in cfg.dtypes if device.layer_policy(d) != d]
    if mixed:
        lines.append(
            "dtypes: op rows take q, k, v in the row's dtype; layers (layer "
            "rows and `keras.mha_core`, Keras' and keras_attention's alike) "
            "run under the Keras dtype policy "
            + ", ".join(f"`{device.layer_policy(d)}`" for d in mixed)
            + " (float32 weights, computation in the row's dtype) on inputs "
            "in that dtype."
        )
    lines += ["", "Implementations:"]
    lines += [
        f"- `{name}`: {IMPLEMENTATIONS[name].description}" for name in implementations
    ]
    several = len(cfg.dtypes) > 1
    notes = sorted(
        {
            f"- `{name}` {MODES[mode]} T={length}{f' {dtype}' if several else ''}: "
            f"{r['status']}: {r.get('message', '')}".replace("\n", " ")[:300]
            for (name, mode, length, dtype), r in results.items()
            if r["status"] in ("oom", "timeout", "error", "unavailable")
            and r.get("message")
        }
    )
    if notes:
        lines += ["", "Failures:"] + notes
    return "\n".join(lines)


def _progress(message):
    print(message, file=sys.stderr, flush=True)


def _measure_matmul(cfg, common, max_rss, when, dtype="float32"):
    _progress(
        f"matmul roofline ({when}): {cfg.matmul_size}x{cfg.matmul_size}"
        f"{'' if dtype == 'float32' else ' ' + dtype} ..."
    )
    result = run_worker(
        ["matmul", "--matmul-size", str(cfg.matmul_size), "--dtype", dtype, *common],
        cfg.timeout,
        max_rss,
    )
    result["when"] = when
    result["dtype"] = dtype
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
    """Fills `results[(implementation, mode, length, dtype)]`, shortest T first
    (every dtype at one T before the next T, so that an interrupted run has
    all of them); an (implementation, dtype) series stops at its first
    failure."""
    implementations = cfg.implementations
    total = len(implementations) * len(cfg.modes) * len(cfg.lengths) * len(cfg.dtypes)
    several = len(cfg.dtypes) > 1
    done = 0
    for mode in cfg.modes:
        stopped = {}  # (implementation, dtype) -> the status that ended its series
        for length in cfg.lengths:
            for dtype in cfg.dtypes:
                for name in implementations:
                    done += 1
                    key = (name, mode, length, dtype)
                    if (name, dtype) in stopped:
                        unavailable = stopped[(name, dtype)] == "unavailable"
                        results[key] = {"status": "unavailable" if unavailable else "skipped"}
                        continue
                    _progress(
                        f"[{done}/{total}] {name} {mode} T={length}"
                        f"{' ' + dtype if several else ''} ..."
                    )
                    r = run_worker(
                        [
                            "bench",
                            "--impl", name,
                            "--mode", mode,
                            "--length", str(length),
                            "--dtype", dtype,
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
                        memory = device.memory_cells(cfg.device, r)[0]
                        _progress(
                            f"    {r['median_s'] * 1e3:.2f} ms, "
                            f"{r['flops'] / r['median_s'] / 1e9:.1f} GFLOP/s, "
                            f"peak {_fmt(memory, '.0f')} MiB, other CPU "
                            f"{_fmt(r.get('other_cpu_pct'), '.0f')}%"
                        )
                    else:
                        stopped[(name, dtype)] = r["status"]
                        _progress(f"    {r['status']}: {r.get('message', '')}")


def apply_device_defaults(cfg, device_info):
    """Fills the options left to the device: dtypes, lengths, matmul size."""
    cfg.device = device_info
    kind = device_info["kind"]
    if cfg.dtypes is None:
        cfg.dtypes = device.default_dtypes(device_info)
    if cfg.lengths is None:
        cfg.lengths = GPU_LENGTHS if kind == "gpu" else DEFAULT_LENGTHS
    if cfg.matmul_size is None:
        cfg.matmul_size = MATMUL_SIZE[kind]
    return cfg


def run_benchmark(cfg):
    device_info = device.probe()
    apply_device_defaults(cfg, device_info)
    _progress(f"device: {device.summary(device_info)}")
    common = _worker_config_args(cfg)
    max_rss = int(cfg.max_memory_gib * GIB) if cfg.max_memory_gib else None

    matmuls = [_measure_matmul(cfg, common, max_rss, "start", d) for d in cfg.dtypes]
    info = machine_info(matmuls[0], device_info)
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
        for dtype in cfg.dtypes:
            matmuls.append(_measure_matmul(cfg, common, max_rss, "end", dtype))
    except KeyboardInterrupt:
        interrupted = True
        _progress("interrupted: reporting the cells measured so far")

    header = header_markdown(cfg, info, matmuls)
    if interrupted:
        header += f"\n{INTERRUPTED_NOTE}"
    tables = [
        mode_table_markdown(cfg, mode, results, cfg.implementations, matmuls, info)
        for mode in cfg.modes
    ]
    footer = footer_markdown(cfg, cfg.implementations, results, info)
    print("\n\n".join([header, *tables, footer]), flush=True)
    if cfg.output:
        _write_outputs(cfg, info, matmuls, results, header, tables, footer)
    return 130 if interrupted else 0


INTERRUPTED_NOTE = (
    "- Interrupted: the run was stopped before its end; the cells it had not "
    "measured are missing from the tables"
)


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
            if k not in ("worker", "impl", "mode", "length", "output", "dtype", "device")
        },
        "flop_formula": flop_formula(cfg),
        # The first dtype's (float32 by default), and every dtype's.
        "matmul_roofline": best_matmul(
            [m for m in matmuls if m.get("dtype") == cfg.dtypes[0]] or matmuls
        ),
        "matmul_rooflines": {
            dtype: best_matmul(mine)
            for dtype in cfg.dtypes
            if (mine := [m for m in matmuls if m.get("dtype") == dtype])
        },
        "matmul_measurements": matmuls,
        "results": [
            {"implementation": n, "mode": m, "length": t, "dtype": d, **r}
            for (n, m, t, d), r in results.items()
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


DTYPES = ("float32", "float16", "bfloat16", "float64")


def _dtype_list(value):
    names = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = sorted(set(names) - set(DTYPES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown dtype(s) {unknown}; choose from {', '.join(DTYPES)}"
        )
    return names


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
        f"(default {','.join(map(str, DEFAULT_LENGTHS))}; on GPU up to "
        f"{GPU_LENGTHS[-1]})",
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
    parser.add_argument(
        "--dtypes", type=_dtype_list, default=None, metavar="DTYPES",
        help="comma-separated dtypes, each a row of the tables: "
        f"{', '.join(DTYPES)} (default: float32 on CPU, "
        "float32,float16,bfloat16 on GPU). Op inputs are cast to it; layers run "
        "under the Keras policy mixed_float16 / mixed_bfloat16 for the half types",
    )  # fmt: skip
    # One dtype: the worker's (internal), or the parent's older spelling.
    parser.add_argument("--dtype", choices=DTYPES, default=None, help=argparse.SUPPRESS)
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
    parser.add_argument("--matmul-size", type=int, default=None,
                        help="n of the n x n matmul roofline (default: "
                        f"{MATMUL_SIZE['cpu']} on CPU, {MATMUL_SIZE['gpu']} on GPU)")  # fmt: skip
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
    elif cfg.quick:
        cfg.lengths = QUICK_LENGTHS
    # else: the device's default, set by `apply_device_defaults`.
    if cfg.dtypes is None and cfg.dtype is not None:
        cfg.dtypes = [cfg.dtype]
    if cfg.worker and cfg.dtype is None:
        cfg.dtype = "float32"
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
