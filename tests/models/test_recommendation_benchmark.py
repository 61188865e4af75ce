"""benchmarks/recommendation.py: a short run beats both baselines; MovieLens
absent skips cleanly."""

import importlib.util
import os

import pytest

BENCHMARK = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "benchmarks",
    "recommendation.py",
)


def _benchmark():
    spec = importlib.util.spec_from_file_location("recommendation_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_short_run_beats_popularity_and_matrix_factorisation(capsys):
    rows = _benchmark().main([
        "--users", "400", "--items", "100", "--variants", "multi_head", "--epochs", "4",
        "--batch-size", "64", "--learning-rate", "3e-3",
        "--sequence-length", "12", "--hidden-dim", "32", "--num-layers", "1", "--mf-epochs", "5",
    ])
    printed = capsys.readouterr().out
    assert "| popularity |" in printed and "| matrix factorisation |" in printed
    popular, factorised, ours = rows
    assert ours["model"] == "sequential_recommender (multi_head)"
    best = max(popular["hr@10"], factorised["hr@10"])
    assert ours["hr@10"] > best + 0.15, rows
    assert ours["ndcg@10"] > max(popular["ndcg@10"], factorised["ndcg@10"]) + 0.1, rows
    assert ours["rmse"] < popular["rmse"], rows


def test_movielens_absent_skips_cleanly(tmp_path, capsys):
    rows = _benchmark().main(["--dataset", "movielens/100k-ratings", "--data-dir", str(tmp_path)])
    assert rows == []
    assert "skipped: movielens/100k-ratings not found" in capsys.readouterr().out
