"""SQuAD-layout pipeline: tokenisation, span mapping, packing, tfds mock data."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_attention.models import evaluate_question_answering
from keras_attention.data import squad_data
from keras_attention.data.question_answering import CLS
from keras_attention.data.question_answering import SEP
from keras_attention.data.question_answering import answer_positions
from keras_attention.data.question_answering import build_vocabulary
from keras_attention.data.question_answering import char_span_to_token_span
from keras_attention.data.question_answering import encode_question_answering
from keras_attention.data.question_answering import span_text
from keras_attention.data.question_answering import tokenize
from keras_attention.models import exact_match

TEXTS = [
    "It's (1990). The U.S. state-of-the-art   model!",
    "Tabs\tand\nnewlines, ÉCOLE café \u2013 naïve\xa0space",
    "... !!! ,,,",
    "",
]


def test_tokenize_offsets_and_punctuation():
    tokens, offsets = tokenize(TEXTS[0])
    assert tokens == ["its", "1990", "the", "us", "stateoftheart", "model"]
    assert [TEXTS[0][s:e] for s, e in offsets] == ["It's", "(1990).", "The", "U.S.", "state-of-the-art", "model!"]
    assert tokenize(TEXTS[2]) == ([], [])
    # Only ASCII is lower-cased and split on, as in `TextVectorization`.
    assert tokenize(TEXTS[1])[0] == ["tabs", "and", "newlines", "École", "café", "\u2013", "naïve\xa0space"]


def test_tokens_match_text_vectorization():
    vocabulary = build_vocabulary(TEXTS, 100)
    assert vocabulary[:4] == ["", "[UNK]", "[CLS]", "[SEP]"]
    vectorizer = keras.layers.TextVectorization(vocabulary=vocabulary[2:])
    assert vectorizer.get_vocabulary() == vocabulary
    index = {t: i for i, t in enumerate(vocabulary)}
    for text in TEXTS + ["unseen words, It's here"]:
        expected = [index.get(t, 1) for t in tokenize(text)[0]]
        got = keras.ops.convert_to_numpy(vectorizer([text]))[0]
        np.testing.assert_array_equal(got[got != 0], expected)


def test_build_vocabulary_counts_and_cuts():
    vocabulary = build_vocabulary(["b a b", "c b a", "d"], 6)
    assert vocabulary == ["", "[UNK]", "[CLS]", "[SEP]", "b", "a"]


@pytest.mark.parametrize(
    "span,expected",
    [((5, 9), (1, 1)), ((6, 10), (1, 1)), ((0, 12), (0, 1)), ((4, 5), None), ((13, 20), (2, 2)), ((40, 45), None), ((3, 3), None)],
)
def test_char_span_to_token_span(span, expected):
    # "It's (1990). The": chunks [0, 4) [5, 12) [13, 16)
    _, offsets = tokenize("It's (1990). The")
    assert char_span_to_token_span(offsets, *span) == expected


def test_packing_and_answer_round_trip():
    vocabulary = build_vocabulary(["when was it built", "It was built in (1990). Paris"], 50)
    index = {t: i for i, t in enumerate(vocabulary)}
    context = "It was built in (1990). Paris"
    encoded = encode_question_answering("When was it built?", context, vocabulary, 12, question_length=3)
    question = [index[t] for t in ["when", "was", "it"]]
    words = [index[t] for t in ["it", "was", "built", "in", "1990", "paris"]]
    np.testing.assert_array_equal(encoded["token_ids"], [CLS, *question, SEP, *words[:7], 0][:12] + [0] * 0)
    np.testing.assert_array_equal(encoded["segment_ids"], [0] * 5 + [1] * 6 + [0])
    assert encoded["context_start"] == 5 and encoded["context_tokens"] == 6
    np.testing.assert_array_equal(encoded["offsets"][:5], -1)
    np.testing.assert_array_equal(encoded["offsets"][9], [16, 23])
    positions = answer_positions(encoded, context, "1990", context.index("1990"))
    assert positions == (9, 9)
    assert span_text(context, encoded["offsets"], *positions) == "(1990)."
    assert exact_match(span_text(context, encoded["offsets"], *positions), "1990") == 1.0
    assert span_text(context, encoded["offsets"], 7, 10) == "built in (1990). Paris"
    assert span_text(context, encoded["offsets"], 2, 6) == ""  # starts in the question
    # A window too short for the answer: no positions.
    short = encode_question_answering("When was it built?", context, vocabulary, 9, question_length=3)
    assert short["context_tokens"] == 4
    assert answer_positions(short, context, "1990", context.index("1990")) is None
    # An answer the window cuts in two is no target either.
    cut = encode_question_answering("When was it built?", context, vocabulary, 10, question_length=3)
    assert cut["context_tokens"] == 5
    assert answer_positions(cut, context, "1990", context.index("1990")) == (9, 9)
    assert answer_positions(cut, context, "1990). Paris", context.index("1990")) is None


WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def _examples(count, seed):
    """Consistent SQuAD examples: the answer is a phrase of the context."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(count):
        words = list(rng.choice(WORDS, size=int(rng.integers(4, 14))))
        context = " ".join(words) + "."
        first = int(rng.integers(0, len(words)))
        last = min(len(words) - 1, first + int(rng.integers(0, 3)))
        answer = " ".join(words[first:last + 1])
        start = len(" ".join(words[:first])) + (1 if first else 0)
        assert context[start:start + len(answer)] == answer
        examples.append({
            "id": f"q{i}",
            "title": "t",
            "context": context,
            "question": f"which {words[first]} comes?",
            "answers": {"text": [answer, answer.upper()], "answer_start": np.array([start, start], "int32")},
        })
    return examples


