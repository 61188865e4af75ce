"""`keras-attention demo`: trains a small attention model on a generated
retrieval task (no download), compiled with XLA, then saves it as `.keras`,
reloads it and checks that the reloaded model predicts the same.
"""

import json
import os
import sys
import time


def _retrieval_data(num_examples, length, vocabulary, num_classes, seed):
    """Sequences with one marker token; the label is the token after it.

    Tokens: 0 = padding, 1 = marker, 2.. = content. Each sequence has a random
    length in [length // 2, length]; the marker sits anywhere before the last
    position, so the model must find it by attention, not by position.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = np.zeros((num_examples, length), dtype="int32")
    labels = np.zeros((num_examples,), dtype="int32")
    for i in range(num_examples):
        n = int(rng.integers(length // 2, length + 1))
        ids[i, :n] = rng.integers(2, vocabulary, size=n)
        where = int(rng.integers(0, n - 1))
        ids[i, where] = 1
        labels[i] = (ids[i, where + 1] - 2) % num_classes
    return ids, labels


def _demo(args):
    from keras_attention.cli.options import UsageError
    from keras_attention.cli.options import check_attention

    check_attention(args.attention)
    if args.dim % args.heads:
        raise UsageError("--dim must be divisible by --heads")
    import keras
    import numpy as np

    import keras_attention as ka

    keras.utils.set_random_seed(args.seed)
    vocabulary, classes = 18, 8
    x_train, y_train = _retrieval_data(
        args.train_size, args.length, vocabulary, classes, args.seed
    )
    x_test, y_test = _retrieval_data(
        512, args.length, vocabulary, classes, args.seed + 1
    )

    tokens = keras.Input((args.length,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(vocabulary, args.dim, mask_zero=True)(tokens)
    for _ in range(args.layers):
        a = ka.layers.get(
            args.attention,
            num_heads=args.heads,
            key_dim=args.dim // args.heads,
            position_encoding="rope",
        )(h, h)
        h = keras.layers.LayerNormalization()(h + a)
        f = keras.layers.Dense(2 * args.dim, activation="gelu")(h)
        h = keras.layers.LayerNormalization()(h + keras.layers.Dense(args.dim)(f))
    pooled = keras.layers.GlobalAveragePooling1D()(h)
    outputs = keras.layers.Dense(classes)(pooled)
    model = keras.Model(tokens, outputs, name="retrieval_demo")
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )
    print(
        f"keras-attention demo: {args.attention!r} attention, "
        f"{args.layers} layer(s), {args.heads} heads, width {args.dim}, "
        f"{model.count_params():,} parameters"
    )
    print(
        f"task: find the marker in sequences of up to {args.length} tokens "
        f"and classify the token after it ({classes} classes; chance "
        f"{1 / classes:.1%})"
    )
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_data=(x_test, y_test),
        verbose=2,
    )
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    same = np.allclose(
        model.predict(x_test[:64], verbose=0),
        restored.predict(x_test[:64], verbose=0),
        atol=1e-5,
    )
    report = {
        "attention": args.attention,
        "epochs": args.epochs,
        "train_seconds": round(seconds, 1),
        "test_loss": round(float(loss), 4),
        "test_accuracy": round(float(accuracy), 4),
        "chance_accuracy": round(1 / classes, 4),
        "first_epoch_accuracy": round(float(history.history["accuracy"][0]), 4),
        "saved_model": path,
        "reloaded_predictions_identical": bool(same),
    }
    with open(os.path.join(args.output, "metrics.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))
    if not same:
        print("error: the reloaded model predicts differently", file=sys.stderr)
        return 1
    return 0


def add_parser(sub):
    demo = sub.add_parser(
        "demo",
        help="train a small attention model on a generated task (no download)",
        description=(
            "Train a small attention model with XLA on a generated retrieval "
            "task, save it as .keras and check the reloaded copy."
        ),
    )
    demo.add_argument("--attention", default="multi_head", help="registered attention name")
    demo.add_argument("--layers", type=int, default=2)
    demo.add_argument("--heads", type=int, default=4)
    demo.add_argument("--dim", type=int, default=64)
    demo.add_argument("--length", type=int, default=64, help="sequence length")
    demo.add_argument("--train-size", type=int, default=4096)
    demo.add_argument("--batch-size", type=int, default=64)
    demo.add_argument("--epochs", type=int, default=8)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--output", default="runs/demo", help="output folder")
    demo.set_defaults(handler=_demo)
    return demo
