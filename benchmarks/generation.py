"""Generation speed of `language_model`: time per new token against prompt
length, with and without the key/value cache.

`generate(..., use_cache=True)` prefills the caches with the prompt in one
call, then runs one XLA-compiled loop that feeds only the newest token per
step, so the cost per new token is one position plus attention over the
cache. Without the cache every step runs the whole buffer. The table gives
the time of `generate` with one new token (the prefill) and the time per
new token, `(t(2n) - t(n)) / n` for `n = --new-tokens` (fixed costs
cancel), each time the best of `--repeats` calls after a compiling call,
for an untrained model (speed does not depend on the weights).

    python benchmarks/generation.py
    python benchmarks/generation.py --prompts 64 512 1536 --new-tokens 64
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, nargs="+", default=[32, 256, 960])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--vocabulary-size", type=int, default=8000)
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-uncached", action="store_true", help="skip the runs without cache")
    return parser.parse_args(argv)


def best_time(function, repeats):
    function()  # trace and compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    args = parse_arguments(argv)
    import numpy as np

    from keras_attention.models import generate
    from keras_attention.models import language_model

    length = max(args.prompts) + 2 * args.new_tokens
    model = language_model(args.vocabulary_size, length, hidden_dim=args.hidden_dim,
                           num_layers=args.num_layers, num_heads=args.num_heads)
    rng = np.random.default_rng(0)
    rows = []
    for prompt in args.prompts:
        ids = rng.integers(1, args.vocabulary_size, (args.batch_size, prompt)).astype("int32")
        row = {"prompt": prompt}
        prefill = best_time(lambda: generate(model, ids, 1), args.repeats)
        row["prefill"] = prefill
        for cached in (True, False):
            if not cached and args.no_uncached:
                continue
            short, long = (
                best_time(lambda: generate(model, ids, n, use_cache=cached), args.repeats)
                for n in (args.new_tokens, 2 * args.new_tokens)
            )
            row["cached" if cached else "uncached"] = (long - short) / args.new_tokens
        rows.append(row)
        print(row, flush=True)
    print()
    print(f"| prompt tokens | prefill (ms) | ms per new token, cache | ms per new token, no cache |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        uncached = f"{row['uncached'] * 1000:.2f}" if "uncached" in row else "-"
        print(f"| {row['prompt']} | {row['prefill'] * 1000:.1f} | {row['cached'] * 1000:.2f} | {uncached} |")
    print(f"\nbatch {args.batch_size}, {args.num_layers} blocks of width {args.hidden_dim}, buffer of {length} "
          f"positions; per-token time = (t({2 * args.new_tokens} new) - t({args.new_tokens} new)) / {args.new_tokens}")
    return rows


if __name__ == "__main__":
    main()
