"""Where the compile pause goes: tracing against XLA, keras_attention against Keras.

    python benchmarks/compile_time.py [--lengths 1024 2048 4096] [--runs 1]

Every cell runs in a fresh Python process (the first trace in a process pays
one-time costs a user pays too), on `(1, T, 4, 64)` float32 inputs, with
`tf.function(jit_compile=True)`:

- trace s: `get_concrete_function` (Python tracing, AutoGraph included);
- XLA s: the first call minus the fastest of three later calls;
- total s: the two together, the pause a user sees on a new shape;
- retrace s: tracing a second `tf.function` of the same step in the same
  process (what every further shape or model pays).

`keras.dpa` is `keras.ops.dot_product_attention`, `ka.chunked` is
`keras_attention.ops.dot_product_attention(implementation="chunked")`
(512-position tiles); fwd+bwd differentiates `sum(out ** 2)` with respect to
q, k and v with `tf.GradientTape` inside the compiled function.
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _worker(length, implementation, mode):
    sys.path.insert(0, REPO_ROOT)
    import numpy as np
    import tensorflow as tf

    import keras
    import keras_attention as ka

    rng = np.random.default_rng(0)
    q, k, v = (tf.constant(rng.standard_normal((1, length, 4, 64)).astype("float32")) for _ in range(3))

    def attention(q, k, v):
        if implementation == "keras.dpa":
            return keras.ops.dot_product_attention(q, k, v)
        return ka.ops.dot_product_attention(q, k, v, implementation="chunked")

    def step(q, k, v):
        if mode == "fwd":
            return attention(q, k, v)
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            out = attention(q, k, v)
            loss = tf.reduce_sum(out * out)
        return tape.gradient(loss, [q, k, v])

    def timed(call, fetch=True):
        start = time.perf_counter()
        result = call()
        if fetch:
            tf.nest.map_structure(lambda x: x.numpy(), result)
        return time.perf_counter() - start

    function = tf.function(step, jit_compile=True)
    trace = timed(lambda: function.get_concrete_function(q, k, v), fetch=False)
    first = timed(lambda: function(q, k, v))
    run = min(timed(lambda: function(q, k, v)) for _ in range(3))
    again = tf.function(step, jit_compile=True)
    retrace = timed(lambda: again.get_concrete_function(q, k, v), fetch=False)
    return {"trace_s": trace, "xla_s": max(first - run, 0.0), "run_ms": run * 1000, "retrace_s": retrace}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--implementations", nargs="+", default=["keras.dpa", "ka.chunked"],
                        choices=["keras.dpa", "ka.chunked"])
    parser.add_argument("--modes", nargs="+", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"])
    parser.add_argument("--worker", nargs=3, metavar=("T", "IMPLEMENTATION", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per cell")
    args = parser.parse_args(argv)
    if args.worker:
        length, implementation, mode = args.worker
        print(json.dumps(_worker(int(length), implementation, mode)))
        return 0
    print("| T | mode | implementation | trace s | XLA s | total s | total vs Keras | retrace s | run ms |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for mode in args.modes:
        for length in args.lengths:
            reference = None
            for implementation in args.implementations:
                try:
                    done = subprocess.run(
                        [sys.executable, os.path.abspath(__file__), "--worker", str(length), implementation, mode],
                        capture_output=True, text=True, timeout=args.timeout, env=env,
                    )
                except subprocess.TimeoutExpired:
                    print(f"| {length} | {mode} | `{implementation}` | timed out after {args.timeout:.0f} s | | | | | |")
                    continue
                if done.returncode != 0:
                    reason = (done.stderr.strip().splitlines() or ["no output"])[-1][:80]
                    print(f"| {length} | {mode} | `{implementation}` | failed: {reason} | | | | | |")
                    continue
                row = json.loads(done.stdout.strip().splitlines()[-1])
                total = row["trace_s"] + row["xla_s"]
                if implementation == "keras.dpa":
                    reference = total
                ratio = f"{total / reference:.2f}x" if reference else ""
                print(f"| {length} | {mode} | `{implementation}` | {row['trace_s']:.2f} | {row['xla_s']:.2f} | "
                      f"{total:.2f} | {ratio} | {row['retrace_s']:.2f} | {row['run_ms']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
