"""Runs `keras-attention ARGS...` with a fault injected, for the tests.

    python faulty_fit.py FAULT -- ARGS...

FAULT is one of:
- `none`: no fault;
- `kill-after-epoch=N`: SIGKILL once epoch N's checkpoint is written;
- `kill-writing-weights=N`: SIGKILL half-way through the checkpoint of
  epoch N (a truncated file on disk, the process dead);
- `kill-writing=NAME`: SIGKILL half-way through writing the final
  `model.keras` (NAME `model.keras`) or the SavedModel (NAME `export`).

The process really dies by SIGKILL (no cleanup code runs), as when the
machine's out-of-memory killer or a user's `kill -9` stops a run.
"""

import os
import signal
import sys


def _die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _truncate_and_die(path):
    with open(path, "r+b") as f:
        f.truncate(96)
    _die()


def main():
    fault, arguments = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    import keras

    from keras_attention import cli
    from keras_attention.cli import checkpoint

    kind, _, value = fault.partition("=")
    if kind in ("kill-after-epoch", "kill-writing-weights"):
        epoch = int(value)
        original = checkpoint.callback

        def callback(folder, config, history):
            saver = original(folder, config, history)
            on_epoch_end = saver.on_epoch_end
            model_save = None

            def patched(done, logs=None):
                nonlocal model_save
                if kind == "kill-writing-weights" and done + 1 == epoch:
                    model_save = saver.model.save_weights

                    def save_weights(path, **kwargs):
                        model_save(path, **kwargs)
                        _truncate_and_die(path)

                    saver.model.save_weights = save_weights
                on_epoch_end(done, logs)
                if kind == "kill-after-epoch" and done + 1 == epoch:
                    _die()

            saver.on_epoch_end = patched
            return saver

        checkpoint.callback = callback
    elif kind == "kill-writing":
        if value == "model.keras":
            save = keras.Model.save

            def killing_save(self, path, *args, **kwargs):
                save(self, path, *args, **kwargs)
                _truncate_and_die(path)

            keras.Model.save = killing_save
        elif value == "export":
            export = keras.Model.export

            def killing_export(self, path, *args, **kwargs):
                export(self, path, *args, **kwargs)
                _truncate_and_die(os.path.join(path, "saved_model.pb"))

            keras.Model.export = killing_export
        else:
            raise SystemExit(f"unknown fault target {value!r}")
    elif kind != "none":
        raise SystemExit(f"unknown fault {fault!r}")
    sys.exit(cli.main(arguments))


if __name__ == "__main__":
    main()
