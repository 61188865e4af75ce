"""Does a bounded search beat the default configuration on ListOps?

On the embedded ListOps (default `small` config: 20,000 / 2,000 / 2,000
expressions of 32-128 tokens, generated locally), trains the task's default
configuration (`keras-attention fit`'s model: 2-layer multi-head
transformer, width 64, 4 heads, AdamW 1e-3 with warm-up and cosine decay),
then runs a `keras_attention.tuning.tune` search for what is left of
`--budget` seconds (the default's time included). The default and every
trial get the same training budget (`--epochs` x `--steps` steps) and are
ranked by validation accuracy; the test accuracy of each finished trial's
best checkpoint is measured afterwards.

Prints (and writes to `--output/tuning.md`, `tuning.json`) a markdown table:
trial, hyperparameters, validation accuracy, test accuracy, seconds, with
the default configuration first.

    python benchmarks/tuning.py --budget 900
"""

import argparse
import json
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=900, help="seconds in all (default 900)")
    parser.add_argument("--tuner", default="random", choices=("random", "bayesian", "hyperband"))
    parser.add_argument("--max-trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial and for the default")
    parser.add_argument("--steps", type=int, default=250, help="steps per epoch (default 250)")
    parser.add_argument("--output", default=os.path.join("runs", "tuning-benchmark"))
    parser.add_argument("--data-dir", default=os.environ.get("KERAS_ATTENTION_DATA_DIR"))
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="ListOps task option (e.g. train_size=2000), JSON values")
    parser.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                        help="search argument: a value fixes it, a JSON list gives its choices")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _test_accuracies(result, data):
    """Test accuracy of every completed trial's best checkpoint."""
    import keras

    tuner = result.tuner
    accuracies = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Skipping variable loading.*")
        for trial_id, trial in tuner.oracle.trials.items():
            if trial.status != "COMPLETED":
                continue
            model = tuner.load_model(trial)
            accuracies[trial_id] = float(
                model.evaluate(data.test, return_dict=True, verbose=0)["accuracy"]
            )
            keras.backend.clear_session()
    return accuracies


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    from keras_attention import tuning
    from keras_attention.cli.options import parse_task_options
    from keras_attention.tasks import get_task

    task = get_task("listops")
    options = parse_task_options(args.option)
    common = dict(
        epochs=args.epochs,
        steps=args.steps,
        directory=args.output,
        data_dir=args.data_dir,
        options=options,
        seed=args.seed,
        overwrite=True,
        verbose=2,
    )
    print(f"[tuning benchmark] default configuration, {args.epochs} x {args.steps} steps", flush=True)
    default = tuning.tune(
        task, tuner="random", max_trials=1, tunable=False, project_name="default",
        export=False, **common,
    )
    default_seconds = default.rows[0]["seconds"]
    # Keep time for measuring the trials' test accuracy and saving the best.
    reserve = 120
    left = args.budget - (time.time() - start) - reserve
    print(f"[tuning benchmark] {args.tuner} search for {left:.0f} s", flush=True)
    search = tuning.tune(
        task, tuner=args.tuner, max_trials=args.max_trials, max_seconds=left,
        project_name="search", **common, **parse_task_options(args.hp, flag="--hp"),
    )
    data = task.load("listops", args.data_dir, task.options({**options, "epochs": args.epochs}))
    tests = _test_accuracies(search, data)
    total = time.time() - start

    rows = [{
        "trial": "default",
        "hyperparameters": default.best_configuration.summary(),
        "validation_accuracy": default.best_score,
        "test_accuracy": default.test["accuracy"],
        "seconds": default_seconds,
    }]
    for row in search.rows:
        rows.append({
            "trial": row["trial"],
            "hyperparameters": row["hyperparameters"]
            + ("" if row["status"] == "COMPLETED" else f" ({row['status'].lower()})")
            + (f" ({row['message']})" if row["message"] else ""),
            "validation_accuracy": row["score"],
            "test_accuracy": tests.get(row["trial"]),
            "seconds": row["seconds"],
        })
    lines = [
        "| trial | hyperparameters | validation accuracy | test accuracy | seconds |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        val = "" if row["validation_accuracy"] is None else f"{row['validation_accuracy']:.4f}"
        test = "" if row["test_accuracy"] is None else f"{row['test_accuracy']:.4f}"
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.0f}"
        name = "**default**" if row["trial"] == "default" else row["trial"]
        lines.append(f"| {name} | {row['hyperparameters']} | {val} | {test} | {seconds} |")
    table = "\n".join(lines)
    best = search.rows[0]
    summary = (
        f"default: validation {default.best_score:.4f}, test {default.test['accuracy']:.4f}; "
        f"best trial {best['trial']}: validation {search.best_score:.4f}, "
        f"test {search.test['accuracy']:.4f} "
        f"({'beats' if search.test['accuracy'] > default.test['accuracy'] else 'does not beat'} "
        f"the default on test); {len(search.rows)} trial(s), {total:.0f} s in all"
    )
    print(table)
    print(summary)
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "tuning.md"), "w") as f:
        f.write(table + "\n\n" + summary + "\n")
    with open(os.path.join(args.output, "tuning.json"), "w") as f:
        json.dump({"rows": rows, "summary": summary, "seconds": total, "args": vars(args)}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
