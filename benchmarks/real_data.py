"""Real-data checks: the builders on the prepared tensorflow-datasets.

Trains each (task, attention variant) with `keras-attention fit` in its own
process, on the data in `--data-dir` (default `$KERAS_ATTENTION_DATA_DIR`,
else `../shared/tfds` beside the repository), and prints one markdown table
of test accuracy, training time and the trivial baseline.

    python benchmarks/real_data.py                      # every check, default variants
    python benchmarks/real_data.py --checks mnist --variants multi_head linear
    python benchmarks/real_data.py --checks loso        # 5 leave-one-speaker-out folds
    python benchmarks/real_data.py --checks loso --variants multi_head --option num_mel_bins=32

Checks:
    mnist        image_classifier on mnist (train / test)
    digits       audio_classifier on spoken_digit, standard split, digits
    speakers     audio_classifier on spoken_digit, standard split, speakers
    loso         audio_classifier, leave-one-speaker-out digits (mean of 5 folds)
    sst2         text_classifier on glue/sst2 (train / validation)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKS = {
    "mnist": ["--task", "image", "--dataset", "mnist"],
    "digits": ["--task", "audio", "--option", "target=digit"],
    "speakers": ["--task", "audio", "--option", "target=speaker"],
    "sst2": ["--task", "text", "--dataset", "glue/sst2"],
}
DATASETS = {"mnist": "mnist", "digits": "spoken_digit", "speakers": "spoken_digit",
            "loso": "spoken_digit", "sst2": "glue"}


def fit(arguments, data_dir, variant, extra):
    with tempfile.TemporaryDirectory() as output:
        command = [sys.executable, "-m", "keras_attention.cli", "fit", *arguments,
                   "--data-dir", data_dir, "--attention", variant, "--output", output,
                   "--maps", "0", "--no-export", *extra]
        result = subprocess.run(command, capture_output=True, text=True,
                                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        if result.returncode != 0:
            return {"error": result.stderr.strip().splitlines()[-1][:120] if result.stderr.strip() else "failed"}
        with open(os.path.join(output, "metrics.json")) as f:
            return json.load(f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("KERAS_ATTENTION_DATA_DIR")
                        or os.path.join(os.path.dirname(ROOT), "shared", "tfds"))
    parser.add_argument("--checks", nargs="+", default=["mnist", "digits", "speakers", "loso", "sst2"],
                        choices=sorted(list(CHECKS) + ["loso"]))
    parser.add_argument("--variants", nargs="+", default=["multi_head", "linear", "regional"])
    parser.add_argument("--quick", action="store_true", help="one epoch each (a smoke run)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a task option passed to every `fit` (repeatable), e.g. num_mel_bins=32")
    args = parser.parse_args(argv)
    extra = ["--epochs", "1"] if args.quick else []
    for option in args.option:
        extra += ["--option", option]
    print("| check | attention | test accuracy | majority class | train time (s) |")
    print("|---|---|---:|---:|---:|")
    for check in args.checks:
        if not os.path.isdir(os.path.join(args.data_dir, DATASETS[check])):
            print(f"| {check} | skipped: {DATASETS[check]} not in {args.data_dir} | | | |")
            continue
        for variant in args.variants:
            if check == "loso":
                runs = [fit(["--task", "audio", "--option", "split=leave_one_speaker_out",
                             "--option", f"test_speaker={k}"], args.data_dir, variant, extra)
                        for k in range(5)]
            else:
                runs = [fit(CHECKS[check], args.data_dir, variant, extra)]
            failed = [r["error"] for r in runs if "error" in r]
            if failed:
                print(f"| {check} | {variant} | failed: {failed[0]} | | |", flush=True)
                continue
            accuracy = sum(r["test"]["accuracy"] for r in runs) / len(runs)
            majority = sum(r["baselines"]["majority_class_accuracy"] for r in runs) / len(runs)
            seconds = sum(r["train_seconds"] for r in runs)
            folds = ", ".join(f"{r['test']['accuracy']:.3f}" for r in runs)
            label = f"{accuracy:.4f}" + (f" (folds {folds})" if len(runs) > 1 else "")
            print(f"| {check} | {variant} | {label} | {majority:.4f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
