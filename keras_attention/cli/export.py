"""`keras-attention export`: a `.keras` model to a SavedModel (and TFLite)."""

import os
import sys

from keras_attention.cli import saved_run


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
    parser.set_defaults(handler=run)
    return parser


def run(args):
    path, _ = saved_run.resolve(args.model)
    model = saved_run.load_model(path)
    model.export(args.output, verbose=False)
    print(f"[keras-attention] SavedModel written to {args.output}")
    if not args.tflite:
        return 0
    import tensorflow as tf

    target = args.output.rstrip("/") + ".tflite"
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(args.output)
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
    with open(target, "wb") as f:
        f.write(flatbuffer)
    print(f"[keras-attention] TFLite model written to {target} ({os.path.getsize(target):,} bytes)")
    return 0
