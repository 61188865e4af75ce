"""The `>>>` examples in the docstrings of every public module run and print
what they say (the API reference shows them), and every public layer,
model builder and hypermodel has at least one.

One test per module that defines a public name (parametrized, so a failure
names the module). `keras_attention.xla_check` is left out: its examples
run in tests/test_tpu_readiness.py."""

import ast
import doctest
import importlib
import os

import keras
import numpy as np
import pytest

import keras_attention
from keras_attention.layers.attention import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("ops", "layers", "models", "data", "tuning")
# Modules documented as a whole (their names are defined in the module).
SINGLE = ("keras_attention", "keras_attention.distribute")
DOCTESTED_ELSEWHERE = ("keras_attention.xla_check",)

# Builders and hypermodels that are not layers but need an example too.
BUILDERS = {
    "keras_attention.models": (
        "text_classifier",
        "with_preprocessing",
        "image_classifier",
        "audio_classifier",
        "question_answering",
        "language_model",
        "seq2seq",
        "sequential_recommender",
        "matrix_factorization",
        "image_segmenter",
        "video_classifier",
        "multimodal_classifier",
        "speech_recognizer",
        "speech_enhancer",
        "object_detector",
    ),
    "keras_attention.tuning": ("TaskHyperModel", "hypermodel"),
}


def _defining_modules(package):
    """The modules `keras_attention.<package>/__init__.py` imports its
    public names from, in order (read from the source: no import at
    collection)."""
    path = os.path.join(ROOT, "keras_attention", package, "__init__.py")
    found = [f"keras_attention.{package}"]
    for node in ast.parse(open(path, encoding="utf-8").read()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module not in found:
            found.append(node.module)
    return found


MODULES = [m for p in PACKAGES for m in _defining_modules(p)] + list(SINGLE)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    # The examples may use `keras`, `np` and `ka` without importing them (the
    # API reference says so), and every name of their own module.
    globs = {"keras": keras, "np": np, "ka": keras_attention, **vars(module)}
    tests = [t for t in finder.find(module, module_name, globs=globs) if t.examples]
    # Only this module's own objects (not those it imports).
    tests = [t for t in tests if t.name == module_name or t.name.startswith(module_name + ".")]
    failed = []
    # `register_attention`'s example registers a variant: forgotten after.
    variants, structural = dict(registry._VARIANTS), dict(registry._STRUCTURAL)
    try:
        for test in tests:
            runner.run(test, out=failed.append)
    finally:
        registry._VARIANTS.clear()
        registry._VARIANTS.update(variants)
        registry._STRUCTURAL.clear()
        registry._STRUCTURAL.update(structural)
    assert runner.failures == 0, "".join(failed)


def test_every_public_layer_and_builder_has_an_example():
    layers = importlib.import_module("keras_attention.layers")
    wanted = [("keras_attention.layers", name) for name in layers.__all__]
    wanted += [(module, name) for module, names in BUILDERS.items() for name in names]
    without = []
    for module_name, name in wanted:
        doc = getattr(importlib.import_module(module_name), name).__doc__ or ""
        if ">>>" not in doc:
            without.append(f"{module_name}.{name}")
    assert not without, f"public layers/builders without a `>>>` example: {without}"


def test_xla_check_examples_run_elsewhere():
    # The module left out above keeps its own doctest run.
    text = open(os.path.join(ROOT, "tests", "test_tpu_readiness.py"), encoding="utf-8").read()
    assert "def test_docstring_examples_run" in text and DOCTESTED_ELSEWHERE[0].split(".")[1] in text


WITH_WHEN_TO_USE = (
    "MultiHeadAttention",
    "ScaledDotProductAttention",
    "AdditiveAttention",
    "RegionalAttention",
    "LinearAttention",
    "LowRankAttention",
    "SparseAttention",
    "DistributedAttention",
)


def test_variant_docstrings_say_when_to_use_them():
    layers = importlib.import_module("keras_attention.layers")
    without = [n for n in WITH_WHEN_TO_USE if "When to use it" not in getattr(layers, n).__doc__]
    assert not without, f"variants whose docstring lost its 'When to use it' section: {without}"
