"""The embedded ListOps dataset: generator, evaluator, tfds builder, pipeline."""

import collections
import doctest
import re
import tempfile
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds

import keras_attention  # noqa: F401  (registers the builder)
from keras_attention.data import listops

TINY = dict(min_length=8, max_length=40, train_size=64, validation_size=16, test_size=16)


def _parse(tokens):
    """Depth (digits count as a level) and argument counts, by a separate parser."""
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
            deepest = max(deepest, depth + 1)
    assert not stack
    return deepest, counts


def _load(tmp_path, name, **fields):
    """The test split of a tiny config through `tfds.load`, as NumPy dicts."""
    config = listops.ListopsConfig(name=name, **{**TINY, **fields})
    ds = tfds.load("listops", split="test", data_dir=str(tmp_path), builder_kwargs={"config": config})
    return list(tfds.as_numpy(ds))


@pytest.mark.parametrize(
    "text,value",
    [
        ("[MAX 2 9 [MIN 4 7 ] 0 ]", 9),
        ("[MIN 4 7 ]", 4),
        ("[MED 1 5 2 8 ]", 3),  # int(median) = int(3.5)
        ("[MED 7 1 4 ]", 4),
        ("[SM 9 8 7 ]", 4),
        ("[SM [MAX 2 3 ] [MIN 9 9 ] ]", 2),
        ("[MED [SM 5 5 ] [MAX 0 1 ] 9 8 ]", 4),  # median of 0 1 9 8 = 4.5
    ],
)
def test_evaluator(text, value):
    assert listops.evaluate_listops(text) == value
    assert listops.evaluate_listops(text.split()) == value


def test_median_truncates_like_numpy():
    rng = np.random.default_rng(0)
    for size in range(1, 11):
        for _ in range(20):
            args = rng.integers(0, 10, size).tolist()
            text = "[MED " + " ".join(map(str, args)) + " ]"
            assert listops.evaluate_listops(text) == int(np.median(args))


@pytest.mark.parametrize("text", ["[MAX 2 9", "2 3", "[MAX ]", "[FOO 1 ]", "[MIN 1 ] 2", "]", ""])
def test_evaluator_rejects_malformed(text):
    with pytest.raises(ValueError, match="ListOps"):
        listops.evaluate_listops(text)


def test_generator_follows_lra_rules_and_is_deterministic():
    first = list(listops.generate_listops(200, 20, 120, seed=3))
    again = list(listops.generate_listops(200, 20, 120, seed=3))
    other = list(listops.generate_listops(200, 20, 120, seed=4))
    assert first == again and first != other
    depths = []
    for tokens, label in first:
        assert 20 <= len(tokens) <= 120
        assert tokens[0] in listops.OPERATORS
        depth, counts = _parse(tokens)
        depths.append(depth)
        assert all(2 <= c <= 10 for c in counts)
        assert set(tokens) <= set(listops.listops_vocabulary()[1:])
        # The label is computed while drawing; the evaluator parses the tokens.
        assert label == listops.evaluate_listops(tokens)
    assert max(depths) == listops.MAX_DEPTH  # reached, never passed
    assert len({" ".join(t) for t, _ in first}) == 200
    # Class balance: MIN/MAX favour 0 and 9, yet every class occurs and
    # always answering the majority class stays weak.
    labels = collections.Counter(label for _, label in first)
    majority = max(labels.values()) / len(first)
    assert len(labels) == 10
    assert 0.1 < majority < 0.3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(min_length=50, max_length=40), "min_length <= max_length"),
        (dict(max_length=3), "max_length"),
        (dict(max_args=1), "max_args"),
        (dict(operator_probability=0.0), "operator_probability"),
        (dict(count=-1), "count"),
        (dict(count=2.5), "count"),
    ],
)
def test_generator_rejects_bad_arguments(kwargs, match):
    arguments = {**dict(count=4, min_length=8, max_length=40, seed=0), **kwargs}
    with pytest.raises(ValueError, match=match):
        listops.generate_listops(**arguments)  # raised at the call, not on iteration


def test_generator_stops_when_the_range_is_exhausted(monkeypatch):
    monkeypatch.setattr(listops, "_MAX_FAILED_DRAWS", 20_000)
    # Four tokens and two arguments: 4 operators x 10 x 10 = 400 expressions.
    everything = list(listops.generate_listops(400, 4, 4, seed=0, max_args=2))
    assert len({" ".join(t) for t, _ in everything}) == 400
    with pytest.raises(ValueError, match="no new expression of 4-4 tokens"):
        list(listops.generate_listops(401, 4, 4, seed=0, max_args=2))


def test_encode_decode_round_trip():
    text = "[SM 3 [MAX 2 9 ] ]"
    ids = listops.encode_listops(text)
    assert ids.dtype == np.int32 and ids.tolist() == [14, 4, 12, 3, 10, 15, 15]
    assert listops.decode_listops(list(ids) + [0, 0]) == text
    assert listops.decode_listops(np.pad(ids, (0, 3))) == text
    vocabulary = listops.listops_vocabulary()
    assert len(vocabulary) == 16 and vocabulary[0] == "<pad>" and vocabulary[1:11] == list("0123456789")
    with pytest.raises(ValueError, match="unknown token"):
        listops.encode_listops("[MAX 2 x ]")
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 15\]"):
        listops.decode_listops([3, 16])
    with pytest.raises(ValueError, match="1-D"):
        listops.decode_listops([[3, 4]])
    with pytest.raises(TypeError, match="evaluate_listops"):
        listops.evaluate_listops(42)


