"""The embedded ListOps dataset: generator, evaluator, tfds builder, pipeline."""

import collections

import numpy as np
import pytest
import tensorflow_datasets as tfds

import keras_attention  # noqa: F401  (registers the builder)
from keras_attention.data import listops

TINY = dict(min_length=8, max_length=40, train_size=64, validation_size=16, test_size=16)


def _parse(tokens):
    """Depth and argument counts of an expression, by a separate parser."""
    depth, deepest, counts, stack = 0, 0, [], []
    for token in tokens:
        if token.startswith("["):
            if stack:
                stack[-1] += 1
            stack.append(0)
            depth += 1
            deepest = max(deepest, depth)
        elif token == "]":
            counts.append(stack.pop())
            depth -= 1
        else:
            stack[-1] += 1
    return deepest, counts


@pytest.mark.parametrize(
    "text,value",
    [
        ("[MAX 2 9 [MIN 4 7 ] 0 ]", 9),
        ("[MIN 4 7 ]", 4),
        ("[MED 1 5 2 8 ]", 3),  # int(median) = int(3.5)
        ("[MED 7 1 4 ]", 4),
        ("[SM 9 8 7 ]", 4),
        ("[SM [MAX 2 3 ] [MIN 9 9 ] ]", 2),
    ],
)
def test_evaluator(text, value):
    assert listops.evaluate_listops(text) == value


@pytest.mark.parametrize("text", ["[MAX 2 9", "2 3", "[MAX ]", "[FOO 1 ]", "[MIN 1 ] 2", "]"])
def test_evaluator_rejects_malformed(text):
    with pytest.raises(ValueError, match="ListOps"):
        listops.evaluate_listops(text)


def test_generator_follows_lra_rules_and_is_deterministic():
    first = list(listops.generate_listops(200, 20, 120, seed=3))
    again = list(listops.generate_listops(200, 20, 120, seed=3))
    other = list(listops.generate_listops(200, 20, 120, seed=4))
    assert first == again and first != other
    for tokens in first:
        assert 20 <= len(tokens) <= 120
        depth, counts = _parse(tokens)
        assert depth <= listops.MAX_DEPTH
        assert all(2 <= c <= 10 for c in counts)
        assert set(tokens) <= set(listops.listops_vocabulary()[1:])
    labels = collections.Counter(listops.evaluate_listops(t) for t in first)
    assert len(labels) >= 8  # every class occurs; no class dominates
    assert max(labels.values()) / len(first) < 0.35


def test_encode_decode_round_trip():
    text = "[SM 3 [MAX 2 9 ] ]"
    ids = listops.encode_listops(text)
    assert ids.dtype == np.int32 and 0 not in ids
    assert listops.decode_listops(list(ids) + [0, 0]) == text
    with pytest.raises(ValueError, match="unknown token"):
        listops.encode_listops("[MAX 2 x ]")


def test_tfds_builder_offline(tmp_path):
    config = listops.ListopsConfig(name="tiny", seed=5, **TINY)
    builder = tfds.builder("listops", config=config, data_dir=str(tmp_path))
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == 64
    examples = list(tfds.as_numpy(builder.as_dataset(split="test")))
    assert len(examples) == 16
    for ex in examples:
        text = ex["text"].decode()
        assert listops.decode_listops(ex["tokens"]) == text
        assert ex["label"] == listops.evaluate_listops(text)
        assert ex["length"] == len(ex["tokens"]) and 8 <= ex["length"] <= 40
    # The same config generates the same examples in another folder.
    again = tfds.builder("listops", config=listops.ListopsConfig(name="tiny", seed=5, **TINY), data_dir=str(tmp_path / "again"))
    again.download_and_prepare()
    texts = sorted(ex["text"] for ex in tfds.as_numpy(again.as_dataset(split="test")))
    assert texts == sorted(ex["text"] for ex in examples)


def test_registered_names():
    assert "listops" in tfds.list_builders()
    names = [c.name for c in listops.Listops.BUILDER_CONFIGS]
    assert names == ["small", "lra"]
    lra = listops.Listops.BUILDER_CONFIGS[1]
    assert (lra.min_length, lra.max_length, lra.train_size, lra.test_size) == (500, 2000, 96_000, 2_000)


def test_pipeline_has_static_shapes(tmp_path):
    config = listops.ListopsConfig(name="tiny", seed=6, **TINY)
    train = listops.load_listops("train", data_dir=str(tmp_path), config=config, batch_size=8)
    test = listops.load_listops("test", data_dir=str(tmp_path), config=config, batch_size=10)
    assert tuple(train.element_spec[0].shape) == (8, 40)
    assert train.element_spec[0].dtype.name == "int32"
    assert tuple(test.element_spec[0].shape) == (None, 40)
    batches = list(train)
    assert len(batches) == 8  # 64 / 8, nothing dropped
    sizes = [int(x.shape[0]) for x, _ in test]
    assert sizes == [10, 6]
