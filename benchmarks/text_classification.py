"""SST-2 sentiment with `text_classifier`: validation accuracy per attention variant.

Trains `keras_attention.models.text_classifier` on the GLUE SST-2 training
split from the prepared tensorflow-datasets folder (`--data-dir`, default
`$KERAS_ATTENTION_DATA_DIR`, else `../shared/tfds` beside the repository)
and reports accuracy on the SST-2 validation split (GLUE hides the test
labels), one row per attention variant, every variant trained with the same
recipe and the same data in the same process:

- words (`TextVectorization`, 20,000 ids; `--ngrams 2` adds bigrams)
  adapted on the training text, 64 ids per sentence (SST-2 sentences are
  short: 99% of the validation sentences have at most 42 words);
- a 2-block pre-norm transformer (width 64, 4 heads), masked mean pooling,
  dropout 0.5 on the embeddings and 0.2 in the blocks;
- AdamW with weight decay, linear warm-up then cosine decay, XLA;
- early stopping (best weights restored) on a held-out slice of the
  TRAINING split (`--holdout`, default the last 3%): the validation split
  is never used to choose anything, it is only reported. (SST-2's training
  split is mostly phrases of its own sentences, so that slice is easier
  than the validation sentences: it guards against divergence more than
  it picks the best epoch. `--holdout-sentences N` holds out N whole
  training sentences instead, with every phrase found only inside them,
  so the hold-out looks like the validation sentences);
- a wall-time budget per variant (`--budget`, default 540 s of training,
  shared by the members with `--ensemble N`, which trains N seeds and also
  scores their average predicted probabilities).

    python benchmarks/text_classification.py
    python benchmarks/text_classification.py --variants multi_head linear --epochs 2
    python benchmarks/text_classification.py --variants multi_head --ema 0.999 --ensemble 2
    python benchmarks/text_classification.py --variants multi_head --ema 0.999 --holdout-sentences 870

The table: validation accuracy, the held-out training-slice accuracy that
early stopping saw, the epoch kept, training time and parameter count; the
last line gives the majority-class baseline of the validation split.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from budget import default_data_dir  # noqa: E402
from budget import time_budget  # noqa: E402

DEFAULT_VARIANTS = ("multi_head", "linear", "low_rank", "regional")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--dataset", default="glue/sst2")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--budget", type=float, default=540.0, help="training seconds per variant")
    parser.add_argument("--holdout", type=int, default=3, help="percent of the training split held out for early stopping")
    parser.add_argument("--holdout-sentences", type=int, default=0,
                        help="instead, hold out this many whole training sentences and every phrase found only "
                             "inside them (`hold_out_sentences`): a hold-out like unseen sentences")
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--vocabulary-size", type=int, default=20000)
    parser.add_argument("--ngrams", type=int, default=1)
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--intermediate-dim", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--embedding-dropout", type=float, default=0.5)
    parser.add_argument("--pooling", default="mean")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--patience", type=int, default=1)
    parser.add_argument("--ema", type=float, default=None, help="weight moving-average momentum (e.g. 0.999)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ensemble", type=int, default=1,
                        help="train this many models per variant (seeds --seed, --seed + 1, ...; the budget is "
                             "shared) and also report their average prediction")
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch (default: the whole training split)")
    return parser.parse_args(argv)


def sentence_splits(args):
    """The training split cut by `hold_out_sentences`: (train, hold-out) datasets of (text, label)."""
    import numpy as np
    import tensorflow as tf

    from keras_attention.data import hold_out_sentences
    from keras_attention.data.prepared import load_prepared

    examples = list(load_prepared("text_classification.py", args.dataset, "train", args.data_dir).as_numpy_iterator())
    texts = [e["sentence"].decode("utf-8") for e in examples]
    labels = np.array([e["label"] for e in examples], "int64")
    train, holdout = hold_out_sentences(texts, args.holdout_sentences, seed=args.seed)
    print(f"hold-out: {len(holdout)} training sentences; training on {len(train)} of {len(texts)} examples "
          f"({len(texts) - len(train) - len(holdout)} phrases found only inside the hold-out dropped)", flush=True)
    return tuple(
        tf.data.Dataset.from_tensor_slices(([texts[i] for i in indices], labels[indices]))
        for indices in (train, holdout)
    )


def load(args):
    from keras_attention.data import text_classification_data

    keep = 100 - args.holdout
    train_split, validation_split = f"train[:{keep}%]", f"train[{keep}%:]"
    if args.holdout_sentences:
        train_split, validation_split = sentence_splits(args)
    return text_classification_data(
        args.dataset,
        data_dir=args.data_dir,
        train_split=train_split,
        validation_split=validation_split,
        test_split="validation",
        sequence_length=args.sequence_length,
        vocabulary_size=args.vocabulary_size,
        ngrams=args.ngrams if args.ngrams > 1 else None,
        batch_size=args.batch_size,
        seed=args.seed,
    )


def train_variant(data, variant, args, seed=None, budget_seconds=None):
    """Trains one variant; returns a dict of the row's numbers (the model
    under `"model"`)."""
    import keras

    from keras_attention.models import compile_classifier
    from keras_attention.models import text_classifier

    seed = args.seed if seed is None else seed
    keras.utils.set_random_seed(seed)
    model = text_classifier(
        len(data.vocabulary),
        data.num_classes,
        data.sequence_length,
        hidden_dim=args.hidden_dim,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        intermediate_dim=args.intermediate_dim,
        dropout=args.dropout,
        embedding_dropout=args.embedding_dropout,
        attention=variant,
        pooling=args.pooling,
        name=f"sst2_{variant}",
    )
    steps = args.steps or int(data.train.cardinality())
    compile_classifier(
        model,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        decay_steps=max(1, args.epochs * steps - args.warmup_steps),
        ema_momentum=args.ema,
    )
    budget = time_budget(args.budget if budget_seconds is None else budget_seconds)
    stopping = keras.callbacks.EarlyStopping(
        # Restoring the best epoch's raw weights would replace the moving
        # average that `--ema` ends the fit with: with `--ema` the fit
        # stops after `--patience` epochs without progress and keeps the
        # average of the last steps.
        monitor="val_accuracy", patience=args.patience, restore_best_weights=args.ema is None, mode="max"
    )
    callbacks = [budget, stopping]
    if args.ema is not None:
        # Each epoch's hold-out score is that of the moving average (the
        # weights the fit ends with), not of the raw weights.
        callbacks.insert(0, keras.callbacks.SwapEMAWeights())
    train = data.train.repeat() if args.steps else data.train
    start = time.perf_counter()
    history = model.fit(
        train,
        validation_data=data.validation,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        callbacks=callbacks,
        verbose=2,
    )
    seconds = time.perf_counter() - start
    # Without `--ema`, EarlyStopping restores the weights of the best
    # hold-out epoch (a partial epoch cut by the time budget is scored like
    # the others); with it, the last epoch's moving average is kept. The
    # row reports the hold-out score of the weights kept.
    holdout = history.history["val_accuracy"]
    kept = len(holdout) - 1 if args.ema is not None else max(range(len(holdout)), key=holdout.__getitem__)
    result = model.evaluate(data.test, verbose=0, return_dict=True)
    return {
        "variant": variant,
        "validation": result["accuracy"],
        "holdout": model.evaluate(data.validation, verbose=0, return_dict=True)["accuracy"],
        "epoch": kept + 1,
        "epochs_run": len(holdout),
        "seconds": seconds,
        "parameters": model.count_params(),
        "stopped": budget.stopped,
        "seed": seed,
        "model": model,
    }


def ensemble_row(data, variant, members):
    """The members' average class probabilities, scored like one model."""
    import numpy as np
    from keras import ops

    def accuracy(dataset):
        labels = np.concatenate([y.numpy() for _, y in dataset])
        probabilities = sum(
            np.concatenate([ops.convert_to_numpy(ops.softmax(m["model"](x, training=False))) for x, _ in dataset])
            for m in members
        )
        return float(np.mean(np.argmax(probabilities, -1) == labels))

    return {
        "variant": f"{variant}, average of {len(members)} (seeds {', '.join(str(m['seed']) for m in members)})",
        "validation": accuracy(data.test),
        "holdout": accuracy(data.validation),
        "epoch": "-",
        "epochs_run": "-",
        "seconds": sum(m["seconds"] for m in members),
        "parameters": sum(m["parameters"] for m in members),
        "stopped": any(m["stopped"] for m in members),
    }


