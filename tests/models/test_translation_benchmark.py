"""benchmarks/translation.py on FLoRes from the prepared tfds folder: a short
run beats the most-frequent-token baseline; absent data skips cleanly."""

import importlib.util
import os

import pytest

from helpers import shared_tfds

BENCHMARK = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "benchmarks",
    "translation.py",
)


def _benchmark():
    spec = importlib.util.spec_from_file_location("translation_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_short_flores_run_beats_the_baseline(capsys):
    data_dir = shared_tfds("flores")
    rows = _benchmark().main([
        "--data-dir", data_dir, "--variants", "multi_head", "--epochs", "8", "--budget", "240",
        "--hidden-dim", "64", "--num-layers", "1", "--decode", "16", "--beam-size", "2",
    ])
    printed = capsys.readouterr().out
    baseline = float(printed.split("baseline (test token accuracy): ")[1].split()[0])
    (row,) = rows
    assert row["accuracy"] > baseline + 0.03, (row, baseline)
    # A model that beats the most-frequent-token baseline gets some unigrams
    # right; BLEU is on a 0-100 scale, and adding bigram precision (never
    # above the unigram one here) cannot raise it.
    assert 0 < row["bleu_1"] <= 100, row
    assert 0 <= row["bleu_2"] <= row["bleu_1"], row


def test_absent_data_skips_cleanly(tmp_path, capsys):
    assert _benchmark().main(["--data-dir", str(tmp_path)]) == []
    assert "skipped: flores/neen not found" in capsys.readouterr().out