def test_tfds_load_offline(tmp_path):
    examples = _load(tmp_path / "a", "tiny", seed=5)
    assert len(examples) == 16
    for ex in examples:
        text = ex["text"].decode()
        assert listops.decode_listops(ex["tokens"]) == text
        assert ex["label"] == listops.evaluate_listops(text)
        assert ex["length"] == len(ex["tokens"]) and 8 <= ex["length"] <= 40
    builder = tfds.builder("listops", data_dir=str(tmp_path / "a"), config=listops.ListopsConfig(name="tiny", seed=5, **TINY))
    assert builder.info.splits["train"].num_examples == 64
    assert builder.info.features["label"].num_classes == 10
    assert builder.info.supervised_keys == ("tokens", "label")
    # The same config generates the same examples in another folder; another
    # seed other examples.
    texts = sorted(ex["text"] for ex in examples)
    assert sorted(ex["text"] for ex in _load(tmp_path / "b", "tiny", seed=5)) == texts
    assert sorted(ex["text"] for ex in _load(tmp_path / "c", "tiny", seed=6)) != texts


def test_registered_names_and_configs():
    assert "listops" in tfds.list_builders()
    names = [c.name for c in listops.Listops.BUILDER_CONFIGS]
    assert names == ["small", "lra"] and listops.Listops.DEFAULT_CONFIG_NAME == "small"
    small, lra = listops.Listops.BUILDER_CONFIGS
    assert (small.min_length, small.max_length, small.train_size) == (32, 128, 20_000)
    assert (lra.min_length, lra.max_length, lra.train_size, lra.validation_size, lra.test_size) == (
        500, 2000, 96_000, 2_000, 2_000,
    )


def test_configs_are_checked():
    config = listops.listops_config("small", max_length=64, seed=3, train_size=None)
    assert config.name == "small-max_length64-seed3"
    assert (config.min_length, config.max_length, config.seed, config.train_size) == (32, 64, 3, 20_000)
    assert listops.listops_config("lra", min_length=500) == "lra"
    with pytest.raises(ValueError, match="`config` must be one of"):
        listops.listops_config("medium")
    with pytest.raises(ValueError, match="unknown config field"):
        listops.listops_config("small", depth=3)
    with pytest.raises(ValueError, match="min_length <= max_length"):
        listops.listops_config("small", max_length=16)
    with pytest.raises(ValueError, match="train_size"):
        listops.ListopsConfig(name="x", train_size=0)
    with pytest.raises(ValueError, match="seed"):
        listops.ListopsConfig(name="x", seed="0")


def test_pipeline_has_static_shapes(tmp_path):
    config = listops.ListopsConfig(name="tiny", seed=6, **TINY)
    train = listops.load_listops("train", data_dir=str(tmp_path), config=config, batch_size=8)
    test = listops.load_listops("test", data_dir=str(tmp_path), config=config, batch_size=10, max_length=48)
    assert tuple(train.element_spec[0].shape) == (8, 40)
    assert train.element_spec[0].dtype.name == "int32"
    assert tuple(train.element_spec[1].shape) == (8,)
    assert tuple(test.element_spec[0].shape) == (None, 48)
    batches = list(train)
    assert len(batches) == 8  # 64 / 8, nothing dropped
    sizes = [int(x.shape[0]) for x, _ in test]
    assert sizes == [10, 6]
    for ids, labels in test:
        for row, label in zip(ids.numpy(), labels.numpy()):
            length = int(np.count_nonzero(row))
            assert np.all(row[length:] == 0)  # padded at the end only
            assert listops.evaluate_listops(listops.decode_listops(row)) == label


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(max_length=16), r"`max_length` \(16\) must be at least"),
        (dict(batch_size=0), "batch_size"),
        (dict(config="medium"), "`config` must be one of"),
    ],
)
def test_pipeline_rejects_bad_arguments_before_generating(tmp_path, kwargs, match):
    arguments = {"config": listops.ListopsConfig(name="tiny", **TINY), **kwargs}
    with pytest.raises(ValueError, match=match):
        listops.load_listops("train", data_dir=str(tmp_path), **arguments)
    assert not (tmp_path / "listops").exists()


def test_docstring_examples_run(tmp_path, monkeypatch):
    folders = iter(range(100))
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: str(tmp_path / str(next(folders))))
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = doctest.DocTestFinder().find(listops, globs=vars(listops).copy())
    assert sum(len(t.examples) for t in tests) >= 8
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
    blocks = [
        textwrap.dedent(block)
        for obj in (listops.Listops, listops.load_listops)
        for block in re.findall(r"```python\n(.*?)```", obj.__doc__, re.S)
    ]
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "<docstring>", "exec"), {})
    assert len(list(tmp_path.iterdir())) == 2
