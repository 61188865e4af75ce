"""`keras-attention fit --task text` on the prepared glue/sst2 (skipped when
the shared data is absent): a short run, then evaluate and predict on raw
strings."""

import json
import os

from cli_runner import run_cli
from helpers import shared_tfds


def test_text_task_fit_evaluate_predict(tmp_path):
    data_dir = shared_tfds("glue/sst2")
    output = str(tmp_path / "run")
    result = run_cli(
        "fit", "--task", "text", "--data-dir", data_dir, "--attention", "linear",
        "--epochs", "1", "--steps", "20", "--option", "sequence_length=16",
        "--hidden-dim", "16", "--heads", "2", "--layers", "1", "--maps", "1",
        "--output", output, "--verbose", env={"TF_CPP_MIN_LOG_LEVEL": None},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # 20 steps are a part of one pass over the cached split, and the
    # validation split's size is only known after reading it: neither may
    # make tf.data or Keras warn (even with TensorFlow's log on).
    for warning in ("cache_dataset_ops", "ran out of data", "Skipping variable loading"):
        assert warning not in result.stderr, result.stderr[-3000:]
    with open(os.path.join(output, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["dataset"] == "glue/sst2"
    # SST-2's test split has no labels: the number is the validation
    # split's, and every report says so.
    assert metrics["test_split"] == "validation"
    assert "evaluated on the 'validation' split: accuracy" in result.stdout
    assert 0.4 < metrics["baselines"]["majority_class_accuracy"] < 0.6
    evaluated = run_cli("evaluate", "--model", output)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads(evaluated.stdout[evaluated.stdout.index("{"):])
    assert abs(report["test"]["accuracy"] - metrics["test"]["accuracy"]) < 1e-6
    assert report["test_split"] == "validation"
    predicted = run_cli("predict", "--model", output, "a gripping , funny film", "dull and lifeless", "--json")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    lines = [json.loads(x) for x in predicted.stdout.splitlines() if x.startswith("{")]
    assert [x["prediction"] in ("0", "1") for x in lines] == [True, True]
