"""Samplers, the decode loop and beam search, on small synthetic models.

The step functions here are Markov chains: the next-token logits are a
fixed table row of the current token plus a term read from the cache (the
running sum of the tokens seen), so the NumPy references below can replay
them exactly.
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention.models import generation
from keras_attention.models.generation import beam_search
from keras_attention.models.generation import check_sampler
from keras_attention.models.generation import decode
from keras_attention.models.generation import sample_logits

VOCABULARY = 6
TABLE = np.random.default_rng(7).standard_normal((VOCABULARY, VOCABULARY)).astype("float32") * 2
WEIGHT = np.linspace(-0.3, 0.3, VOCABULARY).astype("float32")


def markov_step(token_ids, cache, index, compute_logits=True):
    """Position t: TABLE[token_t] + WEIGHT * (sum of the tokens up to t).

    The cache holds the tokens by position (like a key/value cache, a
    position written twice holds the same thing).
    """
    tokens = ops.cast(token_ids, "int32")
    new = ops.cast(tokens, "float32")
    if cache is None:
        totals = ops.cumsum(new, axis=1)
    else:
        cache = ops.slice_update(cache, (0, index), new)
        totals = ops.slice(
            ops.cumsum(cache, axis=1), (0, index), (ops.shape(tokens)[0], tokens.shape[1])
        )
    if not compute_logits:
        return None, cache
    logits = ops.take(ops.convert_to_tensor(TABLE), tokens, axis=0)
    return logits + totals[..., None] * ops.convert_to_tensor(WEIGHT), cache


def markov_log_probs(sequence):
    total = float(sum(sequence))
    logits = TABLE[sequence[-1]].astype("float64") + total * WEIGHT
    return logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()


def reference_greedy(prompt, length, end=None):
    seq = list(prompt)
    while len(seq) < length:
        token = int(np.argmax(markov_log_probs(seq)))
        seq.append(token)
        if token == end:
            break
    return seq + [0] * (length - len(seq))


def reference_beam(prompt, length, k, alpha=0.0, end=None, pad=0):
    """Beam search written out: sequences, scores, finished flags, lengths."""
    beams = [(list(prompt), 0.0, False, 0)]
    while len(beams[0][0]) < length and not all(b[2] for b in beams):
        candidates = []
        for seq, score, done, n in beams:
            if done:
                candidates.append((seq + [pad], score, True, n))
                continue
            logp = markov_log_probs(seq)
            for token in range(VOCABULARY):
                candidates.append(
                    (seq + [token], score + logp[token], token == end, n + 1)
                )
        # Stable: equal scores keep the order of (beam, token).
        candidates.sort(key=lambda c: -c[1])
        beams = candidates[:k]
    lp = [((5 + max(n, 1)) / 6) ** alpha for _, _, _, n in beams]
    best = int(np.argmax([b[1] / p for b, p in zip(beams, lp)]))
    seq = beams[best][0]
    return seq + [pad] * (length - len(seq)), beams[best][1] / lp[best]


def empty(batch, length=16):
    return ops.zeros((batch, length))


def run_decode(prompt, length, jit=True, **kwargs):
    fn = lambda p: decode(markov_step, p, length, **kwargs)  # noqa: E731
    if jit:
        fn = generation.compile_decoder(fn)
    return keras.ops.convert_to_numpy(fn(ops.convert_to_tensor(prompt, "int32")))


# --------------------------------------------------------------------------
# samplers
# --------------------------------------------------------------------------
def test_greedy_takes_the_first_maximum():
    logits = np.array([[0.0, 3.0, 3.0, 1.0], [5.0, -1.0, 5.0, 0.0]], "float32")
    np.testing.assert_array_equal(sample_logits(logits), [1, 0])
    np.testing.assert_array_equal(sample_logits(logits, "top_k", top_k=1, seed=3), [1, 0])
    np.testing.assert_array_equal(sample_logits(logits, "top_p", top_p=1e-6, seed=3), [1, 0])


@pytest.mark.parametrize(
    "sampler,kwargs,expected",
    [
        # top 2 of softmax([2, 1, 0, -1]) renormalised, temperature 1.
        ("top_k", {"top_k": 2}, np.array([math.e, 1.0, 0.0, 0.0]) / (math.e + 1)),
        # top_p=0.8: p = [.644, .237, .087, .032]; .644 < .8, so the first
        # two tokens form the nucleus.
        ("top_p", {"top_p": 0.8}, np.array([math.e, 1.0, 0.0, 0.0]) / (math.e + 1)),
        # temperature 2 flattens: softmax([1, .5, 0, -.5]).
        ("top_p", {"top_p": 1.0, "temperature": 2.0}, np.exp([1.0, 0.5, 0.0, -0.5]) / np.exp([1.0, 0.5, 0.0, -0.5]).sum()),
    ],
)
def test_sampling_frequencies(sampler, kwargs, expected):
    logits = np.tile(np.array([[2.0, 1.0, 0.0, -1.0]], "float32"), (4000, 1))
    ids = keras.ops.convert_to_numpy(sample_logits(logits, sampler, seed=11, **kwargs))
    frequencies = np.bincount(ids, minlength=4) / len(ids)
    np.testing.assert_allclose(frequencies, expected, atol=0.03)
    assert np.all(frequencies[expected == 0] == 0)


def test_sampling_is_reproducible_with_a_seed():
    logits = np.random.default_rng(0).standard_normal((64, 20)).astype("float32")
    a = keras.ops.convert_to_numpy(sample_logits(logits, "top_k", top_k=10, seed=5))
    b = keras.ops.convert_to_numpy(sample_logits(logits, "top_k", top_k=10, seed=5))
    c = keras.ops.convert_to_numpy(sample_logits(logits, "top_k", top_k=10, seed=6))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"sampler": "beam"}, r"`sampler` must be one of \['greedy', 'top_k', 'top_p'\]"),
        ({"temperature": 0.0}, "temperature.*positive"),
        ({"sampler": "top_k"}, "top_k.*positive int"),
        ({"sampler": "top_p", "top_p": 1.5}, r"top_p.*\(0, 1\]"),
        ({"top_k": 3}, "top_k.*sampler='top_k' only"),
        ({"top_p": 0.5}, "top_p.*sampler='top_p' only"),
    ],
)
def test_sampler_errors(kwargs, match):
    arguments = {"sampler": "greedy", "temperature": 1.0, "top_k": None, "top_p": None}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        check_sampler("generate", **arguments)


# --------------------------------------------------------------------------
# the decode loop
# --------------------------------------------------------------------------
def test_greedy_loop_matches_the_reference_with_ragged_prompts():
    prompt = np.array([[1, 2, 0, 0], [3, 1, 4, 5], [2, 0, 0, 0]], "int32")
    got = run_decode(prompt, 9, cache=empty(3))
    expected = [reference_greedy(p[p > 0], 9) for p in prompt]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got[:, :4][prompt > 0], prompt[prompt > 0])


def test_uncached_loop_runs_the_full_step_each_time():
    prompt = np.array([[1, 2], [3, 4]], "int32")
    np.testing.assert_array_equal(
        run_decode(prompt, 7, cache=None), [reference_greedy(p, 7) for p in prompt]
    )


def test_end_token_stops_rows_and_the_loop():
    prompt = np.array([[1, 2], [3, 1]], "int32")
    free = [reference_greedy(p, 8) for p in prompt]
    end = free[0][3]  # the second new token of row 0
    got = run_decode(prompt, 8, cache=empty(2), end_token_id=end)
    for row, p in zip(got, prompt):
        expected = reference_greedy(p, 8, end=end)
        np.testing.assert_array_equal(row, expected)
    cut = list(got[0]).index(end)
    assert cut == 3 and not got[0, cut + 1 :].any()
    # An end token inside a prompt does not stop it.
    prompt = np.array([[end, 2]], "int32")
    got = run_decode(prompt, 5, cache=empty(1), end_token_id=end)
    assert got[0, 0] == end and got[0, 1] == 2


def test_sampling_loop_reproducible_and_greedy_limits():
    prompt = np.array([[1, 2], [3, 4]], "int32")
    greedy = run_decode(prompt, 10, cache=empty(2))
    results = {}
    for name, kwargs in {
        "top_k_1": dict(sampler="top_k", top_k=1),
        "top_p_tiny": dict(sampler="top_p", top_p=1e-6),
    }.items():
        arguments = {"temperature": 1.0, "top_k": None, "top_p": None, **kwargs}
        sample, generator = generation.seeded_sampler(**arguments)
        generation.reseed(generator, 1)
        results[name] = run_decode(prompt, 10, cache=empty(2), sample=sample)
        np.testing.assert_array_equal(results[name], greedy)
    sample, generator = generation.seeded_sampler("top_k", 1.0, VOCABULARY, None)
    fn = generation.compile_decoder(
        lambda p: decode(markov_step, p, 12, cache=empty(2), sample=sample)
    )
    runs = []
    for seed in (3, 3, 4):
        generation.reseed(generator, seed)
        runs.append(keras.ops.convert_to_numpy(fn(ops.convert_to_tensor(prompt))))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert (runs[0] != runs[2]).any()


# --------------------------------------------------------------------------
# beam search
# --------------------------------------------------------------------------
def run_beam(prompt, length, k, **kwargs):
    fn = generation.compile_decoder(
        lambda p: beam_search(markov_step, p, length, empty(p.shape[0]), k, **kwargs)
    )
    tokens, scores = fn(ops.convert_to_tensor(prompt, "int32"))
    return keras.ops.convert_to_numpy(tokens), keras.ops.convert_to_numpy(scores)


@pytest.mark.parametrize(
    "k,alpha,end", [(1, 0.0, None), (3, 0.0, None), (4, 0.0, 2), (4, 1.5, 2), (3, 0.6, 5)]
)
def test_beam_search_matches_the_reference(k, alpha, end):
    prompt = np.array([[1], [3], [4]], "int32")
    tokens, scores = run_beam(prompt, 7, k, length_penalty=alpha, end_token_id=end)
    for row, score, p in zip(tokens, scores, prompt):
        expected, expected_score = reference_beam(list(p), 7, k, alpha=alpha, end=end)
        np.testing.assert_array_equal(row, expected)
        np.testing.assert_allclose(score, expected_score, rtol=1e-4, atol=1e-4)


def test_beam_size_one_is_greedy():
    prompt = np.array([[1, 2], [3, 4]], "int32")
    tokens, _ = run_beam(prompt, 9, 1, end_token_id=5)
    greedy = run_decode(prompt, 9, cache=empty(2), end_token_id=5)
    np.testing.assert_array_equal(tokens, greedy)


def test_wider_beams_find_likelier_sequences():
    prompt = np.array([[1], [2], [3], [4], [5]], "int32")

    def log_prob(seq, start):
        return sum(markov_log_probs(seq[:i])[seq[i]] for i in range(start, len(seq)))

    narrow, _ = run_beam(prompt, 6, 1)
    wide, _ = run_beam(prompt, 6, 5)
    for a, b in zip(narrow, wide):
        assert log_prob(list(b), 1) >= log_prob(list(a), 1) - 1e-5


def test_length_penalty_factor():
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(generation.length_penalty_factor(np.array([1, 7]), 0.5)),
        [1.0, math.sqrt(2.0)],
        rtol=1e-6,
    )
