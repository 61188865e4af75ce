"""RegionalAttention against full attention: time and peak memory.

Every row is one layer on the same inputs, `(batch, T, 256)`, 4 heads of 64
(the setting of the issue): a training step (forward, then the gradients of
`sum(output * cotangent)` with respect to the input and every weight)
compiled with `tf.function(jit_compile=True)`, in a fresh worker process per
(row, length).

- time: median of `--repeats` steps after one warm-up (compile) step;
- peak: growth of the resident set over the steady-state steps (the peak is
  reset after compiling, so XLA's compile-time memory is not counted), i.e.
  the memory the step itself needs. A worker whose resident set passes
  `--max-memory-gib` is killed and reported as such.

Rows:
  keras.mha        keras.layers.MultiHeadAttention(num_heads=4, key_dim=64)
  ka.mha_exact     keras_attention MultiHeadAttention(implementation="exact")
  ka.sliding       RegionalAttention(window_size=W)            (window = W)
  ka.block         RegionalAttention(mode="block", region_size=W)
  ka.block_n1      RegionalAttention(mode="block", region_size=W, num_neighbors=1)

Usage (from the repository root):
    python benchmarks/regional_attention.py --lengths 4096 16384
    python benchmarks/regional_attention.py --lengths 4096 --causal --only ka.sliding
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROWS = ("keras.mha", "ka.mha_exact", "ka.sliding", "ka.block", "ka.block_n1")


def _status_kib(field, pid="self"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def worker(args):
    import numpy as np
    import tensorflow as tf
    import keras

    from keras_attention.layers.attention.multi_head_attention import MultiHeadAttention
    from keras_attention.layers.attention.regional_attention import RegionalAttention

    t, w = args.length, args.window
    common = {"num_heads": 4, "key_dim": 64}
    layer = {
        "keras.mha": lambda: keras.layers.MultiHeadAttention(**common),
        "ka.mha_exact": lambda: MultiHeadAttention(
            **common, implementation="exact"
        ),
        "ka.sliding": lambda: RegionalAttention(**common, window_size=w),
        "ka.block": lambda: RegionalAttention(
            **common, mode="block", region_size=w
        ),
        "ka.block_n1": lambda: RegionalAttention(
            **common, mode="block", region_size=w, num_neighbors=1
        ),
    }[args.row]()
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((args.batch, t, 256)), tf.float32)
    cot = tf.constant(rng.standard_normal((args.batch, t, 256)), tf.float32)
    layer(x[:, :8], x[:, :8])  # build

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x, x, use_causal_mask=args.causal)
            loss = tf.reduce_sum(out * cot)
        return tape.gradient(loss, [x] + layer.trainable_variables)

    start = time.perf_counter()
    [g.numpy() for g in step(x)]
    compile_s = time.perf_counter() - start
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark
    base = _status_kib("VmRSS")
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        [g.numpy() for g in step(x)]
        times.append(time.perf_counter() - start)
    peak = _status_kib("VmHWM")
    print(
        json.dumps(
            {
                "row": args.row,
                "length": t,
                "time_s": statistics.median(times),
                "compile_s": compile_s,
                "peak_mib": (peak - base) / 1024,
            }
        )
    )


def run(args, row, length):
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        row,
        "--lengths",
        str(length),
        "--window",
        str(args.window),
        "--batch",
        str(args.batch),
        "--repeats",
        str(args.repeats),
    ] + (["--causal"] if args.causal else [])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    cap = args.max_memory_gib * 1024 * 1024
    seen = 0
    start = time.time()
    while proc.poll() is None:
        rss = _status_kib("VmRSS", proc.pid) or 0
        seen = max(seen, rss)
        if rss > cap or time.time() - start > args.timeout:
            proc.kill()
            proc.wait()
            why = "memory" if rss > cap else "time"
            return {
                "row": row,
                "length": length,
                "killed": f"over {args.max_memory_gib:g} GiB"
                if why == "memory"
                else f"over {args.timeout:g} s",
            }
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode:
        return {"row": row, "length": length, "killed": err.strip()[-300:]}
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--only", default=",".join(ROWS))
    parser.add_argument("--max-memory-gib", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--worker", choices=ROWS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.row, args.length = args.worker, args.lengths[0]
        return worker(args)
    rows = [r for r in args.only.split(",") if r]
    print(
        f"| T | row | step s | peak MiB | vs keras.mha time | vs keras.mha peak |"
    )
    print("|---|---|---|---|---|---|")
    for length in args.lengths:
        results = {}
        for row in rows:
            r = run(args, row, length)
            results[row] = r
            print(json.dumps(r), file=sys.stderr, flush=True)
        ref = results.get("keras.mha", {})
        for row in rows:
            r = results[row]
            if "killed" in r:
                print(f"| {length} | {row} | killed: {r['killed']} | | | |")
                continue
            speed = peak = ""
            if "time_s" in ref:
                speed = f"{ref['time_s'] / r['time_s']:.1f}x faster"
                peak = f"{r['peak_mib'] / max(ref['peak_mib'], 1e-9):.3f}x"
            print(
                f"| {length} | {row} | {r['time_s']:.3f} | "
                f"{r['peak_mib']:.0f} | {speed} | {peak} |"
            )


if __name__ == "__main__":
    main()
