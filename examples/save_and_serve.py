"""Save and load `.keras`, export a SavedModel, serve it with plain TensorFlow.

The `.keras` file is reloaded in a fresh Python process that does what any
loading program needs: `import keras_attention` once (the import registers
this package's classes with Keras), then `keras.models.load_model(path)`,
with no `custom_objects` and no `safe_mode=False`. Without that import,
Keras stops with "TypeError: Could not locate class
'TokenAndPositionEmbedding'" (see the README's "Save, load and serve").
The SavedModel is served in another fresh process that imports TensorFlow
only, so a server does not need this package.

    python examples/save_and_serve.py --output /tmp/served
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

import keras_attention as ka

LOAD = """
import sys

import keras
import numpy as np

import keras_attention  # noqa: F401  (registers this package's classes with Keras)

model = keras.models.load_model(sys.argv[1])  # no custom_objects, no safe_mode=False
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
"""

SERVE = """
import sys

import numpy as np
import tensorflow as tf

reloaded = tf.saved_model.load(sys.argv[1])
np.save(sys.argv[3], np.asarray(reloaded.serve(tf.constant(np.load(sys.argv[2])))))
"""


def run_fresh(script, model, inputs, output):
    """Runs `script` on `model` and `inputs` (.npy) in a new Python process;
    returns the predictions it saved to `output` (.npy)."""
    done = subprocess.run(
        [sys.executable, "-c", script, model, inputs, output],
        capture_output=True, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    if done.returncode:
        raise RuntimeError(f"the fresh process failed:\n{done.stderr[-3000:]}")
    return np.load(output)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=None, help="folder for model.keras and export/")
    args = parser.parse_args(argv)
    output = args.output or tempfile.mkdtemp()
    model = ka.models.text_classifier(
        vocabulary_size=100, num_classes=3, sequence_length=16,
        hidden_dim=32, num_layers=1, num_heads=4, attention="sparse",
        attention_kwargs={"block_size": 4},
    )
    tokens = np.random.default_rng(0).integers(1, 100, size=(2, 16)).astype("int32")
    expected = model.predict(tokens, verbose=0)
    inputs = os.path.join(output, "tokens.npy")
    np.save(inputs, tokens)

    path = os.path.join(output, "model.keras")
    model.save(path)
    reloaded = run_fresh(LOAD, path, inputs, os.path.join(output, "reloaded.npy"))
    np.testing.assert_allclose(reloaded, expected, atol=1e-6)
    print(f".keras reloaded in a fresh process: identical predictions ({path})")

    export = os.path.join(output, "export")
    model.export(export, verbose=False)
    got = run_fresh(SERVE, export, inputs, os.path.join(output, "served.npy"))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    print(f"SavedModel served by plain TensorFlow: identical predictions ({export})")
    return got


if __name__ == "__main__":
    main()
