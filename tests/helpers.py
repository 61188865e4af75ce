"""Shared assertions for the test suite."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

_LOAD_AND_SERVE = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    assert "keras_attention" not in sys.modules
    data = np.load(sys.argv[2])
    names = sys.argv[3].split(",")
    loaded = tf.saved_model.load(sys.argv[1])  # keep: it owns the variables
    if names[0].startswith("x"):
        # Keras exports a multi-input model's endpoint with one list argument.
        inputs = [tf.constant(data[name]) for name in names]
        served = loaded.serve(inputs if len(inputs) > 1 else inputs[0])
    else:
        # A dict-input model's endpoint takes the dict.
        served = loaded.serve({n[2:]: tf.constant(data[n]) for n in names})
    flat = tf.nest.flatten(served)
    np.savez(sys.argv[4], *[np.asarray(t) for t in flat])
    assert "keras_attention" not in sys.modules, "export needs the package"
    """
)


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
    """`model.export` -> `tf.saved_model.load` in a fresh Python process.

    The fresh process imports TensorFlow only (never `keras_attention`), so
    the SavedModel must be self-contained.
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
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_SERVE, export_dir, data, ",".join(arrays), out],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
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
