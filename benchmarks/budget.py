"""What the training benchmarks share: the data folder and a time budget."""

import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_data_dir():
    """`$KERAS_ATTENTION_DATA_DIR`, else `../shared/tfds` beside the repository."""
    return os.environ.get("KERAS_ATTENTION_DATA_DIR") or os.path.join(os.path.dirname(ROOT), "shared", "tfds")


def time_budget(seconds):
    """A Keras callback that stops training once `seconds` have passed.

    Its `stopped` attribute says whether the budget cut the run short.
    """
    import keras

    class TimeBudget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()
            self.stopped = False

        def on_train_batch_end(self, batch, logs=None):
            if time.perf_counter() - self.start > seconds:
                self.stopped = True
                self.model.stop_training = True

    return TimeBudget()
