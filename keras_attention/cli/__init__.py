"""The `keras-attention` command line.

Subcommands: `fit`, `evaluate`, `predict`, `export`, `compare`, `tune`,
`list`, `demo`. Every one has `--help`. Exit codes: 0 success, 1 failure (a
check did not pass, a conversion was impossible), 2 bad usage, 130
interrupted (`fit` and `tune` resume when re-run).
"""

import argparse
import sys
import warnings

from keras_attention.cli import compare
from keras_attention.cli import demo
from keras_attention.cli import evaluate
from keras_attention.cli import export
from keras_attention.cli import fit
from keras_attention.cli import listing
from keras_attention.cli import predict
from keras_attention.cli import tune
from keras_attention.cli.options import UsageError
from keras_attention.cli.options import add_data_arguments
from keras_attention.cli.options import add_model_arguments
from keras_attention.cli.options import add_training_arguments

USAGE_ERROR = 2


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-attention",
        description=(
            "Attention layers and models for Keras 3: train, compare, "
            "evaluate, export. Run `keras-attention fit` to train on the "
            "embedded ListOps task (generated locally, nothing downloaded)."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    fit.add_parser(sub, add_data_arguments, add_model_arguments, add_training_arguments)
    compare.add_parser(sub, add_data_arguments, add_model_arguments, add_training_arguments)
    tune.add_parser(sub, add_data_arguments)
    evaluate.add_parser(sub)
    predict.add_parser(sub)
    export.add_parser(sub)
    listing.add_parser(sub)
    demo.add_parser(sub)
    for command in sub.choices.values():
        command.add_argument(
            "--verbose", action="store_true",
            help="show TensorFlow's own log (start-up lines, warnings)",
        )
    return parser


def _quiet(verbose):
    """TensorFlow's Python-side log at error level unless `verbose` (its
    C++ log is set when the package is imported, see `keras_attention`)."""
    if verbose:
        return
    import absl.logging
    import tensorflow as tf

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return USAGE_ERROR
    # tf.data pipelines are shuffled already; Keras warns about its own
    # `shuffle=True` default on every fit.
    warnings.filterwarnings("ignore", message=r".*`shuffle=True` was passed.*")
    _quiet(getattr(args, "verbose", False))
    from keras_attention.tasks.run_folder import RunFolderError

    try:
        return args.handler(args)
    except (UsageError, RunFolderError) as error:
        print(f"keras-attention {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
