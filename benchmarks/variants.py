"""Every keras_attention attention variant against full attention and Keras.

The Long Range Arena speed/memory table, re-measured: one self-attention layer
on `(1, T, 256)` inputs, 4 heads x key_dim 64, a training step (the output
plus the gradients of `sum(output * cotangent)` with respect to the input and
every trainable weight) compiled with `tf.function(jit_compile=True)`, for
T = 1024 ... 16384 (on GPU up to 65536), in float32 (on GPU also float16 and
bfloat16: ``--dtypes``). Each (row, T, dtype) runs in a fresh worker
subprocess with the machinery of benchmarks/attention.py (resident-memory cap,
timeout, timing, "other CPU" contention figure) and its device
(benchmarks/device.py: on GPU the memory columns hold TensorFlow's GPU
allocator peak); see benchmarks/README.md.

Rows (select with ``--only``); each variant comes from
``keras_attention.layers.get(name, num_heads=4, key_dim=64, **kwargs)``:

  keras.mha        keras.layers.MultiHeadAttention                 (memory reference)
  full             keras_attention.layers.MultiHeadAttention(implementation="exact")
                                                                   (speed reference)
  multi_head       get("multi_head", implementation=None)          auto: chunked for long T
  regional.sliding get("regional", mode="sliding", window_size=128)
  regional.block   get("regional", mode="block", region_size=128)
  linear           get("linear", feature_map="elu")
  low_rank         get("low_rank", max_length=T, rank=128)         (not with --causal)
  sparse           get("sparse", pattern="bigbird")
  distributed      get("distributed", num_shards=4)

A row whose import or construction fails prints "n/a" and the run goes on.

Usage (from the repository root)::

    python benchmarks/variants.py --quick                  # T = 1024 only
    python benchmarks/variants.py                          # T = 1024 ... 16384
    python benchmarks/variants.py --lengths 1024,4096 --only full,linear,sparse
    python benchmarks/variants.py --causal --timeout 600 --max-memory-gib 12
    python benchmarks/variants.py --dtypes float32,bfloat16 --lengths 4096
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import device  # noqa: E402  (benchmarks/device.py)
from attention import (  # noqa: E402  (benchmarks/attention.py)
    DTYPES,
    GIB,
    INTERRUPTED_NOTE,
    REPO_ROOT,
    _dtype_list,
    _fmt,
    _import_tensorflow,
    _int_list,
    _progress,
    _emit,
    _start_meter,
    _tail,
    _time_and_emit,
    dtypes_text,
    machine_info,
    run_worker,
)

DEFAULT_LENGTHS = [1024, 2048, 4096, 8192, 16384]
GPU_LENGTHS = DEFAULT_LENGTHS + [32768, 65536]  # a series stops at its OOM
QUICK_LENGTHS = [1024]
SPEED_REFERENCE = "full"
MEMORY_REFERENCE = "keras.mha"

# name -> (description, registry name or None, kwargs; "T" is replaced by T).
ROWS = {
    "keras.mha": ("keras.layers.MultiHeadAttention", None, {}),
    "full": (
        'keras_attention.layers.MultiHeadAttention(implementation="exact")',
        None,
        {"implementation": "exact"},
    ),
    "multi_head": (
        'get("multi_head", implementation=None) (auto: chunked at long T)',
        "multi_head",
        {"implementation": None},
    ),
    "regional.sliding": (
        'get("regional", mode="sliding", window_size=128)',
        "regional",
        {"mode": "sliding", "window_size": 128},
    ),
    "regional.block": (
        'get("regional", mode="block", region_size=128)',
        "regional",
        {"mode": "block", "region_size": 128},
    ),
    "linear": ('get("linear", feature_map="elu")', "linear", {"feature_map": "elu"}),
    "low_rank": (
        'get("low_rank", max_length=T, rank=128)',
        "low_rank",
        {"max_length": "T", "rank": 128},
    ),
    "sparse": ('get("sparse", pattern="bigbird")', "sparse", {"pattern": "bigbird"}),
    "distributed": (
        'get("distributed", num_shards=4)',
        "distributed",
        {"num_shards": 4},
    ),
}
NO_CAUSAL = {"low_rank": "low_rank refuses causal attention"}


# --------------------------------------------------------------------------
# Worker
# --------------------------------------------------------------------------


def _make_layer(cfg, keras):
    _, registry_name, kwargs = ROWS[cfg.row]
    kwargs = {k: cfg.length if v == "T" else v for k, v in kwargs.items()}
    common = {"num_heads": cfg.heads, "key_dim": cfg.head_dim}
    if cfg.row == "keras.mha":
        return keras.layers.MultiHeadAttention(**common)
    if registry_name is None:
        from keras_attention.layers import MultiHeadAttention

        return MultiHeadAttention(**common, **kwargs)
    from keras_attention import layers

    return layers.get(registry_name, **common, **kwargs)


def _worker(cfg):
    started = time.perf_counter()
    deadline = started + 0.8 * cfg.timeout
    tf, keras = _import_tensorflow()
    import numpy as np

    versions = {"tensorflow": tf.__version__, "keras": keras.__version__,
                "backend": keras.backend.backend(),
                "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()}  # fmt: skip
    causal = cfg.causal
    info = device.describe(tf)
    # Every layer, Keras' included, runs under the policy of the cell's
    # dtype: mixed precision (float32 weights) for float16 and bfloat16.
    keras.config.set_dtype_policy(device.layer_policy(cfg.dtype))
    try:
        layer = _make_layer(cfg, keras)
        # Build eagerly on a short input (weights do not depend on the length
        # of the call; low_rank's depend on max_length, which is T).
        tiny = keras.ops.zeros((cfg.batch, min(cfg.length, 512), cfg.model_dim))
        layer(tiny, tiny, use_causal_mask=causal)
    except Exception as exc:  # Missing module or variant, bad argument.
        _emit({"status": "unavailable", "message": f"{type(exc).__name__}: {exc}",
               **versions})  # fmt: skip
        return

    rng = np.random.default_rng(cfg.seed)
    shape = (cfg.batch, cfg.length, cfg.model_dim)
    x, cotangent = device.place(tf, info, [
        tf.cast(tf.constant(rng.standard_normal(shape, dtype=np.float32)), cfg.dtype)
        for _ in range(2)])  # fmt: skip
    variables = list(layer.trainable_variables)

    @tf.function(jit_compile=cfg.xla)
    def step(x, cotangent):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x, x, use_causal_mask=causal)  # self-attention
            loss = tf.reduce_sum(out * cotangent)
        return out, tape.gradient(loss, [x] + variables)

    meter = _start_meter(tf, info, cfg.max_memory_gib)
    _time_and_emit(tf, step, (x, cotangent), cfg, deadline, meter, started,
                   extra=versions)  # fmt: skip


# --------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------


def _worker_args(cfg, row, length, dtype="float32"):
    args = [
        "--row", row, "--length", str(length), "--dtype", dtype,
        "--batch", str(cfg.batch), "--heads", str(cfg.heads),
        "--head-dim", str(cfg.head_dim), "--model-dim", str(cfg.model_dim),
        "--repeats", str(cfg.repeats), "--warmup", str(cfg.warmup),
        "--min-time", str(cfg.min_time), "--timeout", str(cfg.timeout),
        "--max-memory-gib", str(cfg.max_memory_gib), "--seed", str(cfg.seed),
    ]  # fmt: skip
    if cfg.causal:
        args.append("--causal")
    if not cfg.xla:
        args.append("--no-xla")
    return args


def _run_cells(cfg, results):
    """Fills `results[(row, T, dtype)]`, shortest T first (every dtype at one T
    before the next T, so that an interrupted run has all of them); a
    (row, dtype) series stops at its first failure."""
    max_rss = int(cfg.max_memory_gib * GIB) if cfg.max_memory_gib else None
    total = len(cfg.rows) * len(cfg.lengths) * len(cfg.dtypes)
    several = len(cfg.dtypes) > 1
    stopped = {}  # (row, dtype) -> the status that ended its series
    done = 0
    for length in cfg.lengths:
        for dtype in cfg.dtypes:
            for row in cfg.rows:
                done += 1
                key = (row, length, dtype)
                if cfg.causal and row in NO_CAUSAL:
                    results[key] = {"status": "unavailable",
                                    "message": NO_CAUSAL[row]}  # fmt: skip
                    continue
                if (row, dtype) in stopped:
                    status = stopped[(row, dtype)]
                    results[key] = {"status": "unavailable" if status == "unavailable"
                                    else "skipped"}  # fmt: skip
                    continue
                _progress(f"[{done}/{total}] {row} T={length}"
                          f"{' ' + dtype if several else ''} ...")  # fmt: skip
                r = run_worker(_worker_args(cfg, row, length, dtype), cfg.timeout,
                               max_rss, script=__file__)  # fmt: skip
                results[key] = r
                if r["status"] == "ok":
                    peak, delta = device.memory_cells(cfg.device, r)
                    _progress(
                        f"    {1 / r['median_s']:.2f} steps/s, peak "
                        f"{_fmt(peak, '.0f')} MiB, Δ {_fmt(delta, '.0f')} MiB, "
                        f"other CPU {_fmt(r.get('other_cpu_pct'), '.0f')}%"
                    )
                else:
                    stopped[(row, dtype)] = r["status"]
                    _progress(f"    {r['status']}: {_tail(r.get('message', ''), 2)}")
    return results


_LABELS = {"oom": "OOM", "timeout": "timeout", "unavailable": "n/a",
           "skipped": "skipped", "error": "error"}  # fmt: skip


def _ok(r):
    return r is not None and r["status"] == "ok"


def _delta(cfg, r):
    """The Δ memory of result `r` in the device's measure (Δ RSS on CPU)."""
    return device.memory_cells(cfg.device, r)[1]


