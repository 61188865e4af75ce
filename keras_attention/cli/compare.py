"""`keras-attention compare`: several attention variants, one budget, one table.

Each variant is trained by `keras-attention fit` in its own process (so peak
memory is that variant's own), with the same data, model size, epochs and
steps. The table (markdown + JSON) and a bar plot go into `--output`.
"""

import json
import os
import subprocess
import sys

from keras_attention.cli.options import UsageError
from keras_attention.cli.options import check_attention
from keras_attention.cli.options import model_options
from keras_attention.cli.options import parse_json

DEFAULT_VARIANTS = ("multi_head", "regional", "linear", "low_rank", "sparse")
FAILED = 1


def add_parser(sub, add_data, add_model, add_training):
    parser = sub.add_parser(
        "compare",
        help="train several attention variants with the same budget, print a table",
        description=(
            "Train each attention variant on the same task with the same model "
            "size and budget (each in its own process), then print and save "
            "a table of test accuracy, training steps/s, peak memory and "
            "parameters (comparison.md, comparison.json, comparison.png)."
        ),
    )
    add_data(parser)
    parser.add_argument(
        "--attention",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        metavar="NAME",
        help=f"variants to compare (default: {' '.join(DEFAULT_VARIANTS)})",
    )
    add_model(parser)
    add_training(parser)
    parser.add_argument("--output", default=None, help="output folder (default runs/compare-<task>)")
    parser.add_argument("--maps", type=int, default=1, help="attention maps per variant")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="re-train variants whose folders already hold finished runs (default: refuse)",
    )
    parser.set_defaults(handler=run)
    return parser


def _fit_command(args, variant, output):
    command = [sys.executable, "-m", "keras_attention.cli", "fit", "--task", args.task]
    command += ["--attention", variant, "--output", output, "--maps", str(args.maps)]
    command += ["--seed", str(args.seed), "--no-export"]
    if args.overwrite:
        command.append("--overwrite")
    for flag in (
        "dataset", "data_dir", "hidden_dim", "layers", "heads", "intermediate_dim",
        "dropout", "epochs", "steps", "batch_size", "learning_rate", "attention_kwargs",
    ):
        value = getattr(args, flag)
        if value is not None:
            command += ["--" + flag.replace("_", "-"), str(value)]
    for option in args.option:
        command += ["--option", option]
    return command


def _row(variant, metrics, monitor):
    test = metrics["test"]
    return {
        "attention": variant,
        monitor: test.get(monitor),
        "loss": test.get("loss"),
        "steps_per_second": metrics["steps_per_second"],
        "peak_memory_mib": metrics["peak_memory_mib"],
        "parameters": metrics["parameters"],
        "train_seconds": metrics["train_seconds"],
    }


def markdown_table(rows, monitor, baselines):
    header = f"| attention | test {monitor} | steps/s | peak memory (MiB) | parameters | train time (s) |"
    lines = [header, "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['attention']} | {row['error']} | | | | |")
            continue
        lines.append(
            f"| {row['attention']} | {row[monitor]:.4f} | {row['steps_per_second'] or 0:.2f} | "
            f"{row['peak_memory_mib']:.0f} | {row['parameters']:,} | {row['train_seconds']:.0f} |"
        )
    for name, value in baselines.items():
        lines.append(f"| *{name.replace('_', ' ')}* | {value:.4f} | | | | |")
    return "\n".join(lines)


def _plot(rows, monitor, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if "error" not in r]
    if not done:
        return None
    names = [r["attention"] for r in done]
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for axis, key, label in (
        (axes[0], monitor, f"test {monitor}"),
        (axes[1], "steps_per_second", "training steps/s"),
        (axes[2], "peak_memory_mib", "peak memory (MiB)"),
    ):
        axis.bar(names, [r[key] or 0 for r in done], color="tab:blue")
        axis.set_title(label)
        axis.tick_params(axis="x", labelrotation=30)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def run(args):
    from keras_attention.tasks import get_task

    for variant in args.attention:
        check_attention(variant)
    parse_json("--attention-kwargs", args.attention_kwargs)
    task = get_task(args.task)
    try:
        task.check_options(model_options(args))
    except ValueError as error:
        raise UsageError(str(error)) from None
    output = args.output or os.path.join("runs", f"compare-{args.task}")
    os.makedirs(output, exist_ok=True)
    rows, baselines = [], {}
    for i, variant in enumerate(args.attention):
        folder = os.path.join(output, variant)
        print(f"[keras-attention] compare {i + 1}/{len(args.attention)}: {variant}", flush=True)
        result = subprocess.run(_fit_command(args, variant, folder))
        if result.returncode == 130:
            print("[keras-attention] interrupted; re-run to resume this variant", file=sys.stderr)
            return 130
        metrics_path = os.path.join(folder, "metrics.json")
        if result.returncode != 0 or not os.path.exists(metrics_path):
            rows.append({"attention": variant, "error": f"failed (exit {result.returncode})"})
            continue
        with open(metrics_path) as f:
            metrics = json.load(f)
        baselines = metrics["baselines"]
        rows.append(_row(variant, metrics, task.monitor))
    table = markdown_table(rows, task.monitor, baselines)
    with open(os.path.join(output, "comparison.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(output, "comparison.json"), "w") as f:
        json.dump({"task": args.task, "rows": rows, "baselines": baselines}, f, indent=2)
    plot = _plot(rows, task.monitor, os.path.join(output, "comparison.png"))
    print(table)
    print(
        f"[keras-attention] wrote comparison.md, comparison.json"
        + (", comparison.png" if plot else "")
        + f" in {output}"
    )
    return FAILED if any("error" in r for r in rows) else 0
