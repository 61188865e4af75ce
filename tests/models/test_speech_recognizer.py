import doctest
import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from model_checks import check_builder_model
from keras_attention.data.speech import CharacterVocabulary
from keras_attention.models.speech_recognizer import CTCLoss
from keras_attention.models.speech_recognizer import character_error_rate
from keras_attention.models.speech_recognizer import compile_speech_recognizer
from keras_attention.models.speech_recognizer import ctc_greedy_decode
from keras_attention.models.speech_recognizer import ctc_loss
from keras_attention.models.speech_recognizer import edit_distance
from keras_attention.models.speech_recognizer import output_frames
from keras_attention.models.speech_recognizer import speech_recognizer
from keras_attention.models.speech_recognizer import transcribe
from keras_attention.models.speech_recognizer import word_error_rate

RATE = 8000
SAMPLES = 3200  # 0.4 s: 41 mel frames of 10 ms, 11 output frames
SMALL = dict(sample_rate=RATE, num_mel_bins=16, hidden_dim=16, num_layers=1, num_heads=2)


def _waves(batch=4, samples=SAMPLES, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / RATE
    waves = np.stack([np.sin(2 * np.pi * (300 + 150 * i) * t) * (i + 1) * 1000 for i in range(batch)])
    return (waves + rng.normal(0, 10, waves.shape)).astype("float32")


def _compile(model, **kwargs):
    compile_speech_recognizer(model, **kwargs)
    # Built here, the optimizer's slots are not created inside the first
    # traced train step, which would then be traced twice.
    model.optimizer.build(model.trainable_variables)
    return model


LABELS = np.array([[1, 2, 3, 0], [4, 4, 0, 0], [5, 0, 0, 0], [6, 7, 8, 9]], "int32")


@pytest.mark.parametrize(
    "attention,attention_kwargs,input_lengths,augmentation",
    [
        ("multi_head", None, False, False),
        ("linear", None, True, False),
        ("regional", {"window_size": 4}, False, True),
    ],
)
def test_builds_trains_saves_exports(attention, attention_kwargs, input_lengths, augmentation, tmp_path):
    model = speech_recognizer(
        SAMPLES,
        28,
        attention=attention,
        attention_kwargs=attention_kwargs,
        input_lengths=input_lengths,
        augmentation=augmentation,
        **SMALL,
    )
    _compile(model)
    assert model.jit_compile is True and isinstance(model.loss, CTCLoss)
    waves = _waves()
    inputs = [waves, np.array([3200, 2000, 1000, 2800], "int32")] if input_lengths else waves
    (logits,) = check_builder_model(model, inputs, LABELS, tmp_path)
    frames = output_frames(SAMPLES, RATE // 100, 4)
    assert frames == 11 and logits.shape == (4, frames, 29)


def test_lengths_make_the_valid_frames_independent_of_the_padding():
    arguments = dict(SMALL, num_layers=2, subsampling=2, dropout=0.0)
    model = speech_recognizer(SAMPLES, 28, input_lengths=True, **arguments)
    rng = np.random.default_rng(0)
    waves = _waves(2)
    lengths = np.array([SAMPLES, 1700], "int32")
    waves[1, 1700:] = 0.0
    noisy = waves.copy()
    noisy[1, 1700:] = rng.normal(0, 1e5, SAMPLES - 1700)  # louder than the speech
    clean = keras.ops.convert_to_numpy(model([waves, lengths]))
    # Frames whose window lies inside the 1700 samples: (1700 - 100) // 80 + 1
    # = 21 mel frames -> 11 frames after stride 2.
    valid = 11
    noisy = keras.ops.convert_to_numpy(model([noisy, lengths]))
    np.testing.assert_allclose(noisy[:, :valid], clean[:, :valid], atol=1e-5)
    # The padded frames are a certain blank.
    assert np.all(clean[1, valid:, 0] == 0.0) and np.all(clean[1, valid:, 1:] == -1e4)
    # The full-length example loses its last frame: the windows of mel
    # frames 39 and 40 run past the end ((3200 - 100) // 80 + 1 = 39 -> 20).
    assert np.all(clean[0, :20, 1:] > -1e4) and np.all(clean[0, 20:, 1:] == -1e4)
    # Attention never reads the padded frames: scrambling their position
    # embeddings changes nothing in the short example.
    table = model.get_layer("position_embedding").embeddings
    table.assign(table.numpy() + np.where(np.arange(21)[:, None] >= valid, 10.0, 0.0) * rng.normal(size=(21, 16)))
    scrambled = keras.ops.convert_to_numpy(model([waves, lengths]))
    np.testing.assert_allclose(scrambled[1], clean[1], atol=1e-5)
    assert np.abs(scrambled[0] - clean[0]).max() > 1e-2
    # Each example is transcribed on its own (no batch statistics).
    alone = keras.ops.convert_to_numpy(model([waves[1:], lengths[1:]]))
    np.testing.assert_allclose(alone[0], scrambled[1], atol=1e-5)


def test_front_end_is_scale_invariant():
    model = speech_recognizer(SAMPLES, 28, **SMALL)
    waves = _waves()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(waves)), keras.ops.convert_to_numpy(model(waves * 7.5)), atol=1e-4
    )
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(model(np.zeros_like(waves)))))


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _ctc_reference(labels, logits):
    """CTC negative log-likelihood by the forward algorithm (Graves 2006)."""
    losses = []
    for label, frames in zip(labels, logits):
        label = [int(i) for i in label if i]
        extended = [0]
        for i in label:
            extended += [i, 0]
        log_probs = _log_softmax(frames.astype("float64"))
        alpha = np.full(len(extended), -np.inf)
        alpha[0] = log_probs[0, 0]
        if len(extended) > 1:
            alpha[1] = log_probs[0, extended[1]]
        for t in range(1, len(frames)):
            new = np.full(len(extended), -np.inf)
            for s, k in enumerate(extended):
                terms = [alpha[s]]
                if s >= 1:
                    terms.append(alpha[s - 1])
                if s >= 2 and k != 0 and k != extended[s - 2]:
                    terms.append(alpha[s - 2])
                new[s] = np.logaddexp.reduce(terms) + log_probs[t, k]
            alpha = new
        losses.append(-np.logaddexp(alpha[-1], alpha[-2]) if len(extended) > 1 else -alpha[-1])
    return np.array(losses)


