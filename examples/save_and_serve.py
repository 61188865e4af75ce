"""Save and load `.keras`, export a SavedModel, serve it with plain TensorFlow.

The `.keras` file loads with `keras.models.load_model` alone (no
`custom_objects`); the SavedModel is served in a fresh Python process that
imports TensorFlow only, so a server does not need this package.

    python examples/save_and_serve.py --output /tmp/served
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np

import keras_attention as ka

SERVE = """
import json
import sys
import numpy as np
import tensorflow as tf
reloaded = tf.saved_model.load(sys.argv[1])
tokens = np.load(sys.argv[2])
print(json.dumps(np.asarray(reloaded.serve(tf.constant(tokens))).tolist()))
"""


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

    path = os.path.join(output, "model.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)  # no custom_objects needed
    np.testing.assert_allclose(reloaded.predict(tokens, verbose=0), expected, atol=1e-6)
    print(f".keras round trip: identical predictions ({path})")

    export = os.path.join(output, "export")
    model.export(export, verbose=False)
    np.save(os.path.join(output, "tokens.npy"), tokens)
    served = subprocess.run(
        [sys.executable, "-c", SERVE, export, os.path.join(output, "tokens.npy")],
        capture_output=True, text=True, check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    got = np.array(json.loads(served.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    print(f"SavedModel served by plain TensorFlow: identical predictions ({export})")
    return got


if __name__ == "__main__":
    main()
