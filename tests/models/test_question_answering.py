import keras
import numpy as np
import pytest
import tensorflow as tf

from model_checks import check_builder_model
from keras_attention.models import best_span
from keras_attention.models import compile_question_answering
from keras_attention.models import exact_match
from keras_attention.models import f1_score
from keras_attention.models import question_answering
from keras_attention.models import squad_scores
from keras_attention.models.question_answering import MASKED_LOGIT
from keras_attention.models.question_answering import normalize_answer

SMALL = dict(hidden_dim=16, num_layers=1, num_heads=2)


def _batch(length=16, vocabulary=50):
    """4 packed examples: [CLS]=2 question [SEP]=3 context, then padding."""
    rng = np.random.default_rng(0)
    tokens = np.zeros((4, length), "int32")
    segments = np.zeros((4, length), "int32")
    for row, (question, context) in enumerate([(3, 8), (2, 10), (4, 5), (1, 12)]):
        packed = [2, *rng.integers(4, vocabulary, question), 3]
        tokens[row, : len(packed)] = packed
        tokens[row, len(packed) : len(packed) + context] = rng.integers(4, vocabulary, context)
        segments[row, len(packed) : len(packed) + context] = 1
    starts = np.array([5, 4, 7, 3])
    ends = np.array([7, 4, 8, 10])
    return [tokens, segments], (starts, ends)


def _context(tokens, segments):
    return (segments == 1) & (tokens != 0)


@pytest.mark.parametrize("attention", ["multi_head", "linear", "regional"])
def test_builds_trains_saves_exports(attention, tmp_path):
    model = question_answering(50, 16, attention=attention, **SMALL)
    compile_question_answering(model)
    inputs, targets = _batch()
    start, end = check_builder_model(model, inputs, targets, tmp_path)
    assert start.shape == end.shape == (4, 16)
    assert start.dtype == np.float32


def test_only_context_positions_can_hold_the_answer():
    model = question_answering(50, 16, **SMALL)
    (tokens, segments), _ = _batch()
    start, end = (keras.ops.convert_to_numpy(t) for t in model([tokens, segments]))
    context = _context(tokens, segments)
    for logits in (start, end):
        np.testing.assert_array_equal(logits[~context], MASKED_LOGIT)
        assert np.all(np.abs(logits[context]) < 100)
        probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
        np.testing.assert_allclose(probabilities[~context], 0.0)
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)


def test_padding_is_masked_in_attention():
    # The segment id of a padding position reaches its embedding; the
    # padding mask must keep it away from every real position.
    model = question_answering(50, 16, num_layers=2, hidden_dim=16, num_heads=2)
    (tokens, segments), _ = _batch()
    a = keras.ops.convert_to_numpy(model([tokens, segments])[0])
    flipped = segments.copy()
    flipped[tokens == 0] = 1
    b = keras.ops.convert_to_numpy(model([tokens, flipped])[0])
    np.testing.assert_allclose(a, b, atol=1e-6)
    # A context token change does change the logits.
    changed = tokens.copy()
    changed[0, 6] = changed[0, 6] % 40 + 5
    c = keras.ops.convert_to_numpy(model([changed, segments])[0])
    assert np.abs(c - a).max() > 1e-6


def test_loss_is_the_mean_of_start_and_end_cross_entropy():
    model = question_answering(50, 16, dropout=0.0, **SMALL)
    compile_question_answering(model)
    inputs, (starts, ends) = _batch()
    start, end = (keras.ops.convert_to_numpy(t).astype("float64") for t in model(inputs))

    def cross_entropy(logits, labels):
        shifted = logits - logits.max(-1, keepdims=True)
        log_probabilities = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        return -log_probabilities[np.arange(len(labels)), labels].mean()

    expected = 0.5 * (cross_entropy(start, starts) + cross_entropy(end, ends))
    logs = model.evaluate(inputs, (starts, ends), verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)
    expected_accuracy = np.mean(start.argmax(-1) == starts)
    np.testing.assert_allclose(logs["start_logits_accuracy"], expected_accuracy)


def test_mixed_precision_keeps_float32_logits():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = question_answering(50, 16, **SMALL)
        (tokens, segments), _ = _batch()
        start, end = (keras.ops.convert_to_numpy(t) for t in model([tokens, segments]))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert start.dtype == end.dtype == np.float32
    context = _context(tokens, segments)
    np.testing.assert_array_equal(start[~context], MASKED_LOGIT)
    assert np.all(np.isfinite(start)) and np.all(np.isfinite(end))
    assert np.std(start[context]) > 0


def test_gradients_reach_the_embeddings():
    model = question_answering(50, 16, **SMALL)
    inputs, (starts, ends) = _batch()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        start, end = model(inputs, training=True)
        loss = loss_fn(starts, start) + loss_fn(ends, end)
    gradients = tape.gradient(loss, model.trainable_variables)
    by_name = {v.path: g for v, g in zip(model.trainable_variables, gradients)}
    for path, gradient in by_name.items():
        assert gradient is not None, path
        values = keras.ops.convert_to_numpy(tf.convert_to_tensor(gradient))
        assert np.all(np.isfinite(values)), path
    segment = keras.ops.convert_to_numpy(by_name["segment_embedding/embeddings"])
    assert np.abs(segment).max() > 0


