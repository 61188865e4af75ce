"""`keras-attention export`: a `.keras` model to a SavedModel (and TFLite)."""

import os
import shutil
import sys
import tempfile

from keras_attention.cli import saved_run
from keras_attention.cli.options import UsageError
from keras_attention.tasks.run_folder import replace


def add_parser(sub):
    parser = sub.add_parser(
        "export",
        help="export a .keras model as a SavedModel (optionally TFLite)",
        description=(
            "Export a .keras model (or a `fit` output folder) as a SavedModel "
            "that plain TensorFlow serves (`tf.saved_model.load(d).serve(x)`), "
            "and with --tflite also as a TFLite flatbuffer where the ops allow."
        ),
    )
    parser.add_argument("--model", required=True, help="`fit` output folder or .keras file")
    parser.add_argument("--output", required=True, help="SavedModel folder to write")
    parser.add_argument("--tflite", action="store_true", help="also write <output>.tflite")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace an existing --output (kept whole until the new export is written)",
    )
    parser.set_defaults(handler=run)
    return parser


def _check_output(output, overwrite):
    """Refuses an --output that exists (unless `overwrite`) or is a link."""
    output = output.rstrip(os.sep) or output
    aside = output + ".old"
    if not os.path.lexists(output) and os.path.isdir(aside) and not os.path.islink(aside):
        os.rename(aside, output)  # an export interrupted while replacing
    if os.path.islink(output):
        raise UsageError(
            f"--output {output!r} is a symbolic link; `keras-attention export` "
            "never writes through links. Remove it or choose another --output."
        )
    if os.path.lexists(output) and not overwrite:
        what = "a folder" if os.path.isdir(output) else "a file"
        raise UsageError(
            f"--output {output!r} already exists ({what}). Pass --overwrite to "
            "replace it, or choose another --output."
        )
    return output


def run(args):
    output = _check_output(args.output, args.overwrite)
    if args.tflite:
        flat = output + ".tflite"
        if os.path.islink(flat) or (os.path.lexists(flat) and not args.overwrite):
            raise UsageError(
                f"{flat!r} already exists (or is a link); pass --overwrite to replace it"
            )
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise UsageError(f"--output {output!r}: the folder {parent!r} does not exist")
    path, _ = saved_run.resolve(args.model, "export")
    model = saved_run.load_model(path)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        target = os.path.join(staging, "saved_model")
        model.export(target, verbose=False)
        replace(target, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"[keras-attention] SavedModel written to {output}")
    if not args.tflite:
        return 0
    import tensorflow as tf

    target = output + ".tflite"
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(output)
        flatbuffer = converter.convert()
    except Exception as error:  # the converter raises many types
        reason = str(error).strip().splitlines()
        print(
            "[keras-attention] TFLite: this model cannot be converted with "
            "TFLite's built-in ops; the SavedModel is fine. Converter said: "
            + (reason[0] if reason else type(error).__name__),
            file=sys.stderr,
        )
        return 1
    temporary = os.path.join(staging_tflite := tempfile.mkdtemp(prefix=".tflite-", dir=parent), "model.tflite")
    try:
        with open(temporary, "wb") as f:
            f.write(flatbuffer)
        os.replace(temporary, target)
    finally:
        shutil.rmtree(staging_tflite, ignore_errors=True)
    print(f"[keras-attention] TFLite model written to {target} ({os.path.getsize(target):,} bytes)")
    return 0