def _as_dataset(self, split, *args, **kwargs):
    examples = _examples(24 if str(split).startswith("train") else 10, 0 if str(split).startswith("train") else 1)
    keys = examples[0].keys()
    columns = {k: [e[k] for e in examples] for k in keys if k != "answers"}
    columns["answers"] = {
        "text": tf.ragged.constant([e["answers"]["text"] for e in examples]),
        "answer_start": tf.ragged.constant([list(e["answers"]["answer_start"]) for e in examples]),
    }
    ds = tf.data.Dataset.from_tensor_slices(columns)
    return ds.map(lambda ex: {**ex, "answers": {k: v.to_tensor() if hasattr(v, "to_tensor") else v for k, v in ex["answers"].items()}})


def _squad(**kwargs):
    arguments = dict(sequence_length=12, question_length=4, vocabulary_size=40, batch_size=4)
    arguments.update(kwargs)
    with tfds.testing.mock_data(as_dataset_fn=_as_dataset):
        return squad_data(**arguments)


def test_squad_data_targets_point_at_the_answer():
    data = _squad()
    examples = _examples(24, 0)
    # 12 positions - [CLS] - 3 question tokens - [SEP] leave 7
    # context tokens: answers past them are dropped.
    expected_kept = 0
    for example in examples:
        encoded = encode_question_answering(example["question"], example["context"], data.vocabulary, 12, 4)
        if answer_positions(encoded, example["context"], example["answers"]["text"][0], int(example["answers"]["answer_start"][0])):
            expected_kept += 1
    assert data.train_examples == expected_kept and data.train_dropped == 24 - expected_kept
    assert 0 < data.train_dropped < 24
    assert int(data.train.cardinality()) == expected_kept // 4
    spec = data.train.element_spec
    assert tuple(spec[0][0].shape) == (4, 12) and spec[0][0].dtype == tf.int32
    for (tokens, segments), (starts, ends) in data.train:
        tokens, segments = tokens.numpy(), segments.numpy()
        for row in range(4):
            s, e = int(starts[row]), int(ends[row])
            assert s <= e and np.all(segments[row, s:e + 1] == 1)
            words = [data.vocabulary[i] for i in tokens[row, s:e + 1]]
            assert all(w in WORDS for w in words)
    # Validation keeps every example for the metrics.
    assert len(data.validation_examples["contexts"]) == 10
    assert data.validation_examples["token_ids"].shape == (10, 12)
    assert data.validation_examples["answers"][0][1] == data.validation_examples["answers"][0][0].upper()


class _Oracle:
    """Predicts the reference span (from the validation targets)."""

    def __init__(self, spans):
        self.spans = spans

    def predict(self, inputs, **kwargs):
        tokens = inputs[0]
        start = np.full(tokens.shape, -1e9, "float32")
        end = np.full(tokens.shape, -1e9, "float32")
        for row, (s, e) in enumerate(self.spans):
            start[row, max(s, 0)] = end[row, max(e, 0)] = 1.0
        return start, end


def test_evaluate_question_answering_oracle_and_misses():
    data = _squad()
    spans = data.validation_examples["span"]
    fits = spans[:, 0] >= 0
    assert 0 < fits.sum() < len(fits)
    scores = evaluate_question_answering(_Oracle(spans), data)
    assert scores["examples"] == 10
    # Answers that fit are found exactly; the others (position 0 is
    # [CLS], no text) score 0.
    np.testing.assert_allclose(scores["exact_match"], fits.mean())
    np.testing.assert_allclose(scores["f1"], fits.mean())


def test_squad_data_on_random_mock_data_and_errors():
    with tfds.testing.mock_data(num_examples=12):
        data = squad_data(sequence_length=20, question_length=4, vocabulary_size=30, batch_size=2)
        assert data.train_examples + data.train_dropped == 12
        assert len(data.vocabulary) <= 30
        with pytest.raises(ValueError, match="squad_data.*sequence_length.*question_length \\+ 3"):
            squad_data(sequence_length=6, question_length=4)
        with pytest.raises(ValueError, match="squad_data.*batch_size.*positive int.*0"):
            squad_data(batch_size=0)
        with pytest.raises(ValueError, match="lacks the SQuAD features"):
            squad_data("glue/sst2")


def test_docstring_example_on_mock_data():
    from keras_attention.models import compile_question_answering
    from keras_attention.models import question_answering

    data = _squad()
    model = question_answering(len(data.vocabulary), data.sequence_length, hidden_dim=16, num_layers=1, num_heads=2, attention="linear")
    compile_question_answering(model)
    history = model.fit(data.train, validation_data=data.validation, epochs=1, verbose=0)
    assert model.jit_compile is True and np.isfinite(history.history["loss"][0])
    scores = evaluate_question_answering(model, data, max_answer_length=3)
    assert scores["examples"] == 10
    assert 0.0 <= scores["exact_match"] <= scores["f1"] <= 1.0