def test_ctc_loss_matches_the_forward_algorithm_and_tensorflow():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (3, 6, 4)).astype("float32")
    labels = np.array([[1, 2, 0], [3, 3, 0], [2, 0, 0]], "int32")  # a repeat needs a blank between
    expected = _ctc_reference(labels, logits)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ctc_loss(labels, logits)), expected, rtol=1e-5)
    reference = tf.nn.ctc_loss(labels, logits, [2, 2, 1], [6, 6, 6], logits_time_major=False, blank_index=0)
    np.testing.assert_allclose(reference.numpy(), expected, rtol=1e-5)
    # As a Keras loss (labels arrive as floats), under XLA: the batch mean.
    loss = CTCLoss()
    value = tf.function(lambda y, p: loss(y, p), jit_compile=True)(labels.astype("float32"), logits)
    np.testing.assert_allclose(float(value), expected.mean(), rtol=1e-5)
    # Frames filled with a certain blank add nothing: the loss over all
    # frames equals the loss over the valid frames.
    padded = np.concatenate([logits, np.tile(np.array([0.0, -1e4, -1e4, -1e4], "float32"), (3, 3, 1))], axis=1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ctc_loss(labels, padded)), expected, rtol=1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ctc_loss(labels, padded, logit_lengths=[6, 6, 6])), expected, rtol=1e-5
    )
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss)).name == "ctc_loss"


def test_greedy_decode_merges_repeats_and_drops_blanks():
    # Frames:      a  a  _  a  b  b  _  _  c      ->  "a a b c"
    # Second row:  _  b  b  c  c  _  a  a  a      ->  "b c a", cut at 6: "b c"
    paths = np.array([[1, 1, 0, 1, 2, 2, 0, 0, 3], [0, 2, 2, 3, 3, 0, 1, 1, 1]])
    logits = np.where(np.eye(4)[paths] > 0, 3.0, -1.0).astype("float32")
    assert ctc_greedy_decode(logits) == [[1, 1, 2, 3], [2, 3, 1]]
    assert ctc_greedy_decode(logits, logit_lengths=[9, 6]) == [[1, 1, 2, 3], [2, 3]]
    assert ctc_greedy_decode(logits[0]) == [1, 1, 2, 3]
    assert ctc_greedy_decode(keras.ops.convert_to_tensor(logits))[1] == [2, 3, 1]
    assert ctc_greedy_decode(np.zeros((1, 5, 4)) + np.eye(4)[0]) == [[]]  # all blank
    vocabulary = CharacterVocabulary("abc")
    assert [vocabulary.decode(ids) for ids in ctc_greedy_decode(logits)] == ["aabc", "bca"]
    with pytest.raises(ValueError, match="rank 2 or 3"):
        ctc_greedy_decode(np.zeros(4))