def _ratios(cfg, results, row, length, dtype):
    """(speed vs full, memory vs keras): steps/s ratio and Δ memory ratio,
    each against the reference at the same T and dtype."""
    r = results.get((row, length, dtype))
    full = results.get((SPEED_REFERENCE, length, dtype))
    keras_ = results.get((MEMORY_REFERENCE, length, dtype))
    speed = memory = None
    if _ok(r) and _ok(full):
        speed = full["median_s"] / r["median_s"]
    if _ok(r) and _ok(keras_):
        mine, reference = _delta(cfg, r), _delta(cfg, keras_)
        if mine is not None and reference is not None and reference > 0:
            memory = mine / reference
    return speed, memory


def _x(value):
    return _fmt(value, ".2f") + ("×" if value is not None else "")


def table_markdown(cfg, results):
    several = len(cfg.dtypes) > 1
    peak_column, delta_column = device.MEMORY[cfg.device["kind"]]["columns"]
    columns = ["T", *(["dtype"] if several else []), "variant", "steps/s",
               "speed vs full", "median ms", peak_column, delta_column,
               "memory vs keras", "compile s", "runs", "other CPU %"]  # fmt: skip
    lefts = 2 + several  # T (right), then dtype and variant (left)
    lines = [
        "## Forward+backward, every (variant, T)",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(["---:"] + [":---"] * (lefts - 1)
                       + ["---:"] * (len(columns) - lefts)) + "|",
    ]  # fmt: skip
    for length in cfg.lengths:
        for dtype in cfg.dtypes:
            for row in cfg.rows:
                r = results.get((row, length, dtype))
                if r is None:
                    continue
                cells = [str(length), *([dtype] if several else []), f"`{row}`"]
                if r["status"] == "ok":
                    speed, memory = _ratios(cfg, results, row, length, dtype)
                    peak, delta = device.memory_cells(cfg.device, r)
                    cells += [
                        f"{1 / r['median_s']:.2f}",
                        _x(speed),
                        f"{r['median_s'] * 1e3:.1f}",
                        _fmt(peak, ".0f"),
                        _fmt(delta, ".0f"),
                        _x(memory),
                        f"{r['compile_s']:.1f}",
                        str(len(r["times_s"])),
                        _fmt(r.get("other_cpu_pct"), ".0f"),
                    ]
                else:
                    cells += ([_LABELS[r["status"]]]
                              + ["—"] * (len(columns) - len(cells) - 1))  # fmt: skip
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_markdown(cfg, results):
    """LRA layout: one row per variant (and dtype), speed and memory ratios per T."""
    several = len(cfg.dtypes) > 1
    heads = [f"speed T={t}" for t in cfg.lengths] + [f"mem T={t}" for t in cfg.lengths]
    lines = [
        "## Summary (Long Range Arena layout)",
        "",
        "| variant | " + ("dtype | " if several else "") + " | ".join(heads) + " |",
        "|:---|" + (":---|" if several else "") + "---:|" * len(heads),
    ]
    for dtype in cfg.dtypes:
        for row in cfg.rows:
            speeds, mems = [], []
            for length in cfg.lengths:
                r = results.get((row, length, dtype))
                speed, memory = _ratios(cfg, results, row, length, dtype)
                label = "—" if r is None else _LABELS.get(r["status"], "—")
                speeds.append(_x(speed) if speed is not None else label)
                mems.append(_x(memory) if memory is not None else label)
            name = f"`{row}` | {dtype}" if several else f"`{row}`"
            lines.append(f"| {name} | " + " | ".join(speeds + mems) + " |")
    return "\n".join(lines)


