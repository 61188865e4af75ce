"""Object detection on real digits: mAP of `object_detector` on MNIST canvases.

    python benchmarks/object_detection.py [--data-dir ../shared/tfds] [--minutes 14]

Generates the `mnist_detection` dataset (64 x 64 canvases holding 1-4 real
MNIST digits of 14-28 pixels; train canvases from MNIST's train digits, test
canvases from its test digits) into a temporary folder, trains
`object_detector` (XLA) with the set-prediction loss, and scores the test
canvases with COCO's mAP@0.5 and mAP@[.5:.95]. Training stops after
`--epochs` or `--minutes`, whichever comes first (cosine decay planned over
`--epochs`). Nothing is chosen on the test split; `--report-every N` prints
the test mAP every N epochs to show the trajectory.

Prints a table: mAP@0.5 and mAP@[.5:.95] overall and AP@0.5 per digit.
Skips (exit 0) with a message when the data folder has no `mnist`.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from budget import default_data_dir  # noqa: E402
from budget import time_budget  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--minutes", type=float, default=14.0, help="training time budget")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--attention", default="multi_head")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument("--encoder-layers", type=int, default=2)
    parser.add_argument("--decoder-layers", type=int, default=2)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--patch-size", type=int, default=8)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--report-every", type=int, default=0, help="print the test mAP every N epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(args.data_dir, "mnist")):
        print(f"skipped: mnist not in {args.data_dir} (pass --data-dir with a prepared tfds folder)")
        return 0

    import keras
    from keras_attention.data.mnist_detection import mnist_detection_data
    from keras_attention.models.object_detector import compile_object_detector
    from keras_attention.models.object_detector import evaluate_detector
    from keras_attention.models.object_detector import object_detector
    from keras_attention.models.set_prediction_loss import pack_detection_targets

    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    generated = tempfile.mkdtemp(prefix="mnist-detection-")
    data = mnist_detection_data(generated, args.data_dir, batch_size=args.batch_size, seed=args.seed)
    train = data.train.map(lambda x, t: (x, pack_detection_targets(t["boxes"], t["labels"])))
    loaded = time.perf_counter() - start
    model = object_detector(
        data.canvas_size,
        data.num_classes,
        num_queries=args.queries,
        patch_size=args.patch_size,
        hidden_dim=args.hidden_dim,
        num_encoder_layers=args.encoder_layers,
        num_decoder_layers=args.decoder_layers,
        num_heads=4,
        dropout=args.dropout,
        attention=args.attention,
    )
    steps = int(train.cardinality())
    compile_object_detector(
        model, learning_rate=args.learning_rate, warmup_steps=steps, decay_steps=steps * args.epochs
    )
    callbacks = [time_budget(60 * args.minutes)]
    if args.report_every:

        class Report(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if (epoch + 1) % args.report_every == 0:
                    scores = evaluate_detector(self.model, data.test, data.num_classes)
                    print(f"epoch {epoch + 1}: test mAP@0.5 {scores['map_50']:.3f}, "
                          f"mAP@[.5:.95] {scores['map_50_95']:.3f}", flush=True)

        callbacks.append(Report())
    start = time.perf_counter()
    history = model.fit(train, epochs=args.epochs, callbacks=callbacks, verbose=2)
    trained = time.perf_counter() - start

    from keras_attention.models.mean_average_precision import COCO_THRESHOLDS
    from keras_attention.models.mean_average_precision import mean_average_precision
    from keras_attention.models.object_detector import _ground_truths
    from keras_attention.models.object_detector import detect

    found, truths = [], []
    for images, targets in data.test:
        found.extend(detect(model, images))
        truths.extend(_ground_truths(targets))
    at_50 = mean_average_precision(found, truths, data.num_classes)
    coco = mean_average_precision(found, truths, data.num_classes, COCO_THRESHOLDS)
    budget = callbacks[0]
    print(
        f"\nobject_detector ({args.attention}, {model.count_params():,} parameters): "
        f"{len(history.history['loss'])} epoch(s) of {steps} steps in {trained / 60:.1f} min"
        f"{' (stopped by the time budget)' if budget.stopped else ''}; data generated in {loaded:.0f} s; "
        f"{len(truths)} test canvases, {sum(len(t['labels']) for t in truths)} digits\n"
    )
    print("| | mAP@0.5 | mAP@[.5:.95] |")
    print("|---|---:|---:|")
    print(f"| all digits | {at_50['map']:.3f} | {coco['map']:.3f} |")
    for digit in range(data.num_classes):
        print(f"| digit {digit} | {at_50['ap_per_class'][digit]:.3f} | {coco['ap_per_class'][digit]:.3f} |")
    print(f"\nfinal training loss {history.history['loss'][-1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
