"""`fit`'s resumable training checkpoint, in `<run folder>/backup/`.

At the end of every epoch the model's weights (with the optimizer's state)
go to `epoch-NNNN.weights.h5` through a temporary name and `os.replace`;
then `state.json` (written the same way) records the epoch, the weights
file, the one before it, the per-epoch history and the run's
configuration. `state.json` is the commit point: a process killed while a
weights file is written leaves the previous state untouched. A weights file
that cannot be read (a damaged disk, a file truncated outside `fit`) is
reported in one line and the previous epoch's file is used instead.

The configuration stored with the checkpoint is compared with the command
that resumes it; a difference is a usage error naming the settings that
differ (resuming a `multi_head` run as `linear`, with another width or
another number of epochs would otherwise mix two runs).
"""

import csv
import io
import json
import os

from keras_attention.cli.options import UsageError
from keras_attention.tasks.run_folder import atomic_write_json
from keras_attention.tasks.run_folder import atomic_write_text

STATE = "state.json"
HISTORY = "history.csv"


def _weights_name(epoch):
    return f"epoch-{epoch:04d}.weights.h5"


def read_state(folder, log=print):
    """The checkpoint's state dict, or `None` when there is none.

    An unreadable `state.json` is reported and treated as no checkpoint.
    """
    path = os.path.join(folder, STATE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        if not isinstance(state, dict) or "epoch" not in state or "config" not in state:
            raise ValueError("missing fields")
    except (OSError, ValueError) as error:
        log(f"[keras-attention] the checkpoint {path} is unreadable ({error}); starting from scratch")
        return None
    return state


def differences(saved, wanted):
    """Settings whose values differ between two configuration dicts, as
    `name: saved -> wanted` strings (nested dicts are compared by key)."""
    found = []
    for key in sorted(set(saved) | set(wanted)):
        a, b = saved.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += [f"{key}.{d}" for d in differences(a, b)]
        elif a != b:
            found.append(f"{key}: {json.dumps(a)} -> {json.dumps(b)}")
    return found


def check_matches(state, config, folder, command="fit"):
    """Raises `UsageError` when `config` is not the checkpoint's."""
    changed = differences(state["config"], config)
    if changed:
        raise UsageError(
            f"{folder} holds an unfinished run with other settings, so it cannot "
            f"be resumed by this command ({'; '.join(changed)}). Re-run with "
            "the same settings to resume it, pass --overwrite to discard it "
            "and start fresh, or choose another --output."
        )


def _history_csv(rows):
    keys = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_history(path, rows):
    """Writes per-epoch rows as a CSV (Keras' `CSVLogger` layout)."""
    atomic_write_text(path, _history_csv(rows) if rows else "")


def restore(model, folder, state, log=print):
    """Loads the newest readable weights of `state` into `model`.

    Returns `(initial_epoch, history_rows)`; `(0, [])` when no checkpoint
    file can be read.
    """
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    candidates = [(state["epoch"], state.get("weights"))]
    if state.get("previous"):
        candidates.append((state["previous"]["epoch"], state["previous"]["weights"]))
    for epoch, name in candidates:
        if epoch == 0 or not name:
            return 0, []
        path = os.path.join(folder, name)
        try:
            model.load_weights(path)
        except Exception as error:  # h5py and Keras raise many types
            reason = str(error).strip().splitlines()
            log(
                f"[keras-attention] the checkpoint {path} is unreadable "
                f"({reason[0] if reason else type(error).__name__}); "
                "using the one before it"
            )
            continue
        return epoch, list(state.get("history", []))[:epoch]
    log("[keras-attention] no readable checkpoint is left; training from the first epoch")
    return 0, []


def callback(folder, config, history):
    """A Keras callback that checkpoints at the end of every epoch.

    Args:
        folder: the `backup/` folder (created when missing).
        config: dict, the run's configuration (stored for `check_matches`).
        history: list of the rows of the epochs already done (resuming).
    """
    import keras

    class RunCheckpoint(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history_rows = list(history)
            self.saved = None

        def on_train_begin(self, logs=None):
            os.makedirs(folder, exist_ok=True)
            self.saved = read_state(folder, log=lambda *_: None)

        def on_epoch_end(self, epoch, logs=None):
            name = _weights_name(epoch + 1)
            temporary = os.path.join(folder, ".tmp-" + name)
            self.model.save_weights(temporary, overwrite=True)
            _sync(temporary)
            os.replace(temporary, os.path.join(folder, name))
            row = {"epoch": epoch}
            row.update({k: float(v) for k, v in (logs or {}).items()})
            self.history_rows = [r for r in self.history_rows if r["epoch"] < epoch] + [row]
            previous = None
            if self.saved and self.saved.get("weights"):
                previous = {"epoch": self.saved["epoch"], "weights": self.saved["weights"]}
            state = {
                "config": config,
                "epoch": epoch + 1,
                "weights": name,
                "previous": previous,
                "history": self.history_rows,
            }
            atomic_write_json(os.path.join(folder, STATE), state)
            self.saved = state
            write_history(os.path.join(folder, HISTORY), self.history_rows)
            keep = {name, previous and previous["weights"]}
            for other in os.listdir(folder):
                if other.endswith(".weights.h5") and other not in keep:
                    os.remove(os.path.join(folder, other))

    return RunCheckpoint()


def _sync(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())
