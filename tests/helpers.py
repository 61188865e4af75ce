"""Shared assertions for the test suite."""

import atexit
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading

import keras
import numpy as np

# A Python process that imports TensorFlow only (never `keras_attention`)
# and serves exported models: one request per line on stdin (the export
# folder, the inputs' .npz, their names, the outputs' .npz), one reply per
# line on stdout. Each pytest worker starts one and sends every export round
# trip to it, instead of paying TensorFlow's import once per check.
_SERVER = textwrap.dedent(
    """
    import gc
    import json
    import sys
    import traceback

    import numpy as np
    import tensorflow as tf

    def serve(export_dir, data_path, names, out):
        data = np.load(data_path)
        loaded = tf.saved_model.load(export_dir)  # keep: it owns the variables
        if names[0].startswith("x"):
            # Keras exports a multi-input model's endpoint with one list argument.
            inputs = [tf.constant(data[name]) for name in names]
            served = loaded.serve(inputs if len(inputs) > 1 else inputs[0])
        else:
            # A dict-input model's endpoint takes the dict.
            served = loaded.serve({n[2:]: tf.constant(data[n]) for n in names})
        flat = tf.nest.flatten(served)
        np.savez(out, *[np.asarray(t) for t in flat])

    for line in sys.stdin:
        request = json.loads(line)
        try:
            assert "keras_attention" not in sys.modules
            serve(**request)
            assert "keras_attention" not in sys.modules, "export needs the package"
            reply = {"ok": True}
        except BaseException:
            reply = {"ok": False, "error": traceback.format_exc()}
        gc.collect()
        sys.stdout.write("@@served " + json.dumps(reply) + "\\n")
        sys.stdout.flush()
    """
)


class _ServingProcess:
    """The worker's TensorFlow-only serving process (see `_SERVER`)."""

    # Restarted after this many models, so the memory of the SavedModels it
    # loaded stays bounded.
    MAX_REQUESTS = 12
    TIMEOUT = 300

    def __init__(self):
        self.process = None
        self.requests = 0

    def _start(self):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-c", _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        self.requests = 0

    def stop(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
            self._stderr.close()

    def _stderr_tail(self):
        self._stderr.seek(0)
        return self._stderr.read()[-4000:]

    def serve(self, **request):
        """Sends one request; returns `(ok, error text)`."""
        if self.process is None or self.process.poll() is not None or self.requests >= self.MAX_REQUESTS:
            self.stop()
            self._start()
        self.requests += 1
        reply = []

        def read():
            # Lines anything else printed on stdout are skipped.
            for line in self.process.stdout:
                if line.startswith("@@served "):
                    reply.append(line[len("@@served "):])
                    return

        reader = threading.Thread(target=read, daemon=True)
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reader.start()
        reader.join(self.TIMEOUT)
        if not reply:
            message = f"the serving process gave no answer within {self.TIMEOUT} s or died:\n{self._stderr_tail()}"
            self.stop()
            return False, message
        answer = json.loads(reply[0])
        return answer["ok"], answer.get("error", "")


_SERVING = _ServingProcess()
atexit.register(_SERVING.stop)


def as_list(x):
    """Outputs as a flat list (dicts in sorted-key order, like tf.nest)."""
    if isinstance(x, dict):
        return [x[k] for k in sorted(x)]
    return list(x) if isinstance(x, (list, tuple)) else [x]


def assert_keras_roundtrip(model, inputs, tmp_path, atol=1e-6):
    """`model.save` -> `keras.models.load_model` (no custom_objects) equal."""
    expected = [keras.ops.convert_to_numpy(y) for y in as_list(model(inputs))]
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    got = [keras.ops.convert_to_numpy(y) for y in as_list(restored(inputs))]
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, atol=atol, rtol=1e-5)
    return restored


def assert_export_roundtrip(model, inputs, tmp_path, atol=1e-5):
    """`model.export` -> `tf.saved_model.load` in another Python process.

    That process imports TensorFlow only (never `keras_attention`), so the
    SavedModel must be self-contained. It is the worker's serving process
    (`_SERVING`), started once and reused.
    """
    if isinstance(inputs, dict):
        expected = as_list(model(inputs))
        arrays = {f"d:{k}": np.asarray(v) for k, v in inputs.items()}
    else:
        inputs = as_list(inputs)
        expected = as_list(model(inputs if len(inputs) > 1 else inputs[0]))
        arrays = {f"x{i}": np.asarray(x) for i, x in enumerate(inputs)}
    expected = [keras.ops.convert_to_numpy(y) for y in expected]
    export_dir = os.path.join(str(tmp_path), "export")
    model.export(export_dir, verbose=False)
    data = os.path.join(str(tmp_path), "inputs.npz")
    np.savez(data, **arrays)
    out = os.path.join(str(tmp_path), "served.npz")
    ok, error = _SERVING.serve(export_dir=export_dir, data_path=data, names=list(arrays), out=out)
    assert ok, error[-4000:]
    served = np.load(out)
    got = [served[f"arr_{i}"] for i in range(len(served.files))]
    assert len(got) == len(expected), json.dumps([g.shape for g in got])
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, atol=atol, rtol=1e-5)


def shared_tfds(name=None):
    """The prepared tfds data_dir (`$KERAS_ATTENTION_DATA_DIR`, else
    `../shared/tfds` beside the repository); skips the test when it (or
    dataset `name` in it) is absent."""
    import pytest

    root = os.environ.get("KERAS_ATTENTION_DATA_DIR") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "shared",
        "tfds",
    )
    if not os.path.isdir(root) or (name and not os.path.isdir(os.path.join(root, name))):
        pytest.skip(f"prepared tfds data not found at {root} (set KERAS_ATTENTION_DATA_DIR)")
    return root
