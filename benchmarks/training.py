"""Training throughput: steps/s and CPU use per task, with and without XLA.

    python benchmarks/training.py [--data-dir ../shared/tfds] [--steps 40]

Two tables, every row measured in this process, side by side:

1. The `fit` tasks with their defaults (`listops`, generated locally;
   `image` on mnist and `text` on SST-2 when `--data-dir` holds them):
   steps/s and CPU utilisation (process CPU time / wall time; 2.0 means
   both cores of the 2-core machine busy) for the same model compiled
   without and with XLA (`jit_compile=True`).
2. `text_classifier` at SST-2's sizes (width 64, batch 64, 64 tokens,
   intermediate 128, mean pooling, XLA) at depths 1-3, beside the same
   model written with `keras.layers.MultiHeadAttention`, on generated
   tokens: a deeper model must not be faster than a shallower one.

Each row trains `--steps` steps after one warm-up (compiling) epoch of a
few steps; the first call's compile time is reported separately.
"""

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from budget import default_data_dir  # noqa: E402


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(model, dataset, steps):
    """`(compile_seconds, steps_per_second, cpu_utilisation)` of `fit`."""
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)
    compile_seconds = time.perf_counter() - start
    wall, cpu = time.perf_counter(), _cpu_seconds()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    return compile_seconds, steps / wall, cpu / wall


def task_rows(data_dir, steps):
    import keras

    from keras_attention.tasks import get_task

    cases = [("listops", "listops", None), ("image", "mnist", data_dir), ("text", "glue/sst2", data_dir)]
    for task_name, dataset, folder in cases:
        if folder is not None and not os.path.isdir(os.path.join(folder, dataset.split("/")[0])):
            yield {"task": task_name, "skipped": f"no {dataset} in {folder}"}
            continue
        task = get_task(task_name)
        options = task.options({})
        data = task.load(dataset, folder, options)
        train = data.train.repeat()
        for jit in (False, True):
            keras.backend.clear_session()
            keras.utils.set_random_seed(0)
            model = task.build(data, "multi_head", None, options)
            model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"], jit_compile=jit)
            compile_s, rate, cpu = _measure(model, train, steps)
            yield {"task": f"{task_name} ({dataset})", "xla": jit, "compile_s": compile_s,
                   "steps_per_s": rate, "cpu": cpu}


def _keras_only(layers, vocabulary, length):
    import keras

    tokens = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(vocabulary, 64, mask_zero=True)(tokens)
    x = x + keras.layers.Embedding(length, 64)(keras.ops.arange(length))[None]
    for _ in range(layers):
        h = keras.layers.LayerNormalization(epsilon=1e-5)(x)
        x = x + keras.layers.Dropout(0.2)(keras.layers.MultiHeadAttention(4, 16, dropout=0.2)(h, h))
        h = keras.layers.LayerNormalization(epsilon=1e-5)(x)
        h = keras.layers.Dense(64)(keras.layers.Dense(128, activation="gelu")(h))
        x = x + keras.layers.Dropout(0.2)(h)
    x = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    logits = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(x))
    model = keras.Model(tokens, logits)
    model.compile(
        keras.optimizers.AdamW(1e-3, clipnorm=1.0),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )
    return model


def depth_rows(steps):
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_attention import models

    vocabulary, length, batch = 20000, 64, 64
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, vocabulary, (batch * 8, length)).astype("int32")
    labels = rng.integers(0, 2, batch * 8).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((tokens, labels)).batch(batch, drop_remainder=True).repeat()
    for name in ("multi_head", "linear", "keras.layers.MultiHeadAttention"):
        for layers in (1, 2, 3):
            keras.backend.clear_session()
            keras.utils.set_random_seed(0)
            if name.startswith("keras"):
                model = _keras_only(layers, vocabulary, length)
            else:
                model = models.text_classifier(
                    vocabulary, 2, length, hidden_dim=64, num_layers=layers, num_heads=4,
                    intermediate_dim=128, dropout=0.2, embedding_dropout=0.5, pooling="mean",
                    attention=name,
                )
                models.compile_classifier(model)
            compile_s, rate, cpu = _measure(model, data, steps)
            yield {"attention": name, "layers": layers, "compile_s": compile_s,
                   "ms_per_step": 1000 / rate, "cpu": cpu}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--tables", nargs="+", default=["tasks", "depth"], choices=["tasks", "depth"])
    args = parser.parse_args(argv)
    if "tasks" in args.tables:
        print("| task | XLA | compile + 2 steps (s) | steps/s | CPU utilisation (of 2 cores) |")
        print("|---|---|---:|---:|---:|")
        for row in task_rows(args.data_dir, args.steps):
            if "skipped" in row:
                print(f"| {row['task']} | skipped: {row['skipped']} | | | |", flush=True)
                continue
            print(f"| {row['task']} | {'yes' if row['xla'] else 'no'} | {row['compile_s']:.1f} | "
                  f"{row['steps_per_s']:.2f} | {row['cpu']:.2f} |", flush=True)
    if "depth" in args.tables:
        print("\n| attention | layers | compile + 2 steps (s) | ms/step | CPU utilisation |")
        print("|---|---:|---:|---:|---:|")
        for row in depth_rows(args.steps):
            print(f"| {row['attention']} | {row['layers']} | {row['compile_s']:.1f} | "
                  f"{row['ms_per_step']:.1f} | {row['cpu']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