def test_error_rates_on_hand_worked_examples():
    # "sat" -> "sit" (substitution), second "the" deleted: 2 edits / 6 words.
    assert word_error_rate("the cat sat on the mat", "the cat sit on mat") == pytest.approx(2 / 6)
    # Corpus level: 1 substitution + 1 insertion over 3 + 2 reference words.
    assert word_error_rate(["a b c", "d e"], ["a x c", "d e f"]) == pytest.approx(2 / 5)
    assert word_error_rate(["a b"], [""]) == 1.0
    assert word_error_rate("a", "b c d") == 3.0  # can exceed 1
    assert word_error_rate("  same   words ", "same words") == 0.0
    # kitten -> sitting: k->s, e->i, +g = 3 edits / 6 characters.
    assert character_error_rate("kitten", "sitting") == 0.5
    assert character_error_rate(["abc def"], ["abcdef"]) == pytest.approx(1 / 7)  # the space
    assert character_error_rate(["ab", "cd"], ["ab", "ce"]) == 0.25
    assert character_error_rate(" ab  c ", "ab c") == 0.0
    assert edit_distance("flaw", "lawn") == 2
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3
    assert edit_distance(["the", "cat"], ["cat"]) == 1
    with pytest.raises(ValueError, match="same length"):
        word_error_rate(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="references are empty"):
        character_error_rate([""], ["a"])


def _utterance(characters, rng):
    # One 75 ms tone per character (frequency by character), 37.5 ms gaps.
    pieces = [np.zeros(200)]
    for c in characters:
        t = np.arange(600) / RATE
        pieces += [np.sin(2 * np.pi * (400 + 500 * (ord(c) - ord("a"))) * t), np.zeros(300)]
    wave = np.concatenate(pieces)
    wave = np.pad(wave, (0, SAMPLES - len(wave)))
    return (wave + rng.normal(0, 0.01, SAMPLES)).astype("float32")


def test_overfits_two_utterances():
    vocabulary = CharacterVocabulary()
    rng = np.random.default_rng(0)
    texts = ["bad", "ca"]
    waves = np.stack([_utterance(text, rng) for text in texts])
    labels = np.array([vocabulary.encode(text) + [0] * (4 - len(text)) for text in texts], "int32")
    model = speech_recognizer(SAMPLES, vocabulary.size, **dict(SMALL, hidden_dim=32, dropout=0.0))
    _compile(model, learning_rate=3e-3, weight_decay=0.0)
    history = model.fit(waves, labels, batch_size=2, epochs=60, verbose=0).history["loss"]
    assert history[-1] < 0.2 * history[0], history[::10]
    assert transcribe(model, waves, vocabulary) == texts


def test_character_vocabulary():
    vocabulary = CharacterVocabulary()
    assert vocabulary.size == len(vocabulary) == 28
    assert vocabulary.encode("It's  OK!") == [9, 20, 27, 19, 28, 15, 11]
    assert vocabulary.decode([9, 20, 27, 19, 28, 15, 11, 0, 0]) == "it's ok"
    assert vocabulary.normalize("  HELLO,\tWorld -- 42 ") == "hello world"
    assert vocabulary.encode("") == [] and vocabulary.encode("?!") == []
    with pytest.raises(ValueError, match="distinct ASCII"):
        CharacterVocabulary("aa")
    with pytest.raises(ValueError, match="distinct ASCII"):
        CharacterVocabulary("é")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_samples": 0}, "speech_recognizer.*num_samples"),
        ({"vocabulary_size": 0}, "vocabulary_size"),
        ({"subsampling": 3}, r"subsampling.*\[2, 4\]"),
        ({"frame_length": 5000}, "frame_length"),
        ({"num_heads": 3}, "num_heads"),
        ({"conv_channels": 0}, "conv_channels"),
        ({"dropout": -0.1}, "dropout"),
        ({"attention": "nope"}, r"speech_recognizer.*one of \["),
    ],
)
def test_bad_config(kwargs, match):
    arguments = dict(num_samples=SAMPLES, vocabulary_size=28, **SMALL)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        speech_recognizer(**arguments)


def test_audio_frontend_docstring_examples():
    # The public modules' examples run in tests/test_docstring_examples.py;
    # this one is not public.
    module = importlib.import_module("keras_attention.models.audio_frontend")
    runner = doctest.DocTestRunner()
    tests = [test for test in doctest.DocTestFinder().find(module) if test.examples]
    assert tests
    for test in tests:
        runner.run(test)
    assert runner.failures == 0