def main(argv=None):
    args = parse_arguments(argv)
    dataset_dir = os.path.join(args.data_dir, *args.dataset.split("/")[:1])
    if not os.path.isdir(dataset_dir):
        print(f"skipped: {args.dataset} not found in {args.data_dir} (set --data-dir or KERAS_ATTENTION_DATA_DIR)")
        return []
    import numpy as np

    start = time.perf_counter()
    data = load(args)
    labels = np.concatenate([y.numpy() for _, y in data.test])
    train_counts = np.zeros(data.num_classes)
    for _, y in data.train:
        train_counts += np.bincount(y.numpy(), minlength=data.num_classes)
    majority = float(np.mean(labels == np.argmax(train_counts)))
    print(f"data ready in {time.perf_counter() - start:.0f} s: vocabulary {len(data.vocabulary)}, "
          f"{int(data.train.cardinality())} training batches of {args.batch_size}", flush=True)
    rows = []
    if args.ensemble < 1:
        raise SystemExit(f"text_classification.py: --ensemble must be >= 1. Received: {args.ensemble}")
    for variant in args.variants:
        members = [
            train_variant(data, variant, args, seed=args.seed + i, budget_seconds=args.budget / args.ensemble)
            for i in range(args.ensemble)
        ]
        for member in members:
            member["variant"] = f"{variant}, seed {member['seed']}" if args.ensemble > 1 else variant
        rows.extend(members)
        if args.ensemble > 1:
            rows.append(ensemble_row(data, variant, members))
    print()
    print("| attention | SST-2 validation accuracy | hold-out accuracy | epoch kept / run | train time (s) | parameters |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        budget = " (time budget)" if row["stopped"] else ""
        print(f"| {row['variant']} | {row['validation']:.4f} | {row['holdout']:.4f} | "
              f"{row['epoch']} / {row['epochs_run']}{budget} | {row['seconds']:.0f} | {row['parameters']:,} |")
    print(f"\nmajority-class baseline (validation): {majority:.4f}")
    return rows


if __name__ == "__main__":
    main()
