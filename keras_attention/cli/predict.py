"""`keras-attention predict`: a saved model on inputs from the command line."""

import json
import sys

from keras_attention.cli import saved_run
from keras_attention.cli.options import UsageError


def add_parser(sub):
    parser = sub.add_parser(
        "predict",
        help="predict with a saved model on inputs given as text",
        description=(
            "Load a model written by `fit` and print its prediction for each "
            "input, given as arguments or one per line in --file (`-` for "
            "stdin). For listops: an expression such as '[MAX 2 9 [MIN 4 7 ] 0 ]'."
        ),
    )
    parser.add_argument("--model", required=True, help="`fit` output folder or .keras file")
    parser.add_argument("inputs", nargs="*", help="inputs as text")
    parser.add_argument("--file", help="file with one input per line (`-`: stdin)")
    parser.add_argument("--task", help="task name (default: the run's)")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.set_defaults(handler=run)
    return parser


def _read_inputs(args):
    texts = list(args.inputs)
    if args.file:
        stream = sys.stdin if args.file == "-" else None
        try:
            if stream is None:
                stream = open(args.file, encoding="utf-8")
            texts += [line.rstrip("\n") for line in stream if line.strip()]
        except OSError as error:
            raise UsageError(f"cannot read --file {args.file!r}: {error.strerror}") from None
    if not texts:
        raise UsageError("give inputs as arguments or with --file")
    return texts


def run(args):
    from keras_attention.tasks import get_task

    path, folder = saved_run.resolve(args.model)
    texts = _read_inputs(args)
    run_settings = saved_run.settings(folder) or {}
    task_name = args.task or run_settings.get("task")
    if task_name is None:
        raise UsageError(f"no metrics.json next to {path}: say which task it is with --task")
    try:
        task = get_task(task_name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    options = task.options(run_settings.get("options"))
    vocabulary = saved_run.vocabulary(folder)
    try:
        inputs = task.encode(texts, options, vocabulary)
    except (ValueError, NotImplementedError) as error:
        # NotImplementedError: a task whose inputs are not text (images,
        # waveforms) says so instead of a traceback.
        raise UsageError(str(error)) from None
    model = saved_run.load_model(path)
    outputs = model.predict(inputs, verbose=0)
    for text, prediction in zip(texts, task.decode(outputs, options, vocabulary)):
        if args.json:
            print(json.dumps({"input": text, "prediction": prediction}))
        else:
            print(f"{prediction}\t{text}")
    return 0
