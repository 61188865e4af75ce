"""Training throughput: steps/s and CPU use per task, with and without XLA.

    python benchmarks/training.py [--data-dir ../shared/tfds] [--steps 40]

Two tables, every row measured in this process, side by side:

1. The `fit` tasks with their defaults (`listops`, generated locally;
   `image` on mnist and `text` on SST-2 when `--data-dir` holds them):
   steps/s and CPU utilisation (process CPU time / wall time; 2.0 means
   both cores of the 2-core machine busy) for the same model compiled
   without and with XLA (`jit_compile=True`).
2. `autotune`: the default ListOps model (XLA) trained `--runs` times
   (a fresh model each time) on the package's pipeline, whose last stage
   (`keras_attention.data.feeding.prefetched`) turns tf.data's model-based
   autotuning off, and on the same pipeline with it turned back on: with
   it on, some runs stall at 1.5-2x the step time with one core idle.
3. `text_classifier` at SST-2's sizes (width 64, batch 64, 64 tokens,
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


def _machine_seconds():
    """`(busy, steal)` CPU seconds of the whole machine so far (Linux `/proc/stat`)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _measure(model, dataset, steps):
    """`fit`'s compile seconds, steps/s, its CPU use and what else the machine did.

    Returns a dict: `compile_s`, `steps_per_s`, `cpu` (process CPU time /
    wall time), `others` (CPU time of every other process / wall time) and
    `steal` (time the hypervisor gave this machine's cores to other machines
    / wall time): a step that runs on one core while `others` or `steal` is
    near 1.0 was crowded out, not single-threaded.
    """
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)
    compile_seconds = time.perf_counter() - start
    wall, cpu = time.perf_counter(), _cpu_seconds()
    busy, steal = _machine_seconds()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    busy_after, steal_after = _machine_seconds()
    return {"compile_s": compile_seconds, "steps_per_s": steps / wall, "cpu": cpu / wall,
            "others": max(0.0, busy_after - busy - cpu) / wall, "steal": (steal_after - steal) / wall}


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
            yield {"task": f"{task_name} ({dataset})", "xla": jit, **_measure(model, train, steps)}


def autotune_rows(steps, runs):
    import keras
    import tensorflow as tf

    from keras_attention.tasks import get_task

    task = get_task("listops")
    options = task.options({})
    data = task.load("listops", None, options)
    autotuned = tf.data.Options()
    autotuned.autotune.enabled = True
    pipelines = {"off (the package's pipeline)": data.train.repeat(),
                 "on": data.train.repeat().with_options(autotuned)}
    for setting, train in pipelines.items():
        for run in range(runs):
            keras.backend.clear_session()
            keras.utils.set_random_seed(0)
            model = task.build(data, "multi_head", None, options)
            model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"], jit_compile=True)
            yield {"autotune": setting, "run": run + 1, **_measure(model, train, steps)}


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
    from keras_attention.data.feeding import prefetched

    vocabulary, length, batch = 20000, 64, 64
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, vocabulary, (batch * 8, length)).astype("int32")
    labels = rng.integers(0, 2, batch * 8).astype("int32")
    data = prefetched(tf.data.Dataset.from_tensor_slices((tokens, labels)).batch(batch, drop_remainder=True).repeat())
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
            yield {"attention": name, "layers": layers, **_measure(model, data, steps)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5, help="runs per setting of the autotune table")
    parser.add_argument("--tables", nargs="+", default=["tasks", "autotune", "depth"],
                        choices=["tasks", "autotune", "depth"])
    args = parser.parse_args(argv)
    if "tasks" in args.tables:
        print("| task | XLA | compile + 2 steps (s) | steps/s | CPU (of 2 cores) | other processes | steal |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for row in task_rows(args.data_dir, args.steps):
            if "skipped" in row:
                print(f"| {row['task']} | skipped: {row['skipped']} | | | | | |", flush=True)
                continue
            print(f"| {row['task']} | {'yes' if row['xla'] else 'no'} | {row['compile_s']:.1f} | "
                  f"{row['steps_per_s']:.2f} | {row['cpu']:.2f} | {row['others']:.2f} | {row['steal']:.2f} |",
                  flush=True)
    if "autotune" in args.tables:
        print("\n| tf.data autotuning | run | ms/step | CPU | other processes | steal |")
        print("|---|---:|---:|---:|---:|---:|")
        for row in autotune_rows(args.steps, args.runs):
            print(f"| {row['autotune']} | {row['run']} | {1000 / row['steps_per_s']:.1f} | {row['cpu']:.2f} | "
                  f"{row['others']:.2f} | {row['steal']:.2f} |", flush=True)
    if "depth" in args.tables:
        print("\n| attention | layers | compile + 2 steps (s) | ms/step | CPU | other processes | steal |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row in depth_rows(args.steps):
            print(f"| {row['attention']} | {row['layers']} | {row['compile_s']:.1f} | "
                  f"{1000 / row['steps_per_s']:.1f} | {row['cpu']:.2f} | {row['others']:.2f} | "
                  f"{row['steal']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