def header_markdown(cfg, info):
    compiler = "XLA (tf.function(jit_compile=True))" if cfg.xla else "tf.function"
    mem = f"{info['memory_gib']:.1f} GiB RAM" if info["memory_gib"] else ""
    return "\n".join([
        "# Attention variants: speed and memory (forward+backward)",
        "",
        f"- Machine: {info['cpu']}, {info['cpu_count']} CPUs "
        f"({info['usable_cpus']} usable), {mem}, {info['platform']}",
        f"- Device: {device.summary(info['device'])}",
        f"- Software: Python {info['python']}, TensorFlow {info.get('tensorflow')}, "
        f"Keras {info.get('keras')} (backend {info.get('backend')})",
        f"- Config: self-attention, batch {cfg.batch}, model dim {cfg.model_dim}, "
        f"{cfg.heads} heads x key_dim {cfg.head_dim}, {dtypes_text(cfg.dtypes)}, "
        f"{'causal' if cfg.causal else 'non-causal'}, {compiler}; gradients "
        "w.r.t. the input and all weights",
        f"- Timing: median of at least {cfg.repeats} steps and {cfg.min_time:g} s "
        f"after compile and {cfg.warmup} warm-up step(s); one subprocess per "
        f"cell; caps {cfg.max_memory_gib:g} GiB resident, {cfg.timeout:g} s",
    ])  # fmt: skip


