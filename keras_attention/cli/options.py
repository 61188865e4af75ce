"""Command-line options shared by `fit`, `compare` and `tune`."""

import json
import os

from keras_attention.layers.attention import registry
from keras_attention.tasks import available_tasks

DEFAULT_TASK = "listops"


class UsageError(Exception):
    """A bad command-line value; the message says what to do."""


def default_data_dir():
    """`$KERAS_ATTENTION_DATA_DIR`, else tfds' own default (`None`)."""
    return os.environ.get("KERAS_ATTENTION_DATA_DIR") or None


def add_data_arguments(parser):
    parser.add_argument(
        "--task",
        default=DEFAULT_TASK,
        choices=available_tasks(),
        metavar="TASK",
        help=f"what to train (one of: {', '.join(available_tasks())}; "
        f"default {DEFAULT_TASK}; see `keras-attention list`)",
    )
    parser.add_argument(
        "--dataset",
        help="tensorflow-datasets name (default: the task's default, e.g. "
        "the embedded `listops`, generated locally)",
    )
    parser.add_argument(
        "--data-dir",
        default=default_data_dir(),
        help="tensorflow-datasets data_dir (default $KERAS_ATTENTION_DATA_DIR "
        "or tfds' default); nothing is downloaded",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option, repeatable (e.g. --option max_length=256); "
        "values are parsed as JSON when they can be",
    )


def add_model_arguments(parser):
    parser.add_argument("--hidden-dim", type=int, help="model width")
    parser.add_argument("--layers", type=int, help="number of transformer blocks")
    parser.add_argument("--heads", type=int, help="attention heads")
    parser.add_argument("--intermediate-dim", type=int, help="feed-forward width")
    parser.add_argument("--dropout", type=float, help="dropout rate")
    parser.add_argument(
        "--attention-kwargs",
        default=None,
        metavar="JSON",
        help='extra attention arguments as JSON, e.g. \'{"window_size": 32}\'',
    )


def add_training_arguments(parser):
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per epoch (default: the whole split)"
    )
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)


def _positive(name, value, allow_zero=False):
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"--{name} must be positive. Received: {value}")


def parse_json(flag, text):
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"{flag} must be a JSON object, e.g. '{{\"window_size\": 32}}'. "
            f"Received: {text!r} ({error.msg})"
        ) from None
    if not isinstance(value, dict):
        raise UsageError(f"{flag} must be a JSON object. Received: {text!r}")
    return value


def parse_task_options(pairs, flag="--option", example="max_length=256"):
    """`KEY=VALUE` pairs -> dict; values are read as JSON when they parse."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(
                f"{flag} takes KEY=VALUE (e.g. {flag} {example}). "
                f"Received: {pair!r}"
            )
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def check_attention(name):
    if registry.get_class(name) is None:
        raise UsageError(
            f"unknown attention {name!r}. Expected one of: "
            f"{', '.join(registry.available())} (see `keras-attention list`)"
        )


def model_options(args):
    """Validated model/training options as a dict (unset ones left out)."""
    for flag in ("hidden_dim", "layers", "heads", "intermediate_dim", "epochs", "steps", "batch_size"):
        _positive(flag.replace("_", "-"), getattr(args, flag, None))
    if args.dropout is not None and not 0 <= args.dropout < 1:
        raise UsageError(f"--dropout must be in [0, 1). Received: {args.dropout}")
    if args.learning_rate is not None and not args.learning_rate > 0:
        raise UsageError(f"--learning-rate must be positive. Received: {args.learning_rate}")
    options = parse_task_options(args.option)
    for key, flag in (
        ("hidden_dim", "hidden_dim"),
        ("num_layers", "layers"),
        ("num_heads", "heads"),
        ("intermediate_dim", "intermediate_dim"),
        ("dropout", "dropout"),
        ("learning_rate", "learning_rate"),
        ("epochs", "epochs"),
        ("steps", "steps"),
        ("batch_size", "batch_size"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            options[key] = value
    return options
