"""Draws the documentation's benchmark plots from the measured tables.

Reads the markdown tables that the benchmarks wrote (nothing is measured
here) and writes PNGs into docs/images/ for docs/choosing.md:

- `variants_speed.png`, `variants_memory.png`: every attention variant,
  forward + backward at T = 4096, from docs/benchmark_variants_cpu.md
  (`python benchmarks/variants.py --lengths 4096`);
- `listops_accuracy.png`: test accuracy per variant on the default ListOps,
  from the README's `keras-attention compare` table;
- `layer_scaling.png`: `keras_attention.layers.MultiHeadAttention` against
  `keras.layers.MultiHeadAttention` by sequence length (time, and the share
  of the machine's matmul roofline), from docs/benchmark_layer_cpu.md and
  docs/benchmark_attention_forward_cpu.md
  (`python benchmarks/attention.py --layers`).

    python benchmarks/plot_docs.py [--output docs/images]
"""

import argparse
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def markdown_tables(path):
    """Every pipe table in a markdown file, as lists of row dicts keyed by
    the header cells (backticks and bold marks removed)."""
    tables, block = [], []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines() + [""]
    for line in lines:
        if line.startswith("|"):
            block.append(line)
            continue
        if len(block) > 2:
            cells = [[c.strip().strip("`*").strip() for c in row.strip("|").split("|")] for row in block]
            header, rows = cells[0], cells[2:]
            tables.append([dict(zip(header, row)) for row in rows])
        block = []
    return tables


def table_with(path, *columns):
    """The first table of `path` that has all `columns`."""
    for table in markdown_tables(path):
        if table and all(c in table[0] for c in columns):
            return table
    raise ValueError(f"no table with columns {columns} in {path}")


def number(text):
    return float(re.sub(r"[^0-9.eE+-]", "", text))


def roofline(path):
    """The matmul roofline (GFLOP/s) stated in a benchmark page's header."""
    with open(path, encoding="utf-8") as f:
        match = re.search(r"Matmul roofline: ([0-9.]+) GFLOP/s", f.read())
    return float(match.group(1))


def _bars(plt, names, values, xlabel, title, labels, path, reference=None):
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.3))
    positions = range(len(names))
    ax.barh(positions, values, color=["#999999" if n.startswith("keras") else "#3f7fbf" for n in names])
    ax.set_yticks(list(positions), names)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    for y, (value, label) in enumerate(zip(values, labels)):
        ax.text(value, y, f" {label}", va="center", fontsize=8)
    if reference is not None:
        ax.axvline(reference[0], color="#bf3f3f", linestyle="--", linewidth=1)
        ax.text(reference[0], len(names) - 0.4, f" {reference[1]}", color="#bf3f3f", fontsize=8)
    ax.set_xlim(0, max(values) * 1.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_variants(plt, output):
    path = os.path.join(ROOT, "docs", "benchmark_variants_cpu.md")
    rows = [r for r in table_with(path, "T", "variant", "steps/s", "Δ RSS MiB") if r["T"] == "4096"]
    names = [r["variant"] for r in rows]
    speed = [number(r["steps/s"]) for r in rows]
    memory = [number(r["Δ RSS MiB"]) for r in rows]
    title = "forward + backward, T = 4096, dim 256, 4 heads, XLA, 2-core CPU\n(docs/benchmark_variants_cpu.md)"
    _bars(plt, names, speed, "training steps per second (higher is faster)", title,
          [r["speed vs full"] + " full" for r in rows], os.path.join(output, "variants_speed.png"))
    _bars(plt, names, memory, "memory added by the step, Δ RSS MiB (lower is better)", title,
          [r["memory vs keras"] + " keras" for r in rows], os.path.join(output, "variants_memory.png"))


def plot_listops(plt, output):
    rows = table_with(os.path.join(ROOT, "README.md"), "attention", "test accuracy", "steps/s")
    majority = [r for r in rows if "majority" in r["attention"]]
    rows = [r for r in rows if "majority" not in r["attention"]]
    names = [r["attention"] for r in rows]
    accuracy = [number(r["test accuracy"]) for r in rows]
    reference = (number(majority[0]["test accuracy"]), "majority class") if majority else None
    _bars(plt, names, accuracy, "test accuracy (10 classes)",
          "ListOps (default, 32-128 tokens), 3 epochs each, keras-attention compare\n(README)",
          [f"{a:.3f}" for a in accuracy], os.path.join(output, "listops_accuracy.png"), reference)


def plot_layer_scaling(plt, output):
    layer_path = os.path.join(ROOT, "docs", "benchmark_layer_cpu.md")
    forward_path = os.path.join(ROOT, "docs", "benchmark_attention_forward_cpu.md")
    layer = table_with(layer_path, "T", "implementation", "median ms", "% matmul")
    forward = table_with(forward_path, "T", "implementation", "median ms", "% matmul")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    series = [
        (layer, "keras.mha_layer", "keras.layers.MultiHeadAttention, fwd+bwd", "#999999", "-"),
        (layer, "ka.mha_layer", "ka.layers.MultiHeadAttention, fwd+bwd", "#3f7fbf", "-"),
        (forward, "keras.dpa", "keras.ops.dot_product_attention, fwd", "#999999", "--"),
        (forward, "ka.chunked", "ka chunked core, fwd", "#3f7fbf", "--"),
    ]
    for table, name, label, color, style in series:
        rows = [r for r in table if r["implementation"] == name]
        lengths = [int(r["T"]) for r in rows]
        left.plot(lengths, [number(r["median ms"]) for r in rows], style, marker="o", color=color, label=label)
        right.plot(lengths, [number(r["% matmul"]) for r in rows], style, marker="o", color=color, label=label)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length T")
    left.set_yscale("log")
    left.set_ylabel("median ms per call")
    left.legend(fontsize=7)
    # Each page's % column is against the roofline measured in its own run.
    peaks = sorted((roofline(layer_path), roofline(forward_path)))
    right.axhline(100, color="#bf3f3f", linestyle="--", linewidth=1)
    right.text(256, 93, f"matmul roofline: {peaks[0]:.0f}-{peaks[1]:.0f} GFLOP/s (the machine's limit)",
               color="#bf3f3f", fontsize=8)
    right.set_ylim(0, 110)
    right.set_ylabel("% of the matmul roofline")
    fig.suptitle("batch 1, 4 heads x 64, float32, XLA, 2-core CPU "
                 "(docs/benchmark_layer_cpu.md, docs/benchmark_attention_forward_cpu.md)", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(output, "layer_scaling.png"), dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "images"))
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(args.output, exist_ok=True)
    plot_variants(plt, args.output)
    plot_listops(plt, args.output)
    plot_layer_scaling(plt, args.output)
    for name in sorted(os.listdir(args.output)):
        print(os.path.join(args.output, name))


if __name__ == "__main__":
    main()
