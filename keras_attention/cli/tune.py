"""`keras-attention tune`: a resumable hyperparameter search (keras-tuner).

Writes into `--directory/--project` the search state (re-run the same
command to resume: finished trials are kept), `results.md`/`.csv`/`.json`
(trial, hyperparameters, score, seconds) and `best/` (`model.keras`,
`export/` SavedModel, `metrics.json`).
"""

import json
import sys

from keras_attention.cli.options import UsageError
from keras_attention.cli.options import check_attention
from keras_attention.cli.options import parse_task_options

INTERRUPTED = 130


def add_parser(sub, add_data):
    parser = sub.add_parser(
        "tune",
        help="search attention variant, sizes and learning rate (keras-tuner)",
        description=(
            "Search the task's model (attention variant and its own "
            "arguments, depth, width, heads, key/value heads, dropout, "
            "learning rate and schedule) with keras-tuner on the task's "
            "tf.data pipelines, training with XLA. Writes results.md/.csv/"
            ".json and best/ (model.keras, export/) into --directory/--project. "
            "Interrupt it and re-run the same command to resume."
        ),
    )
    add_data(parser)
    parser.add_argument(
        "--tuner", default="hyperband", choices=("hyperband", "random", "bayesian"),
        help="search algorithm (default hyperband)",
    )
    parser.add_argument("--max-trials", type=int, default=10, help="most trials (default 10)")
    parser.add_argument(
        "--epochs", type=int, default=None,
        help="epochs per trial (hyperband: the most); default the task's",
    )
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch (default: the whole split)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--max-seconds", type=float, default=None,
        help="time budget: no trial starts after it and a running one stops",
    )
    parser.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a search argument (--hp hidden_dim=64) or give its choices as "
        "a JSON list (--hp 'attention=[\"multi_head\",\"linear\"]'); repeatable",
    )
    parser.add_argument(
        "--no-tunable", action="store_true",
        help="freeze every argument not given with --hp at the task default",
    )
    parser.add_argument("--directory", default="tuning", help="folder of searches (default tuning)")
    parser.add_argument("--project", default=None, help="the search's sub-folder (default: the task name)")
    parser.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    parser.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=run)
    return parser


def _check(args):
    for flag in ("max_trials", "epochs", "steps", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be positive. Received: {value}")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise UsageError(f"--max-seconds must be positive. Received: {args.max_seconds}")
    arguments = parse_task_options(
        args.hp, flag="--hp", example="hidden_dim=64 or --hp 'attention=[\"multi_head\",\"linear\"]'"
    )
    for key, value in arguments.items():
        if isinstance(value, dict):
            raise UsageError(f"--hp {key} takes a value or a JSON list. Received: {json.dumps(value)!r}")
    attention = arguments.get("attention")
    for name in attention if isinstance(attention, list) else [attention] if attention else []:
        check_attention(name)
    options = parse_task_options(args.option)
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    from keras_attention.tasks import get_task

    try:
        get_task(args.task).check_options(options)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return arguments, options


def run(args):
    arguments, options = _check(args)
    from keras_attention.tuning import tune

    try:
        result = tune(
            task=args.task,
            dataset=args.dataset,
            tuner=args.tuner,
            max_trials=args.max_trials,
            directory=args.directory,
            project_name=args.project,
            epochs=args.epochs,
            steps=args.steps,
            max_seconds=args.max_seconds,
            data_dir=args.data_dir,
            options=options,
            tunable=not args.no_tunable,
            seed=args.seed,
            overwrite=args.overwrite,
            export=not args.no_export,
            verbose=2,
            **arguments,
        )
    except KeyboardInterrupt:
        print(
            "\n[keras-attention] interrupted; finished trials are saved. Re-run "
            "the same command to resume the search.",
            file=sys.stderr,
        )
        return INTERRUPTED
    except (ValueError, ImportError) as error:
        if str(error).startswith(("`hypermodel`", "`tune`")):
            raise UsageError(str(error)) from None
        raise
    print(result.table)
    print(
        f"[keras-attention] wrote results.md, results.csv, results.json and "
        f"best/ ({result.model_path}"
        + (f", {result.export_path}/" if result.export_path else "")
        + f") in {result.project_dir}"
    )
    return 0