def _brute_force_span(start, end, max_answer_length):
    best = (0, 0, -np.inf)
    for i in range(len(start)):
        for j in range(i, min(len(end), i + max_answer_length)):
            if start[i] + end[j] > best[2]:
                best = (i, j, start[i] + end[j])
    return best


@pytest.mark.parametrize("max_answer_length", [1, 3, 20])
def test_best_span_matches_brute_force(max_answer_length):
    rng = np.random.default_rng(max_answer_length)
    start = rng.normal(size=(6, 12)).astype("float32")
    end = rng.normal(size=(6, 12)).astype("float32")
    start[2, :5] = end[2, :5] = MASKED_LOGIT  # masked positions are never chosen
    end[3, 0] = 50.0  # a huge end before every start is out of reach
    got = [keras.ops.convert_to_numpy(t) for t in best_span(start, end, max_answer_length)]
    for row in range(6):
        i, j, score = _brute_force_span(start[row], end[row], max_answer_length)
        assert (got[0][row], got[1][row]) == (i, j)
        np.testing.assert_allclose(got[2][row], score, rtol=1e-6)
        assert 0 <= got[1][row] - got[0][row] < max_answer_length
    assert got[0][2] >= 5
    single = best_span(start[1], end[1], max_answer_length)
    assert [int(keras.ops.convert_to_numpy(t)) for t in single[:2]] == [got[0][1], got[1][1]]


def test_best_span_compiles_with_xla():
    rng = np.random.default_rng(1)
    start, end = rng.normal(size=(2, 2, 10)).astype("float32")
    decode = tf.function(lambda s, e: best_span(s, e, 4)[:2], jit_compile=True)
    got = [t.numpy() for t in decode(start, end)]
    for row in range(2):
        assert (got[0][row], got[1][row]) == _brute_force_span(start[row], end[row], 4)[:2]


def test_best_span_errors():
    with pytest.raises(ValueError, match="max_answer_length.*positive int.*0"):
        best_span(np.zeros((1, 4)), np.zeros((1, 4)), 0)
    with pytest.raises(ValueError, match=r"same shape.*\(1, 4\) and \(1, 5\)"):
        best_span(np.zeros((1, 4)), np.zeros((1, 5)), 2)


def test_squad_metrics_hand_computed():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert exact_match("the Eiffel tower.", "Eiffel Tower") == 1.0
    assert exact_match("Eiffel", ["Tower", "Paris"]) == 0.0
    # "in 1990" vs "1990": precision 1/2, recall 1 -> F1 2/3.
    np.testing.assert_allclose(f1_score("in 1990", "1990"), 2 / 3)
    # Best of several references: "red blue" vs "blue green red" is P=1,
    # R=2/3 -> 0.8; vs "red" P=1/2, R=1 -> 2/3.
    np.testing.assert_allclose(f1_score("red blue", ["red", "blue green red"]), 0.8)
    # Repeated tokens count as a multiset: "a a b" -> ["b"]? no, articles go;
    # "x x y" vs "x y y": common {x:1, y:1} -> P = R = 2/3.
    np.testing.assert_allclose(f1_score("x x y", "x y y"), 2 / 3)
    assert f1_score("", "1990") == 0.0 and exact_match("", "1990") == 0.0
    scores = squad_scores(["in 1990", "Paris"], [["1990"], ["paris", "France"]])
    np.testing.assert_allclose(scores["exact_match"], 0.5)
    np.testing.assert_allclose(scores["f1"], (2 / 3 + 1) / 2)
    with pytest.raises(ValueError, match="same length"):
        squad_scores(["a"], [])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"vocabulary_size": 0}, "question_answering.*vocabulary_size"),
        ({"sequence_length": -1}, "sequence_length"),
        ({"attention": "nope"}, r"question_answering.*attention.*one of \[.*multi_head"),
        ({"num_heads": 3}, "num_heads.*divide"),
        ({"dropout": 1.0}, "dropout"),
        ({"embedding_dropout": -0.1}, "embedding_dropout"),
        ({"attention_kwargs": "x"}, "attention_kwargs"),
    ],
)
def test_bad_config_errors(kwargs, match):
    arguments = dict(vocabulary_size=50, sequence_length=16, **SMALL)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        question_answering(**arguments)


def test_docstring_example():
    model = question_answering(
        vocabulary_size=1000, sequence_length=32,
        hidden_dim=32, num_layers=1, num_heads=2, attention="linear",
    )
    compile_question_answering(model)
    tokens = np.array([[2, 7, 8, 3, 20, 21, 22, 23] + [0] * 24], "int32")
    segments = np.array([[0, 0, 0, 0, 1, 1, 1, 1] + [0] * 24], "int32")
    start_logits, end_logits = model.predict([tokens, segments], verbose=0)
    start, end, score = best_span(start_logits, end_logits, max_answer_length=3)
    start, end = int(start[0]), int(end[0])
    assert 4 <= start <= end <= 7 and end - start < 3
