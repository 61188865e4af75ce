"""`keras-attention evaluate`: a saved model's metrics on a split."""

import json
import os
import sys

from keras_attention.cli import saved_run
from keras_attention.cli.options import UsageError


def add_parser(sub):
    parser = sub.add_parser(
        "evaluate",
        help="evaluate a saved model on its task's test split",
        description=(
            "Load a model written by `fit` and report its metrics on the "
            "task's test split (the task, dataset and options come from the "
            "run's metrics.json unless given)."
        ),
    )
    parser.add_argument("--model", required=True, help="`fit` output folder or .keras file")
    parser.add_argument("--task", help="task name (default: the run's)")
    parser.add_argument("--dataset", help="dataset (default: the run's)")
    parser.add_argument("--data-dir", help="tensorflow-datasets data_dir (default: the run's)")
    parser.set_defaults(handler=run)
    return parser


def run(args):
    from keras_attention.tasks import get_task

    path, folder = saved_run.resolve(args.model)
    run_settings = saved_run.settings(folder) or {}
    task_name = args.task or run_settings.get("task")
    if task_name is None:
        raise UsageError(
            f"no metrics.json next to {path}: say which task it is with --task"
        )
    try:
        task = get_task(task_name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    options = task.options(run_settings.get("options"))
    dataset = args.dataset or run_settings.get("dataset") or task.default_dataset
    data_dir = args.data_dir
    if data_dir is None and run_settings.get("data_dir"):
        data_dir = run_settings["data_dir"]
        if not os.path.isdir(data_dir):
            raise UsageError(
                f"the run's metrics.json names the data folder {data_dir!r}, which "
                "does not exist here (was the run folder copied from elsewhere?); "
                "pass --data-dir"
            )
        print(
            f"[keras-attention] reading {dataset!r} from {data_dir} (the data folder "
            "recorded in the run's metrics.json; --data-dir overrides it)",
            file=sys.stderr,
        )
    try:
        data = task.load(dataset, data_dir, options)
    except ValueError as error:
        raise UsageError(str(error).strip().splitlines()[0]) from None
    model = saved_run.load_model(path)
    test = data.raw_test if data.preprocessor is not None else data.test
    results = task.evaluate(model, test, data)
    report = {
        "model": path,
        "task": task.name,
        "dataset": dataset,
        "test_split": data.test_split,
        "test": {k: round(float(v), 4) for k, v in results.items()},
        "baselines": {k: round(float(v), 4) for k, v in task.baselines(data).items()},
    }
    print(json.dumps(report, indent=2))
    return 0
