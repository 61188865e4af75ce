import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from helpers import shared_tfds
from model_checks import check_builder_model
from keras_attention.models import compile_seq2seq
from keras_attention.models import corpus_bleu
from keras_attention.models import export_translator
from keras_attention.models import seq2seq
from keras_attention.models import translate
from keras_attention.models.seq2seq import detokenize
from keras_attention.models.seq2seq import token_accuracy

SOURCE_VOCABULARY, TARGET_VOCABULARY = 30, 12
SOURCE_LENGTH, TARGET_LENGTH = 7, 5
START, END = 1, 2


def _model(attention="multi_head", **kwargs):
    kwargs = {"hidden_dim": 16, "num_layers": 1, "num_heads": 2, "dropout": 0.0, **kwargs}
    return seq2seq(
        SOURCE_VOCABULARY, TARGET_VOCABULARY, SOURCE_LENGTH, TARGET_LENGTH,
        attention=attention, **kwargs,
    )


def _batch(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    source = rng.integers(1, SOURCE_VOCABULARY, (batch, SOURCE_LENGTH)).astype("int32")
    source[1, 4:] = 0
    labels = rng.integers(3, TARGET_VOCABULARY, (batch, TARGET_LENGTH)).astype("int32")
    labels[:, 3] = END
    labels[:, 4:] = 0
    inputs = np.concatenate([np.full((batch, 1), START, "int32"), labels[:, :-1]], 1)
    inputs[inputs == END] = 0
    return [source, inputs], labels


def step_log_probs(model, source, prefixes):
    """Next-token log-probabilities of each prefix (teacher forcing)."""
    x = np.zeros((len(prefixes), TARGET_LENGTH), "int32")
    for i, p in enumerate(prefixes):
        x[i, : len(p)] = p
    logits = model.predict([np.repeat(source[None], len(prefixes), 0), x], verbose=0).astype("float64")
    rows = logits[np.arange(len(prefixes)), [len(p) - 1 for p in prefixes]]
    rows -= rows.max(-1, keepdims=True)
    return rows - np.log(np.exp(rows).sum(-1, keepdims=True))


def reference_greedy(model, source, end=None):
    out = []
    for s in source:
        seq = [START]
        while len(seq) < TARGET_LENGTH + 1:
            seq.append(int(np.argmax(step_log_probs(model, s, [seq])[0])))
            if seq[-1] == end:
                break
        out.append(seq[1:] + [0] * (TARGET_LENGTH + 1 - len(seq)))
    return np.array(out)


def reference_beam(model, s, k, alpha, end):
    """Beam search written out with the full model at every step."""
    beams = [([START], 0.0, False, 0)]
    while len(beams[0][0]) <= TARGET_LENGTH and not all(b[2] for b in beams):
        log_probs = step_log_probs(model, s, [b[0] for b in beams])
        candidates = []
        for (seq, score, done, n), lp in zip(beams, log_probs):
            if done:
                candidates.append((seq + [0], score, True, n))
                continue
            candidates += [(seq + [t], score + lp[t], t == end, n + 1) for t in range(TARGET_VOCABULARY)]
        candidates.sort(key=lambda c: -c[1])
        beams = candidates[:k]
    normalised = [b[1] / ((5 + max(b[3], 1)) / 6) ** alpha for b in beams]
    seq = beams[int(np.argmax(normalised))][0][1:]
    return seq + [0] * (TARGET_LENGTH - len(seq))


@pytest.mark.parametrize(
    "attention,kwargs",
    [
        ("multi_head", {"attention_kwargs": {"num_key_value_heads": 1}}),
        ("linear", {}),
        ("regional", {"cross_attention": "linear"}),
    ],
)
def test_builds_trains_saves_exports(attention, kwargs, tmp_path):
    model = _model(attention, **kwargs)
    compile_seq2seq(model)
    inputs, labels = _batch()
    (logits,) = check_builder_model(model, inputs, labels, tmp_path)
    assert logits.shape == (4, TARGET_LENGTH, TARGET_VOCABULARY)


def test_teacher_forcing_is_causal_and_reads_the_source():
    model = _model(num_layers=2)
    (source, inputs), _ = _batch()
    base = model.predict([source, inputs], verbose=0)
    later = inputs.copy()
    later[:, 3:] = 5
    np.testing.assert_allclose(model.predict([source, later], verbose=0)[:, :3], base[:, :3], atol=1e-5)
    changed = source.copy()
    changed[1, 2] = (changed[1, 2] % (SOURCE_VOCABULARY - 1)) + 1
    moved = model.predict([changed, inputs], verbose=0)
    np.testing.assert_allclose(moved[[0, 2, 3]], base[[0, 2, 3]], atol=1e-5)
    assert np.abs(moved[1] - base[1]).max() > 1e-4


def test_greedy_translation_is_the_argmax_of_teacher_forcing():
    model = _model(num_layers=2)
    (source, _), _ = _batch(3)
    greedy = translate(model, source, START)
    assert greedy.shape == (3, TARGET_LENGTH) and greedy.dtype == np.int32
    np.testing.assert_array_equal(greedy, reference_greedy(model, source))
    np.testing.assert_array_equal(translate(model, source, START, use_cache=False), greedy)
    np.testing.assert_array_equal(translate(model, source, START, beam_size=1), greedy)
    end = int(greedy[0, 1])
    stopped = translate(model, source, START, end_token_id=end)
    np.testing.assert_array_equal(stopped, reference_greedy(model, source, end=end))
    assert not stopped[0, 2:].any()


@pytest.mark.parametrize("attention", ["linear", "dynamic"])
def test_cached_translation_of_other_variants(attention):
    model = _model(attention, cross_attention=attention)
    (source, _), _ = _batch(2)
    greedy = translate(model, source, START, end_token_id=END)
    np.testing.assert_array_equal(translate(model, source, START, end_token_id=END, use_cache=False), greedy)
    np.testing.assert_array_equal(translate(model, source, START, end_token_id=END, beam_size=1), greedy)


@pytest.mark.parametrize("k,alpha", [(3, 0.0), (4, 1.0)])
def test_beam_search_matches_the_reference(k, alpha):
    model = _model()
    (source, _), _ = _batch(2, seed=1)
    got = translate(model, source, START, end_token_id=END, beam_size=k, length_penalty=alpha)
    for row, s in zip(got, source):
        np.testing.assert_array_equal(row, reference_beam(model, s, k, alpha, END))


_SERVE = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    loaded = tf.saved_model.load(sys.argv[1])
    out = loaded.serve(tf.constant(json.loads(sys.argv[2])))
    print(json.dumps({"ids": out["token_ids"].numpy().tolist(),
                      "text": [t.decode() for t in out["text"].numpy()]}))
    assert "keras_attention" not in sys.modules
    """
)


def test_raw_string_translator_served_from_a_savedmodel(tmp_path):
    import json

    vectorizer = keras.layers.TextVectorization(max_tokens=SOURCE_VOCABULARY, output_sequence_length=SOURCE_LENGTH)
    vectorizer.adapt(["ek dui tin", "char panch cha saat", "aath nau das"])
    vocabulary = ["", "[UNK]", "[start]", "[end]"] + [f"w{i}" for i in range(TARGET_VOCABULARY - 4)]
    model = _model()
    texts = ["ek dui", "panch cha saat aath", "nau"]
    expected = translate(model, keras.ops.convert_to_numpy(vectorizer(texts)), 2, end_token_id=3)
    export_translator(model, str(tmp_path / "translator"), vectorizer, 2, end_token_id=3, target_vocabulary=vocabulary)
    result = subprocess.run(
        [sys.executable, "-c", _SERVE, str(tmp_path / "translator"), json.dumps(texts)],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(served["ids"], expected)
    words = [" ".join(row) for row in detokenize(expected, vocabulary, special_ids=(0, 2), end_token_id=3)]
    assert served["text"] == words


def test_bleu_hand_computed():
    # Identical: 100. One sentence, 4 of 5 unigrams, 2/4 bigrams, 1/3
    # trigrams, 0/2 4-grams (exp smoothing: 1 / (2 * 2)), same length.
    assert corpus_bleu([["a", "b", "c", "d"]], [["a", "b", "c", "d"]]) == pytest.approx(100.0)
    ref, hyp = ["the", "cat", "sat", "on", "mat"], ["the", "cat", "sat", "in", "mat"]
    expected = 100 * math.exp((math.log(4 / 5) + math.log(2 / 4) + math.log(1 / 3) + math.log(1 / 4)) / 4)
    assert corpus_bleu([ref], [hyp]) == pytest.approx(expected)
    assert corpus_bleu([ref], [hyp], smooth="none") == 0.0
    # Clipping: "the the the" against one "the"; brevity: c=3 < r=5.
    expected = 100 * math.exp(1 - 5 / 3) * math.exp(
        (math.log(1 / 3) + math.log(1 / (2 * 2)) + math.log(1 / (4 * 1))) / 3
    )
    assert corpus_bleu([ref], [["the", "the", "the"]], max_order=3) == pytest.approx(expected)
    # Corpus level: counts are summed before the precisions.
    refs = [["a", "b"], ["c", "d", "e"]]
    hyps = [["a", "b"], ["c", "x", "e"]]
    expected = 100 * math.exp((math.log(4 / 5) + math.log(1 / 3)) / 2)
    assert corpus_bleu(refs, hyps, max_order=2) == pytest.approx(expected)
    assert corpus_bleu([["a"]], [[]]) == 0.0
    with pytest.raises(ValueError, match="same length"):
        corpus_bleu([["a"]], [])


def test_token_accuracy_and_detokenize():
    labels = np.array([[4, 5, 2, 0], [6, 2, 0, 0]])
    predictions = np.array([[4, 7, 2, 9], [6, 3, 3, 0]])
    assert token_accuracy(labels, predictions) == pytest.approx(3 / 5)
    vocabulary = ["", "[UNK]", "[end]", "[start]", "a", "b", "c", "d"]
    assert detokenize(predictions, vocabulary, special_ids=(0, 3), end_token_id=2) == [["a", "d"], ["c"]]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"target_vocabulary_size": 0}, "target_vocabulary_size"),
        ({"source_length": 0}, "source_length"),
        ({"attention": "nope"}, r"seq2seq.*attention.*one of \[.*multi_head"),
        ({"cross_attention": "nope"}, r"seq2seq.*attention.*one of"),
        ({"num_heads": 3}, "num_heads"),
        ({"dropout": -0.1}, "dropout"),
        ({"num_decoder_layers": 0}, "num_decoder_layers"),
        ({"attention": "low_rank"}, r"seq2seq.*must support causal"),
    ],
)
def test_bad_config_errors(kwargs, match):
    arguments = dict(
        source_vocabulary_size=SOURCE_VOCABULARY, target_vocabulary_size=TARGET_VOCABULARY,
        source_length=SOURCE_LENGTH, target_length=TARGET_LENGTH, hidden_dim=16, num_layers=1, num_heads=2,
    )
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        seq2seq(**arguments)


def test_low_rank_encoder_with_a_causal_decoder():
    model = _model("low_rank", decoder_attention="multi_head")
    (source, _), _ = _batch(2)
    assert translate(model, source, START, end_token_id=END).shape == (2, TARGET_LENGTH)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"beam_size": 0}, "beam_size"),
        ({"beam_size": 13}, r"beam_size.*at most the vocabulary size \(12\)"),
        ({"start_token_id": 12}, r"start_token_id.*\[1, 12\)"),
        ({"length_penalty": -1.0}, "length_penalty"),
        ({"max_length": 6}, r"translate.*max_length.*at most target_length = 5"),
        ({"max_length": 0}, r"translate.*max_length.*positive"),
        ({"beam_size": 2, "use_cache": False}, "use_cache.*beam search"),
    ],
)
def test_translate_errors(kwargs, match):
    model = _model()
    arguments = {"start_token_id": START, **kwargs}
    with pytest.raises(ValueError, match=match):
        translate(model, np.ones((1, SOURCE_LENGTH), "int32"), **arguments)


@pytest.mark.slow
def test_flores_neen_beats_the_most_frequent_token():
    from keras_attention.data import translation_data

    data_dir = shared_tfds("flores")
    data = translation_data(
        "flores/neen", data_dir=data_dir, source_length=32, target_length=32,
        source_vocabulary_size=4000, target_vocabulary_size=3000, batch_size=32,
    )
    model = seq2seq(
        len(data.source_vocabulary), len(data.target_vocabulary), 32, 32,
        hidden_dim=64, num_layers=1, num_heads=4, dropout=0.1,
    )
    compile_seq2seq(model, learning_rate=2e-3, warmup_steps=20, decay_steps=400)
    model.fit(data.train, epochs=5, verbose=0)
    accuracy = model.evaluate(data.test, verbose=0, return_dict=True)["accuracy"]
    assert accuracy > data.baseline_accuracy + 0.03, (accuracy, data.baseline_accuracy)