MEMORY_NOTES = {
    "cpu": "memory vs keras = Δ RSS ÷ Δ RSS of `keras.mha` at the same T; "
    "<1 uses less. peak RSS = ru_maxrss of the worker (TensorFlow included); "
    "Δ RSS = peak minus the resident size after imports, building and input "
    "creation (compilation included).",
    "gpu": "memory vs keras = Δ GPU ÷ Δ GPU of `keras.mha` at the same T and "
    "dtype; <1 uses less. peak GPU = the peak of TensorFlow's GPU allocator "
    "(bytes in use on GPU:0, tf.config.experimental.get_memory_info) over the "
    "timed steps, its statistics reset after the compiling step and the "
    "warm-up; Δ GPU = that peak minus the bytes in use at the reset (input and "
    "weights): the step's working memory. The worker's resident memory is in "
    "the JSON (peak_rss_mib).",
}


def footer_markdown(cfg, results):
    lines = [
        "",
        "steps/s = 1 / median step time. speed vs full = steps/s ÷ steps/s of "
        "`full` (exact keras_attention MultiHeadAttention) at the same T"
        + (" and dtype" if len(cfg.dtypes) > 1 else "") + "; >1 is "
        f"faster. {MEMORY_NOTES[cfg.device['kind']]} other CPU % = CPU time "
        "used by other processes while the cell was timed, as a share of all "
        "CPUs.",
    ]  # fmt: skip
    mixed = [d for d in cfg.dtypes if device.layer_policy(d) != d]
    if mixed:
        lines.append(
            "dtypes: every row, `keras.mha` included, runs under the Keras "
            "dtype policy " + ", ".join(f"`{device.layer_policy(d)}`" for d in mixed)
            + " (float32 weights, computation in the row's dtype) on an input "
            "in that dtype."
        )
    lines += ["", "Rows:"]
    lines += [f"- `{row}`: {ROWS[row][0]}" for row in cfg.rows]
    several = len(cfg.dtypes) > 1
    notes = sorted({
        f"- `{row}` T={length}{f' {dtype}' if several else ''}: {r['status']}: "
        f"{r.get('message', '')}".replace("\n", " ")[:300]
        for (row, length, dtype), r in results.items()
        if r["status"] in ("oom", "timeout", "error", "unavailable") and r.get("message")
    })  # fmt: skip
    if notes:
        lines += ["", "Failures and n/a:"] + notes
    return "\n".join(lines)


def apply_device_defaults(cfg, device_info):
    """Fills the options left to the device: dtypes and lengths."""
    cfg.device = device_info
    if cfg.dtypes is None:
        cfg.dtypes = device.default_dtypes(device_info)
    if cfg.lengths is None:
        cfg.lengths = GPU_LENGTHS if device_info["kind"] == "gpu" else DEFAULT_LENGTHS
    return cfg


