"""`import keras_attention` stays light: layers, models and ops only.

tensorflow-datasets (through the pipelines) and keras-tuner load where they
are used; `tfds.load("listops")` works once `keras_attention.data` is
imported.
"""

import subprocess
import sys


def run(code):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_package_imports_without_tensorflow_datasets():
    out = run(
        "import sys, keras_attention as ka\n"
        "assert 'tensorflow_datasets' not in sys.modules, 'tfds imported'\n"
        "assert 'keras_tuner' not in sys.modules\n"
        "ka.layers.MultiHeadAttention(num_heads=2, key_dim=4)\n"
        "ka.models.text_classifier(20, 2, 8, hidden_dim=8, num_layers=1, num_heads=2)\n"
        "assert 'tensorflow_datasets' not in sys.modules, 'tfds imported by a builder'\n"
        "data = ka.data\n"
        "assert 'tensorflow_datasets' in sys.modules\n"
        "print(data.__name__)\n"
    )
    assert out.strip() == "keras_attention.data"


def test_listops_loads_through_tfds_after_importing_the_data_package(tmp_path):
    out = run(
        "import sys, tensorflow_datasets as tfds\n"
        "import keras_attention.data\n"
        "from keras_attention.data import listops_config\n"
        "config = listops_config('small', train_size=8, validation_size=4, test_size=4, "
        "max_length=24, min_length=8)\n"
        f"ds = tfds.load('listops', split='test', data_dir={str(tmp_path)!r}, "
        "builder_kwargs={'config': config})\n"
        "print(sum(1 for _ in ds))\n"
    )
    assert out.strip().splitlines()[-1] == "4"
