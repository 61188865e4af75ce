"""Trains builder cases for a few steps, alone or under a strategy.

Run as a script (the tests start it in fresh processes, because devices
must be configured before TensorFlow initialises them):

    python strategy_runs.py reference OUT.npz [CASE,CASE,...]
    python strategy_runs.py mirrored OUT.npz [CASE,CASE,...]      # 2 logical CPUs
    python strategy_runs.py multiworker OUT.npz [CASE,CASE,...]   # with TF_CONFIG set

Without a case list every case of `builder_cases.CASES` runs. Every run
builds each case with the same seed and trains it on the same global
batches, so a strategy run's losses and final weights must match the
reference run's up to numerical noise. OUT holds, per case, `<case>/loss`
(the loss of every step: Keras' running mean over the epoch, turned back
into per-step values), `<case>/initial/<i>` and `<case>/final/<i>` (every
weight before and after training), and `replicas`, the strategy's number
of replicas.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

STEPS = 3
EPOCHS = 2
BATCH = 4


def _tuples(value):
    """Lists to tuples: `from_tensor_slices` reads a list as one tensor."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


def make_dataset(batch):
    """`STEPS` global batches of `BATCH` examples from the case's `batch`."""
    import tensorflow as tf

    from builder_cases import _concat

    joined = batch(seed=0, size=BATCH)
    for step in range(1, STEPS):
        joined = _concat(joined, batch(seed=step, size=BATCH))
    from keras_attention import distribute

    dataset = tf.data.Dataset.from_tensor_slices(_tuples(joined))
    # Every worker reads the same global batches and takes its own part
    # of each (the single-device run sees the whole batch).
    return distribute.shard_by_example(dataset.batch(BATCH, drop_remainder=True))


def step_losses(running):
    """Per-step losses from Keras' running means (reset every epoch)."""
    losses = []
    for epoch in range(0, len(running), STEPS):
        means = running[epoch : epoch + STEPS]
        for i, mean in enumerate(means):
            losses.append(mean * (i + 1) - (means[i - 1] * i if i else 0.0))
    return losses


def run_case(name, strategy):
    import keras

    from builder_cases import CASES

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model, batch = CASES[name](jit_compile=False)
    initial = [w.copy() for w in model.get_weights()]
    running = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            running.append(float(logs["loss"]))

    model.fit(make_dataset(batch), epochs=EPOCHS, verbose=0, callbacks=[Record()])
    return initial, step_losses(running), model.get_weights()


def main(argv):
    mode, out = argv[0], argv[1]
    import numpy as np

    from keras_attention import distribute

    if mode == "mirrored":
        strategy = distribute.get_strategy("mirrored", devices=2)
    elif mode == "multiworker":
        strategy = distribute.get_strategy("multiworker")
    elif mode == "reference":
        strategy = distribute.get_strategy("default")
    else:
        raise SystemExit(f"strategy_runs.py: mode must be reference, mirrored or multiworker. Received: {mode!r}")
    from builder_cases import CASES

    names = argv[2].split(",") if len(argv) > 2 else list(CASES)
    results = {}
    for name in names:
        initial, losses, final = run_case(name, strategy)
        results[f"{name}/loss"] = np.array(losses)
        for i, (before, after) in enumerate(zip(initial, final)):
            results[f"{name}/initial/{i}"] = before
            results[f"{name}/final/{i}"] = after
        print(f"{mode} {name}: {losses}", flush=True)
    np.savez(out, replicas=strategy.num_replicas_in_sync, **results)


if __name__ == "__main__":
    main(sys.argv[1:])