def run_benchmark(cfg):
    device_info = device.probe()
    apply_device_defaults(cfg, device_info)
    _progress(f"device: {device.summary(device_info)}")
    interrupted = False
    results = {}
    try:
        _run_cells(cfg, results)
    except KeyboardInterrupt:
        interrupted = True
        _progress("interrupted: reporting the cells measured so far")
    versions = next((r for r in results.values() if "tensorflow" in r), {})
    info = machine_info(versions, device_info)
    header = header_markdown(cfg, info)
    if interrupted:
        header += f"\n{INTERRUPTED_NOTE}"
    markdown = "\n\n".join([header, table_markdown(cfg, results),
                            summary_markdown(cfg, results),
                            footer_markdown(cfg, results)])  # fmt: skip
    print(markdown, flush=True)
    if cfg.output:
        base = Path(cfg.output).with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        base.with_suffix(".md").write_text(markdown + "\n")
        payload = {
            "machine": info,
            "config": {k: v for k, v in vars(cfg).items()
                       if k not in ("worker", "row", "length", "output", "dtype",
                                    "device")},
            "results": [{"variant": row, "length": t, "dtype": d, **r}
                        for (row, t, d), r in results.items()],
        }  # fmt: skip
        base.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
        _progress(f"wrote {base.with_suffix('.md')} and {base.with_suffix('.json')}")
    return 130 if interrupted else 0


def _row_list(value):
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(names) - set(ROWS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown row(s) {unknown}; choose from {', '.join(ROWS)}"
        )
    return names


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--lengths", nargs="+", default=None, metavar="T",
        help="sequence lengths, space or comma separated "
        f"(default {','.join(map(str, DEFAULT_LENGTHS))}; on GPU up to "
        f"{GPU_LENGTHS[-1]})")  # fmt: skip
    add("--dtypes", type=_dtype_list, default=None, metavar="DTYPES",
        help=f"comma-separated dtypes, each a row of the tables: {', '.join(DTYPES)} "
        "(default: float32 on CPU, float32,float16,bfloat16 on GPU); float16 "
        "and bfloat16 run every layer under mixed_float16 / mixed_bfloat16")  # fmt: skip
    add("--quick", action="store_true",
        help=f"lengths {QUICK_LENGTHS}, 3 repeats, 0.3 s")  # fmt: skip
    add("--only", type=_row_list, default=None, metavar="ROWS",
        help="comma-separated rows (default: all); keep `full` and `keras.mha` "
        "for the ratios")  # fmt: skip
    add("--causal", action="store_true", help="causal self-attention (skips low_rank)")
    add("--no-xla", dest="xla", action="store_false", help="plain tf.function")
    add("--batch", type=int, default=1, help="(default: %(default)s)")
    add("--heads", type=int, default=4, help="(default: %(default)s)")
    add("--head-dim", type=int, default=64, help="key_dim (default: %(default)s)")
    add("--model-dim", type=int, default=256, help="(default: %(default)s)")
    add("--repeats", type=int, default=None, help="timed steps (default 5, 3 with --quick)")
    add("--min-time", type=float, default=None,
        help="seconds to time at least (default 1.0, 0.3 with --quick)")  # fmt: skip
    add("--warmup", type=int, default=1, help="(default: %(default)s)")
    add("--timeout", type=float, default=300.0,
        help="seconds per cell, worker start to finish (default: %(default)s)")  # fmt: skip
    add("--max-memory-gib", type=float, default=16.0,
        help="resident-memory cap per worker; 0 disables (default: %(default)s)")  # fmt: skip
    add("--seed", type=int, default=0, help="(default: %(default)s)")
    add("--output", default=None, metavar="PATH", help="also write PATH.md, PATH.json")
    add("--worker", action="store_true", help=argparse.SUPPRESS)
    add("--row", choices=list(ROWS), help=argparse.SUPPRESS)
    add("--length", type=int, help=argparse.SUPPRESS)
    add("--dtype", choices=DTYPES, default="float32", help=argparse.SUPPRESS)
    cfg = parser.parse_args(argv)
    if cfg.lengths is not None:
        cfg.lengths = sorted(set(_int_list(cfg.lengths)))
    elif cfg.quick:
        cfg.lengths = QUICK_LENGTHS
    # else: the device's default, set by `apply_device_defaults`.
    if cfg.repeats is None:
        cfg.repeats = 3 if cfg.quick else 5
    if cfg.min_time is None:
        cfg.min_time = 0.3 if cfg.quick else 1.0
    cfg.rows = cfg.only or list(ROWS)
    return cfg


def main(argv=None):
    cfg = parse_args(argv)
    if cfg.worker:
        sys.path.insert(0, str(REPO_ROOT))  # the working tree, not an install
        _worker(cfg)
        return 0
    return run_benchmark(cfg)


if __name__ == "__main__":
    sys.exit(main())
