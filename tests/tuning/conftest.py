"""Tiny ListOps data (generated locally) shared by the tuning tests."""

import os

import pytest

# Small enough that a trial builds, compiles (XLA) and trains in seconds.
TINY = {
    "train_size": 64,
    "validation_size": 32,
    "test_size": 32,
    "min_length": 8,
    "max_length": 24,
    "batch_size": 8,
}
# Small models: the tests check the search machinery, not accuracy.
SMALL = {"num_layers": 1, "hidden_dim": 16, "intermediate_dim": 16}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def listops(data_dir):
    """`(task, options, data)` of a tiny ListOps."""
    from keras_attention.tasks import get_task

    task = get_task("listops")
    options = task.options({**TINY, "epochs": 1, "steps": 2})
    data = task.load("listops", data_dir, options)
    return task, options, data


def cli_environment():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
